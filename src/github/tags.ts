/**
 * Which tags the run wrote. Tags have no reflog, and when their files changed says little:
 * a `git gc` or `git pack-refs` rewrites every tag into the packed refs, a fetch writes the
 * tags it brings. `start` records the tags that exist (each as a salted digest of its name,
 * the object it names and the object that one peels to), and post counts a tag as written in
 * the run only if it is new or moved since. With no record (start ran before the checkout
 * made the repository), or past a record cut at its bound, the tag's file times decide.
 */
import { createHash, randomBytes } from 'node:crypto';
import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import type { TagsAtStart } from '../ledger/events.js';
import { gitText as text, type GitRunner } from './commit-objects.js';

/**
 * Most tags start records: 16 characters each, so the record is at most 128 KiB (start's
 * ledger line, under the 256 KiB a line may hold). Past it, the first ones git lists (by
 * name) are recorded and the record says it was cut.
 */
export const MAX_TAGS_RECORDED = 8192;
/** Characters of one tag's digest: 12 bytes of SHA-256, base64url (96 bits). */
const DIGEST_CHARS = 16;
/** Most tags post reads, as for every other kind of ref (reflogs.ts). */
export const MAX_TAGS_LISTED = 100_000;

/** A tag as git lists it: its name, the object it names, and what that object peels to (annotated tags). */
interface TagRef {
  ref: string;
  object: string;
  peeled: string;
}

/** `for-each-ref refs/tags`, at most `max`, and whether there were more. */
function listTags(git: GitRunner, cwd: string, max: number): { tags: TagRef[]; more: boolean } {
  const lines = text(
    git,
    ['for-each-ref', '--format=%(objectname) %(*objectname) %(refname)', `--count=${max + 1}`, 'refs/tags'],
    cwd,
  )
    .split('\n')
    .filter((l) => l !== '');
  const tags = lines.slice(0, max).flatMap((l): TagRef[] => {
    const m = /^([0-9a-f]{40,64}) ([0-9a-f]{40,64})? (refs\/tags\/.*)$/s.exec(l);
    return m ? [{ object: m[1], peeled: m[2] ?? '', ref: m[3] }] : [];
  });
  return { tags, more: lines.length > max };
}

function digest(salt: string, t: TagRef): string {
  return createHash('sha256')
    .update(`${salt}\0${t.ref}\0${t.object}\0${t.peeled}`, 'utf8')
    .digest()
    .subarray(0, 12)
    .toString('base64url');
}

/**
 * The tags of the repository at `cwd` as `start` records them. A digest names no tag: a tag
 * counts as unchanged only when its name, object and peeled object hash to one recorded,
 * which the agent cannot make happen for a tag of its own (96 bits, salted per run).
 */
export function recordTags(git: GitRunner, cwd: string, max = MAX_TAGS_RECORDED): TagsAtStart {
  const salt = randomBytes(16).toString('hex');
  const { tags, more } = listTags(git, cwd, max);
  const record: TagsAtStart = {
    salt,
    count: tags.length,
    digests: tags.map((t) => digest(salt, t)).join(''),
  };
  if (more) record.cut = true;
  return record;
}

/** The recorded digests, or undefined when the record is not one start writes. */
function digestsOf(record: TagsAtStart | undefined): Set<string> | undefined {
  if (
    !record ||
    typeof record.salt !== 'string' ||
    typeof record.digests !== 'string' ||
    record.digests.length % DIGEST_CHARS !== 0
  )
    return undefined;
  const out = new Set<string>();
  for (let i = 0; i < record.digests.length; i += DIGEST_CHARS)
    out.add(record.digests.slice(i, i + DIGEST_CHARS));
  return out;
}

/** Tags found written in the run, the objects they name, and the bounds reached. */
export interface TagsWritten {
  refs: string[];
  objects: string[];
  partial: string[];
}

/**
 * Tags written in the run: with start's record, a tag new or moved since it (a tag start's
 * record left out past its bound counts as below). Without one, a tag whose file changed since
 * `since` (ctime, which no process sets back), or every tag when the packed refs changed.
 */
export function tagsWritten(
  git: GitRunner,
  cwd: string,
  gitDir: string,
  since: number,
  record?: TagsAtStart,
): TagsWritten {
  const changed = (p: string): boolean => {
    try {
      return lstatSync(p).ctimeMs >= since * 1000;
    } catch {
      return false;
    }
  };
  const known = digestsOf(record);
  const byTime = !known || record?.cut === true;
  const all = byTime && changed(join(gitDir, 'packed-refs'));
  const { tags, more } = listTags(git, cwd, MAX_TAGS_LISTED);
  const written = tags.filter(
    (t) =>
      !(known && record && known.has(digest(record.salt, t))) &&
      (!byTime || all || changed(join(gitDir, t.ref))),
  );
  return {
    refs: written.map((t) => t.ref),
    objects: written.map((t) => t.object),
    partial: more ? [`more than ${MAX_TAGS_LISTED} tags: those past them were not read`] : [],
  };
}
