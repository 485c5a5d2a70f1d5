/**
 * What in the workspace's `.git/` makes a later git run a program: the config (fsmonitor,
 * hooksPath, gpg.program, pager, filters, external diff), `config.worktree`, `commondir`
 * (whose target's config git reads), hooks and `info/` (attributes naming filters, grafts).
 * The user's later steps run git in the same workspace as the runner user, so what the
 * command changed there is put back as it was before it, and named in `run.finished`.
 * Nothing here follows a link: the command may have planted one where a file was.
 */
import {
  chmodSync,
  closeSync,
  fchmodSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { join } from 'node:path';

/** Files directly in `.git/` that git reads for configuration. */
const FILES = ['config', 'config.worktree', 'commondir'];
/** Directories under `.git/` whose every file is guarded. */
const DIRS = ['hooks', 'info'];
/** The names directly in `.git/` that are put back as they were (the leak scan leaves them out). */
export const GUARDED_NAMES: readonly string[] = [...FILES, ...DIRS];
/** Bounds on what is held in memory: a checkout's hooks and info are a few small files. */
const MAX_ENTRIES = 1000;
const MAX_FILE_BYTES = 4 * 1024 * 1024;

type Entry =
  { kind: 'file'; mode: number; data: Buffer } | { kind: 'dir'; mode: number } | { kind: 'absent' };

export interface GitGuard {
  gitDir: string;
  /** Path relative to `.git/` -> what was there before the command. */
  entries: Map<string, Entry>;
  /** Paths not held (too many, too large): named in the warning, never compared. */
  unguarded: string[];
}

export interface GitRestored {
  /** What the command changed and was put back, as `.git/<path>`. */
  restored: string[];
  /** What could not be put back. */
  failed: string[];
}

function lstat(p: string): Stats | undefined {
  try {
    return lstatSync(p);
  } catch {
    return undefined;
  }
}

function hold(gitDir: string, rel: string, guard: GitGuard): void {
  if (guard.entries.size >= MAX_ENTRIES) {
    guard.unguarded.push(`.git/${rel}`);
    return;
  }
  const p = join(gitDir, rel);
  const st = lstat(p);
  try {
    if (!st) guard.entries.set(rel, { kind: 'absent' });
    else if (st.isFile() && st.size <= MAX_FILE_BYTES)
      guard.entries.set(rel, { kind: 'file', mode: st.mode & 0o7777, data: readFileSync(p) });
    else if (st.isDirectory()) {
      const names = readdirSync(p).sort();
      guard.entries.set(rel, { kind: 'dir', mode: st.mode & 0o7777 });
      for (const name of names) hold(gitDir, join(rel, name), guard);
    } else guard.unguarded.push(`.git/${rel}`);
  } catch {
    // Unreadable to run before the command: named, never compared.
    guard.unguarded.push(`.git/${rel}`);
  }
}

/** Before the command: what `.git/` holds that git runs code from; undefined when `.git` is not a directory. */
export function snapshotGitDir(workspace: string): GitGuard | undefined {
  const gitDir = join(workspace, '.git');
  if (!lstat(gitDir)?.isDirectory()) return undefined;
  const guard: GitGuard = { gitDir, entries: new Map(), unguarded: [] };
  for (const rel of [...FILES, ...DIRS]) hold(gitDir, rel, guard);
  return guard;
}

function same(p: string, want: Entry): boolean {
  const st = lstat(p);
  if (want.kind === 'absent') return !st;
  if (!st || (st.mode & 0o7777) !== want.mode) return false;
  if (want.kind === 'dir') return st.isDirectory();
  if (!st.isFile() || st.size !== want.data.length) return false;
  return readFileSync(p).equals(want.data);
}

/** Writes a file that is not there (O_EXCL: never through a link), with its mode exactly. */
function create(p: string, data: Buffer, mode: number): void {
  const fd = openSync(p, 'wx', 0o600);
  try {
    writeSync(fd, data);
    fchmodSync(fd, mode);
  } finally {
    closeSync(fd);
  }
}

/** Everything under `.git/<rel>` now, depth first, for entries the command added. */
function present(gitDir: string, rel: string, out: string[]): void {
  const st = lstat(join(gitDir, rel));
  if (!st) return;
  out.push(rel);
  if (!st.isDirectory()) return;
  try {
    for (const name of readdirSync(join(gitDir, rel))) present(gitDir, join(rel, name), out);
  } catch {
    // Unreadable: the entry itself is compared and replaced.
  }
}

/**
 * After the command, once the workspace is back with the runner user and every process of
 * the command is gone: puts each guarded path back as it was and removes what was added.
 */
export function restoreGitDir(guard: GitGuard): GitRestored {
  const { gitDir, entries } = guard;
  const result: GitRestored = { restored: [], failed: [...guard.unguarded] };
  const top = lstat(gitDir);
  if (!top?.isDirectory()) {
    // `.git` itself replaced (by a link to a repository of the command's): take the stand-in away.
    rmSync(gitDir, { recursive: true, force: true });
    result.failed.push('.git (replaced; the stand-in was removed)');
    return result;
  }
  // Parents before children (the order they were held in): a directory is real before a file is written in it.
  for (const [rel, want] of entries) {
    const p = join(gitDir, rel);
    if (same(p, want)) continue;
    try {
      const st = lstat(p);
      if (want.kind === 'dir') {
        if (st && !st.isDirectory()) rmSync(p, { force: true });
        if (!lstat(p)) mkdirSync(p);
        // A real directory now, and the command's processes are gone: chmod cannot be led elsewhere.
        chmodSync(p, want.mode);
      } else {
        rmSync(p, { recursive: true, force: true });
        if (want.kind === 'file') create(p, want.data, want.mode);
      }
      result.restored.push(`.git/${rel}`);
    } catch {
      result.failed.push(`.git/${rel}`);
    }
  }
  // What the command added under a guarded directory (deepest first).
  const now: string[] = [];
  for (const rel of [...FILES, ...DIRS]) present(gitDir, rel, now);
  const held = (rel: string): boolean =>
    entries.has(rel) || guard.unguarded.some((u) => `.git/${rel}` === u || `.git/${rel}`.startsWith(`${u}/`));
  for (const rel of now.reverse()) {
    if (held(rel)) continue;
    try {
      rmSync(join(gitDir, rel), { recursive: true, force: true });
      result.restored.push(`.git/${rel}`);
    } catch {
      result.failed.push(`.git/${rel}`);
    }
  }
  result.restored = [...new Set(result.restored)].sort();
  return result;
}

/** The warning for what was put back (names only), and the fields of `run.finished`. */
export function reportGitRestored(
  r: GitRestored | undefined,
  warn: (message: string) => void,
): { gitRestored?: string[]; gitNotRestored?: string[] } {
  if (!r || (!r.restored.length && !r.failed.length)) return {};
  if (r.restored.length)
    warn(
      `run: the command changed what makes git run programs in the workspace; put back as before it: ${r.restored.join(', ')}`,
    );
  if (r.failed.length)
    warn(
      `run: could not put back ${r.failed.join(', ')} in the workspace's .git: a later step that runs git there may run the command's programs`,
    );
  return {
    gitRestored: r.restored.length ? r.restored : undefined,
    gitNotRestored: r.failed.length ? r.failed : undefined,
  };
}
