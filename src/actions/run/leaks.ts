/**
 * After the command: look for secret values and their forms in the files it created or
 * changed in the workspace. Reports the path, line and secret name, never the value.
 */
import { lstatSync, readFileSync } from 'node:fs';
import { relative, resolve, sep } from 'node:path';
import { gitBytes } from '../../platform/git.js';
import { walkFiles } from '../../platform/walk.js';
import type { SecretRegistry } from '../../platform/mask.js';

export interface Leak {
  secret: string;
  path: string;
  line: number;
}

export interface LeakScan {
  leaks: Leak[];
  filesScanned: number;
  /** Files not read, each with the reason. */
  skipped: string[];
}

export interface ScanOptions {
  workspace: string;
  registry: SecretRegistry;
  /** Files modified at or after this time (ms since epoch) are scanned. */
  since: number;
  /** HEAD before the command, when the workspace is a git repository. */
  headBefore?: string;
  maxFiles?: number;
  maxFileBytes?: number;
}

/**
 * git through the hardened runner (src/platform/git.ts): the agent wrote `.git/config`, and
 * an fsmonitor, hook or signature program there would run as this step.
 */
function git(workspace: string, args: string[]): string | undefined {
  try {
    return gitBytes(args, { cwd: workspace, maxBuffer: 256 * 1024 * 1024, timeoutMs: 300_000 }).toString(
      'utf8',
    );
  } catch {
    return undefined;
  }
}

/** HEAD of the workspace, or undefined when it is not a git repository. */
export function gitHead(workspace: string): string | undefined {
  return git(workspace, ['rev-parse', '--verify', '-q', 'HEAD'])?.trim() || undefined;
}

/**
 * Lines added by the commits the command made (`headBefore..HEAD`), scanned one by one: a
 * value committed and then deleted again is still in what a push would send. Reported as
 * `path@commit` and the line in that commit's version of the file.
 */
function commitLeaks(workspace: string, headBefore: string, registry: SecretRegistry): Leak[] {
  const head = gitHead(workspace);
  if (!head || head === headBefore) return [];
  // No external diff or textconv drivers: both would run commands the agent configured.
  const log = git(workspace, [
    'log',
    '-p',
    '--no-color',
    '--no-ext-diff',
    '--no-textconv',
    '--text',
    '--unified=0',
    '--no-renames',
    '--format=commit %h',
    `${headBefore}..${head}`,
  ]);
  const leaks: Leak[] = [];
  if (!log) return leaks;
  let commit = '';
  let path = '';
  let line = 0;
  const seen = new Set<string>();
  for (const text of log.split('\n')) {
    if (text.startsWith('commit ')) commit = text.slice(7).trim();
    else if (text.startsWith('+++ ')) path = text.startsWith('+++ b/') ? text.slice(6) : '';
    else if (text.startsWith('@@ ')) line = Number(/\+(\d+)/.exec(text)?.[1] ?? 0);
    else if (text.startsWith('+') && path) {
      for (const hit of registry.findAll(Buffer.from(text.slice(1), 'utf8'))) {
        const key = `${hit.name}:${path}@${commit}:${line}`;
        if (seen.has(key)) continue;
        seen.add(key);
        leaks.push({ secret: hit.name, path: `${path}@${commit}`, line });
      }
      line++;
    }
  }
  return leaks;
}

/** Files under `root` (not `.git`) modified at or after `since`; bounded by `limit` entries visited. */
function modifiedSince(root: string, since: number, limit: number): { files: string[]; truncated: boolean } {
  const r = walkFiles(root, {
    limit,
    skip: (dir, name) => name === '.git' && dir === root,
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
  const leaks: Leak[] = opts.headBefore ? commitLeaks(root, opts.headBefore, opts.registry) : [];
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
    leaks.push(...findLeaks(content, rel, opts.registry));
  }
  return { leaks, filesScanned, skipped };
}
