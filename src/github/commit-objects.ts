/**
 * Commit objects as git stores them, read raw (`cat-file --batch`, length-prefixed) so no byte
 * in a name or a message can shift a field, and each checked against its name: git does not
 * hash-check what it reads.
 */
import { createHash } from 'node:crypto';

/** Runs git in `cwd` (with `input` on its stdin); its stdout. Throws when git fails. */
export type GitRunner = (args: string[], cwd: string, input?: string) => Buffer;

/** git's stdout as text. */
export function gitText(git: GitRunner, args: string[], cwd: string, input?: string): string {
  return git(args, cwd, input).toString('utf8');
}

/** C0 and C1 control characters and DEL: no real name or address holds one. */
function isControl(code: number): boolean {
  return code < 0x20 || (code >= 0x7f && code <= 0x9f);
}

export function hasControl(v: string): boolean {
  return [...v].some((ch) => isControl(ch.charCodeAt(0)));
}

/** A value with its control characters shown as `\xNN`, so none is hidden or acts in the summary. */
export function visible(v: string): string {
  return [...v]
    .map((ch) => (isControl(ch.charCodeAt(0)) ? `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}` : ch))
    .join('');
}

/** Of `shas`, those that name a commit or a tag in the repository (reflogs may name pruned ones). */
export function commitish(git: GitRunner, cwd: string, shas: string[]): string[] {
  if (!shas.length) return [];
  return gitText(git, ['cat-file', '--batch-check=%(objectname) %(objecttype)'], cwd, shas.join('\n') + '\n')
    .split('\n')
    .map((l) => l.split(' '))
    .filter(([, type]) => type === 'commit' || type === 'tag')
    .map(([sha]) => sha);
}

export interface RawCommit {
  author: string;
  authorEmail: string;
  committer: string;
  committerEmail: string;
  signed: boolean;
  message: string;
  /** The `parent` headers, in order. */
  parents: string[];
  /**
   * The author or committer line holds more than one `<` or `>`: git reads the first
   * `<...>` as the address, libgit2 (what GitHub reads commits with) the last. git never
   * writes such a line; whose commit it is depends on who reads it.
   */
  ambiguous: boolean;
}

/** `Name <email> time tz` as git splits it: the first `<`, the first `>` after it. */
function ident(line: string): [string, string] {
  const lt = line.indexOf('<');
  if (lt < 0) return [line.trim(), ''];
  const gt = line.indexOf('>', lt + 1);
  return [line.slice(0, lt).trim(), line.slice(lt + 1, gt < 0 ? line.length : gt)];
}

/** A raw commit object: its first author and committer headers, a signature header, the message. */
export function parseCommit(raw: Buffer): RawCommit {
  const end = raw.indexOf('\n\n');
  const headers = raw
    .subarray(0, end < 0 ? raw.length : end)
    .toString('utf8')
    .split('\n');
  const message = end < 0 ? '' : raw.subarray(end + 2).toString('utf8');
  let author: [string, string] | undefined;
  let committer: [string, string] | undefined;
  let signed = false;
  let ambiguous = false;
  const parents: string[] = [];
  const twice = (line: string): boolean => line.split('<').length > 2 || line.split('>').length > 2;
  for (const h of headers) {
    if (h.startsWith(' ')) continue;
    if (!author && !committer && h.startsWith('parent ')) parents.push(h.slice(7).trim());
    else if (!author && h.startsWith('author ')) {
      author = ident(h.slice(7));
      ambiguous ||= twice(h);
    } else if (!committer && h.startsWith('committer ')) {
      committer = ident(h.slice(10));
      ambiguous ||= twice(h);
    } else if (h.startsWith('gpgsig ') || h.startsWith('gpgsig-sha256 ')) signed = true;
  }
  return {
    author: author?.[0] ?? '',
    authorEmail: author?.[1] ?? '',
    committer: committer?.[0] ?? '',
    committerEmail: committer?.[1] ?? '',
    signed,
    message,
    ambiguous,
    parents,
  };
}

/**
 * `cat-file --batch` output: `<sha> <type> <size>\n<size bytes>\n` per object, read by length;
 * the objects of the types in `types`.
 */
export function readBatch(out: Buffer, types: readonly string[] = ['commit']): Map<string, Buffer> {
  const objects = new Map<string, Buffer>();
  let at = 0;
  while (at < out.length) {
    const nl = out.indexOf(10, at);
    if (nl < 0) break;
    const [sha, type, size] = out.subarray(at, nl).toString('utf8').split(' ');
    const n = Number(size);
    if (type === undefined || !Number.isInteger(n)) {
      at = nl + 1; // `<sha> missing`
      continue;
    }
    if (types.includes(type)) objects.set(sha, out.subarray(nl + 1, nl + 1 + n));
    at = nl + 1 + n + 1;
  }
  return objects;
}

/**
 * Whether `raw` is the object `sha` names (a commit unless `type` says otherwise): git hashes
 * `<type> <size>\0<content>`
 * (SHA-1, or SHA-256 for a 64-digit name). git reads a loose or packed object without
 * checking that, so an object file rewritten in place (the agent pushes its human-authored
 * commit, then writes the bot's identity into the same file) is read as it now says.
 */
export function objectMatches(sha: string, raw: Buffer, type = 'commit'): boolean {
  const h = createHash(sha.length === 64 ? 'sha256' : 'sha1');
  h.update(`${type} ${raw.length}\0`);
  h.update(raw);
  return h.digest('hex') === sha.toLowerCase();
}

/** A commit object larger than this is not read, and named as not read (`partial`): a message is the agent's to size. */
export const MAX_COMMIT_BYTES = 1024 * 1024;
/** Most bytes of objects one `cat-file --batch` is asked for (git's output is bounded). */
const BATCH_BYTES = 16 * 1024 * 1024;

/**
 * The commit objects of `shas` (raw), read in batches of bounded size; one larger than
 * MAX_COMMIT_BYTES is not read but put in `large` with its size. A missing one is left out.
 */
export function readCommits(
  git: GitRunner,
  cwd: string,
  shas: readonly string[],
  large: Map<string, number>,
): Map<string, Buffer> {
  const objects = new Map<string, Buffer>();
  if (!shas.length) return objects;
  const sized = gitText(
    git,
    ['cat-file', '--batch-check=%(objectname) %(objecttype) %(objectsize)'],
    cwd,
    shas.join('\n') + '\n',
  )
    .split('\n')
    .map((l) => l.split(' '))
    .filter(([sha, type]) => type === 'commit' && /^[0-9a-f]{40,64}$/.test(sha));
  let chunk: string[] = [];
  let bytes = 0;
  const flush = (): void => {
    if (!chunk.length) return;
    for (const [sha, obj] of readBatch(git(['cat-file', '--batch'], cwd, chunk.join('\n') + '\n')))
      objects.set(sha, obj);
    chunk = [];
    bytes = 0;
  };
  for (const [sha, , size] of sized) {
    const n = Number(size);
    if (!(n <= MAX_COMMIT_BYTES)) {
      large.set(sha, n);
      continue;
    }
    if (bytes + n > BATCH_BYTES) flush();
    chunk.push(sha);
    bytes += n;
  }
  flush();
  return objects;
}

/** git's subject: the first paragraph's lines joined by a space. */
export function subjectOf(message: string): string {
  const lines = message.replace(/^\n+/, '').split('\n');
  const para: string[] = [];
  for (const l of lines) {
    if (l.trim() === '') break;
    para.push(l.trim());
  }
  return para.join(' ');
}
