/**
 * Where the run's commits are looked for besides HEAD: refs pushed in the run and the reflogs
 * changed since start (tags.ts: the tags written in it), under bounds every one the agent's to reach.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { walkFiles } from '../platform/walk.js';
import { gitText as text, visible, type GitRunner } from './commit-objects.js';

/**
 * Bounds on what is read to find the run's commits, every one the agent's to reach: refs
 * listed under `refs/remotes`, entries visited under each part of
 * `.git/logs/refs`, reflog files read (of those changed since start), bytes of one reflog
 * and of all, distinct commits the reflogs name. What is filtered (reflogs not changed in it, remote-tracking refs no push moved) is filtered before
 * it is counted; a bound reached is said (`partial`), never a shorter list alone.
 */
const MAX_REFS_LISTED = 100_000;
/** Most tags and pushed refs named in `commits.observed`: every one is walked from. */
export const MAX_REFS_NAMED = 200;
const MAX_LOG_ENTRIES = 100_000;
const MAX_REFLOGS = 10_000;
/** A reflog file larger than this is read from its end (its newest entries) up to it. */
const MAX_REFLOG_BYTES = 16 * 1024 * 1024;
const MAX_REFLOGS_BYTES = 64 * 1024 * 1024;
const MAX_REFLOG_SHAS = 200_000;

/** A name the agent chose (a ref, a path), short and with its control characters shown. */
function named(v: string): string {
  const s = visible(v);
  return s.length > 120 ? `${s.slice(0, 119)}…` : s;
}

/** `for-each-ref` of `prefix`: `[objectname, refname]`, at most MAX_REFS_LISTED, and whether there were more. */
function refsUnder(git: GitRunner, cwd: string, prefix: string): { refs: [string, string][]; more: boolean } {
  const lines = text(
    git,
    ['for-each-ref', '--format=%(objectname) %(refname)', `--count=${MAX_REFS_LISTED + 1}`, prefix],
    cwd,
  )
    .split('\n')
    .filter((l) => l !== '');
  const refs = lines.slice(0, MAX_REFS_LISTED).flatMap((l): [string, string][] => {
    const sp = l.indexOf(' ');
    return sp > 0 ? [[l.slice(0, sp), l.slice(sp + 1)]] : [];
  });
  return { refs, more: lines.length > MAX_REFS_LISTED };
}

/** Refs found, with the objects they point at (what the walk starts from) and the bounds reached. */
interface RefsFound {
  refs: string[];
  objects: string[];
  partial: string[];
}

/**
 * Remote-tracking refs a push from this workspace moved: git logs `update by push` in the
 * ref's reflog (`pushed`, from readReflogs). A commit pushed and then dropped locally is
 * still found through them.
 */
export function pushedRefs(git: GitRunner, cwd: string, pushed: ReadonlySet<string>): RefsFound {
  const { refs, more } = refsUnder(git, cwd, 'refs/remotes');
  const moved = refs.filter(([, r]) => !r.endsWith('/HEAD') && pushed.has(r));
  return {
    refs: moved.map(([, r]) => r),
    objects: moved.map(([o]) => o),
    partial: more ? [`more than ${MAX_REFS_LISTED} remote-tracking refs: those past them were not read`] : [],
  };
}

/** What the reflogs hold from the run: the commits they name, and the remote-tracking refs a push moved. */
interface Reflogs {
  updates: string[];
  pushed: Set<string>;
  partial: string[];
}

