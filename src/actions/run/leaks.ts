/**
 * After the command: look for secret values and their forms in the files it created or
 * changed in the workspace and in the git objects it created (leaks-git.ts), inside
 * compressed files and archives too (archive.ts). Reports the path, line and secret name,
 * never the value.
 */
import { lstatSync, readFileSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { CordonError } from '../../platform/errors.js';
import { walkFiles } from '../../platform/walk.js';
import type { SecretRegistry } from '../../platform/mask.js';
import type { Runner } from '../../platform/runner.js';
import type { LeakScanMode } from './inputs.js';
import { scanContainers, type ContainerLimits } from './archive.js';
import { GUARDED_NAMES } from './gitguard.js';
import { gitChanges, readObjects, type GitChanges, type GitSnapshot } from './leaks-git.js';

export interface Leak {
  secret: string;
  path: string;
  line: number;
}

export interface LeakScan {
  leaks: Leak[];
  filesScanned: number;
  /** Files, objects and archive entries not (fully) read, each with the reason. */
  skipped: string[];
}

export interface ScanOptions {
  workspace: string;
  registry: SecretRegistry;
  /** Files modified at or after this time (ms since epoch) are scanned. */
  since: number;
  /** What the command put into git (leaks-git.ts gitChanges). */
  git?: GitChanges;
  maxFiles?: number;
  maxFileBytes?: number;
  containers?: ContainerLimits;
}

/**
 * What in a `.git/` is not read as files: the objects (read through git, by object), the
 * index (paths and hashes of the work tree, which is read itself; a large repository's is
 * over the size bound and would fail a clean job), and the large-file stores of git-lfs and
 * git-annex (copies of work-tree files, often over the bound or compressed).
 */
const GIT_STORES: readonly string[] = ['objects', 'index', 'lfs', 'annex'];

/**
 * Files under `root` modified at or after `since`; bounded by `limit` entries visited.
 * `.git/objects` is left to the git reader (compressed, read by object), and what gitguard
 * puts back as it was (`config`, which holds the checkout token again, hooks, info) and
 * the submodules' `config` files (the token put back) are no output of the command; the rest of `.git` is read as files: a reflog message or a file
 * dropped there leaves with an upload of the workspace too.
 */
function modifiedSince(root: string, since: number, limit: number): { files: string[]; truncated: boolean } {
  const gitDir = join(root, '.git');
  const modules = join(gitDir, 'modules') + sep;
  const r = walkFiles(root, {
    limit,
    skip: (dir, name) =>
      (dir === gitDir && (GIT_STORES.includes(name) || GUARDED_NAMES.includes(name))) ||
      // A submodule's stores are git's; its config holds the checkout token again.
      (dir.startsWith(modules) && (GIT_STORES.includes(name) || name === 'config')),
    keep: (_p, st) => Math.max(st.mtimeMs, st.ctimeMs) >= since,
  });
  return { files: r.files.map((p) => relative(root, p)), truncated: r.truncated };
}

function lineAt(offset: number, lineStarts: number[]): number {
  // Binary search over the positions where lines start.
  let lo = 0;
  let hi = lineStarts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (lineStarts[mid] <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo + 1;
}

/** Scans one buffer; returns each distinct (secret, line) found. */
export function findLeaks(buf: Buffer, path: string, registry: SecretRegistry): Leak[] {
  const hits = registry.findAll(buf);
  if (hits.length === 0) return [];
  const starts = [0];
  for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, i + 1)) starts.push(i + 1);
  const seen = new Set<string>();
  const out: Leak[] = [];
  for (const h of hits) {
    const line = lineAt(h.start, starts);
    const key = `${h.name}:${line}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ secret: h.name, path, line });
  }
  return out;
}

export function scanWorkspace(opts: ScanOptions): LeakScan {
  const root = resolve(opts.workspace);
  const maxFiles = opts.maxFiles ?? 500000;
  const maxBytes = opts.maxFileBytes ?? 64 * 1024 * 1024;
  const candidates = new Set<string>();
  const skipped: string[] = [];
  // Every file whose content or metadata changed since the start: a write sets ctime, and
  // no process can set ctime back. This is what `git status` would list (changed and
  // untracked) plus ignored files (build output, .env), which get uploaded as artifacts.
  // git status itself is not run: with a filter driver in the .git/config and
  // .gitattributes the agent wrote, it would run the agent's command in this step.
  const leaks: Leak[] = [];
  const scan = (path: string, data: Buffer): void => {
    leaks.push(...findLeaks(data, path, opts.registry));
  };
  // Every blob, commit, tag and tree the command added: what a push of any ref sends.
  if (opts.git) {
    skipped.push(...opts.git.notScanned);
    skipped.push(
      ...readObjects(opts.git, (label, data) =>
        skipped.push(...scanContainers(data, label, scan, opts.containers)),
      ),
    );
  }
  const walked = modifiedSince(root, opts.since, maxFiles);
  for (const p of walked.files) candidates.add(p);
  if (walked.truncated) skipped.push(`files past the first ${maxFiles} workspace entries`);
  let filesScanned = 0;
  for (const rel of [...candidates].sort()) {
    const abs = resolve(root, rel);
    if (abs !== root && !abs.startsWith(root + sep)) continue;
    let st;
    try {
      st = lstatSync(abs);
    } catch {
      continue;
    }
    if (!st.isFile()) continue;
    if (st.size > maxBytes) {
      skipped.push(`${rel} (over ${maxBytes} bytes)`);
      continue;
    }
    let content: Buffer;
    try {
      content = readFileSync(abs);
    } catch {
      // The command can make a file unreadable to this step; it is named, not fatal.
      skipped.push(`${rel} (unreadable)`);
      continue;
    }
    filesScanned++;
    skipped.push(...scanContainers(content, rel, scan, opts.containers));
  }
  return { leaks, filesScanned, skipped };
}

export interface RunScan {
  leaks: Leak[];
  /** What was not (fully) read, scrubbed. */
  notScanned: string[];
  /** Commit objects the command created in the workspace's repository (for the attribution). */
  commitsCreated: string[];
}

/**
 * run's scan after the command: what it put into git (with `leak-scan: off` only the
 * workspace repository's new commits, for the attribution: `before.commitsOnly`), then,
 * unless `scan` is off, the files and new objects read for values.
 * Paths and reasons are scrubbed: a file or ref name can hold a value too.
 */
export function scanAfterRun(opts: {
  workspace: string;
  registry: SecretRegistry;
  since: number;
  before: GitSnapshot;
  scan: boolean;
}): RunScan {
  const { registry } = opts;
  let git: GitChanges;
  try {
    git = gitChanges(opts.workspace, opts.before);
  } catch (e) {
    git = {
      repos: [],
      commitsCreated: [],
      notScanned: [`git objects (${e instanceof Error ? e.message : e})`],
    };
  }
  if (!opts.scan) return { leaks: [], notScanned: [], commitsCreated: git.commitsCreated };
  const scan = scanWorkspace({ workspace: opts.workspace, registry, since: opts.since, git });
  return {
    leaks: scan.leaks.map((l) => ({ ...l, path: registry.scrub(l.path) })),
    notScanned: scan.skipped.map((s) => registry.scrub(s)),
    commitsCreated: git.commitsCreated,
  };
}

/** With `leak-scan: fail`: content the scan could not read fails the step like a value found. */
/** A warning for each secret the command printed hidden behind escapes (output.ts CommandOutput). */
export function annotateHidden(names: readonly string[], runner: Runner): void {
  for (const name of names)
    runner.warning(
      `run: the command printed secret ${name} with terminal escape sequences or invisible characters between its characters, which the log does not show: it reached the job log unmasked; treat it as leaked`,
      { title: 'Cordon: a secret hidden in the output' },
    );
}

/** One annotation per leak, at its file and line: an error under `leak-scan: fail`, else a warning. */
export function annotateLeaks(leaks: Leak[], mode: LeakScanMode, runner: Runner): void {
  const report = mode === 'fail' ? runner.error.bind(runner) : runner.warning.bind(runner);
  for (const l of leaks)
    report(`run: secret ${l.secret} was written to ${l.path}:${l.line}`, {
      file: l.path,
      line: l.line,
      title: 'Secret written to the workspace',
    });
}

/** What fails the step under `leak-scan: fail`: a secret left behind, else what was not read. */
export function leakScanError(leaks: Leak[], notScanned: string[]): CordonError | undefined {
  if (leaks.length) {
    const names = [...new Set(leaks.map((l) => l.secret))].join(', ');
    return new CordonError({
      what: `run: the command wrote ${names} into ${leaks.length} place(s) in the workspace`,
      why: `secrets must not be left in files a later step could commit or upload: ${leaks.map((l) => `${l.path}:${l.line}`).join(', ')}`,
      fix: 'remove the files and make the command stop writing the value; set leak-scan: warn to only report',
      input: 'leak-scan',
    });
  }
  return notScanned.length ? notScannedError(notScanned) : undefined;
}

function notScannedError(notScanned: string[]): CordonError {
  return new CordonError({
    what: `run: the leak scan could not read everything the command wrote: ${notScanned.slice(0, 5).join('; ')}${notScanned.length > 5 ? '; ...' : ''}`,
    why: 'content the scan cannot read (past a bound, damaged, encrypted, compressed another way) could hide a secret',
    fix: 'keep what the command writes within the bounds in docs/run.md (Leak scan), or set leak-scan: warn to only report',
    input: 'leak-scan',
  });
}