/** Reads up to `max` bytes from the end of a regular file, opened without following a link or blocking. */
function tail(file: string, max: number): { body: string; size: number; read: number } | undefined {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return undefined;
    const n = Math.max(0, Math.min(st.size, max));
    const buf = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
      const r = readSync(fd, buf, got, n - got, st.size - n + got);
      if (r <= 0) break;
      got += r;
    }
    let body = buf.subarray(0, got).toString('utf8');
    // Started inside a line: that line is not whole.
    if (n < st.size) body = body.slice(body.indexOf('\n') + 1);
    return { body, size: st.size, read: got };
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * Every ref update the reflogs hold from `since` (seconds) on: commits made and then reset
 * away, amended, stashed, or on a branch deleted since (HEAD's reflog keeps them). A fetch
 * into a remote-tracking ref brings other people's commits: only pushes count there.
 * HEAD's reflog is read first, then the stash's, the local branches', the remote-tracking
 * refs' and the other refs'; only reflog files changed since `since` (ctime, which no
 * process sets back) are read, so reflogs from before the run do not count toward the bounds.
 */
export function readReflogs(gitDir: string, since: number): Reflogs {
  const logs = join(gitDir, 'logs');
  const partial: string[] = [];
  const changed = (st: Stats): boolean => st.ctimeMs >= since * 1000;
  const files: string[] = [];
  for (const f of [join(logs, 'HEAD'), join(logs, 'refs', 'stash')]) {
    try {
      const st = lstatSync(f);
      if (st.isFile() && changed(st)) files.push(f);
    } catch {
      // none
    }
  }
  const own = new Set(['heads', 'remotes', 'stash']);
  for (const [dir, skip] of [
    [join(logs, 'refs', 'heads'), undefined],
    [join(logs, 'refs', 'remotes'), undefined],
    [join(logs, 'refs'), (d: string, name: string) => d === join(logs, 'refs') && own.has(name)],
  ] as const) {
    const walked = walkFiles(dir, { limit: MAX_LOG_ENTRIES, keep: (_, st) => changed(st), skip });
    files.push(...walked.files);
    if (walked.truncated)
      partial.push(
        `${named(dir.slice(gitDir.length + 1))} holds more than ${MAX_LOG_ENTRIES} entries: reflogs past them were not read`,
      );
  }
  if (files.length > MAX_REFLOGS)
    partial.push(
      `${files.length} reflogs changed in the run: those past the first ${MAX_REFLOGS} were not read`,
    );
  const out = new Set<string>();
  const pushed = new Set<string>();
  let budget = MAX_REFLOGS_BYTES;
  for (const file of files.slice(0, MAX_REFLOGS)) {
    if (budget <= 0) {
      partial.push(
        `the reflogs changed in the run hold more than ${MAX_REFLOGS_BYTES} bytes: those past them were not read`,
      );
      break;
    }
    const ref = file.slice(logs.length + 1);
    const read = tail(file, Math.min(MAX_REFLOG_BYTES, budget));
    if (!read) continue;
    budget -= read.read;
    if (read.read < read.size)
      partial.push(
        `the reflog ${named(`logs/${ref}`)} is ${read.size} bytes: only its last ${read.read} were read`,
      );
    const remote = ref.startsWith('refs/remotes/');
    for (const line of read.body.split('\n')) {
      const tab = line.indexOf('\t');
      const head = (tab < 0 ? line : line.slice(0, tab)).split(' ');
      const message = tab < 0 ? '' : line.slice(tab + 1);
      if (remote && message.startsWith('update by push')) pushed.add(ref);
      const sha = head[1] ?? '';
      const time = Number(head[head.length - 2]);
      if (!/^[0-9a-f]{40,64}$/.test(sha) || /^0+$/.test(sha) || !(time >= since)) continue;
      if (remote && !message.startsWith('update by push')) continue;
      if (out.size >= MAX_REFLOG_SHAS) {
        partial.push(
          `the reflogs name more than ${MAX_REFLOG_SHAS} commits since start: those past them were not read`,
        );
        return { updates: [...out], pushed, partial };
      }
      out.add(sha);
    }
  }
  return { updates: [...out], pushed, partial };
}

/** The commits readReflogs finds. */
export function reflogUpdates(gitDir: string, since: number): string[] {
  return readReflogs(gitDir, since).updates;
}
