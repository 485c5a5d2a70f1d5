/**
 * The second line against a command that writes the step's file-command files: the runner
 * reads GITHUB_ENV, GITHUB_PATH, GITHUB_OUTPUT, GITHUB_STATE and GITHUB_STEP_SUMMARY only
 * after the step's process exits, so `run` keeps their bytes from before the command, puts
 * them back after it, and reports what was added (names and paths, never values) as
 * tampering. With an own identity the agent cannot write them at all; as `user: runner` this
 * is the only line.
 */
import {
  chmodSync,
  closeSync,
  constants,
  fstatSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Env } from '../platform/runner.js';
import { scanFileCommands } from './output.js';

export const FILE_COMMANDS = [
  'GITHUB_ENV',
  'GITHUB_PATH',
  'GITHUB_OUTPUT',
  'GITHUB_STATE',
  'GITHUB_STEP_SUMMARY',
] as const;
export type FileCommand = (typeof FILE_COMMANDS)[number];

interface Kept {
  variable: FileCommand;
  path: string;
  /** The bytes before the command; undefined when the file did not exist. */
  bytes?: Buffer;
  mode: number;
}

export interface FileCommandSnapshot {
  kept: Kept[];
}

export interface FileCommandTampering {
  /** Names the command added to GITHUB_ENV, GITHUB_OUTPUT and GITHUB_STATE. */
  env: string[];
  output: string[];
  state: string[];
  /** Directories it added to GITHUB_PATH. */
  path: string[];
  /** Whether it appended to the job summary. */
  summary: boolean;
  /** Files it changed other than by appending (rewrote, truncated, replaced, removed). */
  rewritten: FileCommand[];
}

/** Shown names are cut here: a "name" is whatever the command wrote before `=`. */
const MAX_NAME = 100;
const MAX_NAMES = 50;

/** Keeps the current bytes of every file-command file named in `env`. */
export function snapshotFileCommands(env: Env): FileCommandSnapshot {
  const kept: Kept[] = [];
  for (const variable of FILE_COMMANDS) {
    const path = env[variable];
    if (!path) continue;
    const now = readRegular(path);
    kept.push({ variable, path, bytes: now?.bytes, mode: now?.mode ?? 0o644 });
  }
  return { kept };
}

/**
 * Puts every file back as it was and says what the command added; each name shown is
 * passed through `scrub` (run's secret registry) whole, before it is cut for showing.
 */
export function restoreFileCommands(
  snapshot: FileCommandSnapshot,
  scrub: (text: string) => string = (t) => t,
): FileCommandTampering {
  const found: FileCommandTampering = {
    env: [],
    output: [],
    state: [],
    path: [],
    summary: false,
    rewritten: [],
  };
  for (const k of snapshot.kept) {
    let now: { bytes: Buffer; mode: number } | undefined | 'not-regular';
    try {
      now = readRegular(k.path);
    } catch {
      now = 'not-regular';
    }
    if (now !== 'not-regular' && sameContent(now?.bytes, k.bytes)) continue;
    const before = k.bytes ?? Buffer.alloc(0);
    const after = now !== 'not-regular' ? now?.bytes : undefined;
    if (after?.subarray(0, before.length).equals(before)) {
      record(found, k.variable, after.subarray(before.length).toString('utf8'), scrub);
    } else {
      found.rewritten.push(k.variable);
    }
    putBack(k);
  }
  return found;
}

function sameContent(a: Buffer | undefined, b: Buffer | undefined): boolean {
  return a === undefined || b === undefined ? a === b : a.equals(b);
}

function record(
  found: FileCommandTampering,
  variable: FileCommand,
  added: string,
  scrub: (text: string) => string,
): void {
  if (variable === 'GITHUB_STEP_SUMMARY') {
    found.summary = true;
    return;
  }
  const names =
    variable === 'GITHUB_PATH'
      ? added.split('\n').filter((l) => l.trim() !== '')
      : scanFileCommands(added).map((i) => (i.kind === 'malformed' ? `(line ${i.line})` : i.name));
  const into = {
    GITHUB_ENV: found.env,
    GITHUB_OUTPUT: found.output,
    GITHUB_STATE: found.state,
    GITHUB_PATH: found.path,
  }[variable];
  for (const n of names) {
    // Scrubbed whole, before it is cut: a secret longer than the cut would leave its first
    // MAX_NAME characters, which match no form, in the log and the ledger.
    const shown = scrub(n)
      .replace(/[^\x20-\x7e]/g, '?')
      .slice(0, MAX_NAME);
    if (into.length >= MAX_NAMES) break;
    if (!into.includes(shown)) into.push(shown);
  }
}

/** The file's bytes and mode; undefined when missing; throws when it is not a regular file. */
function readRegular(path: string): { bytes: Buffer; mode: number } | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error(`${path} is not a regular file`);
    return { bytes: readFileSync(fd), mode: st.mode & 0o7777 };
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes a fresh file beside the old one and renames it over: whatever the command left at
 * the path (a link, a hard link to another file, a FIFO) is replaced, never written through.
 */
function putBack(k: Kept): void {
  if (k.bytes === undefined) {
    try {
      unlinkSync(k.path);
    } catch {
      // already gone
    }
    return;
  }
  const temp = join(dirname(k.path), `.${basename(k.path)}.cordon-${randomBytes(4).toString('hex')}`);
  writeFileSync(temp, k.bytes, { flag: 'wx', mode: k.mode });
  chmodSync(temp, k.mode); // the umask narrowed it
  renameSync(temp, k.path);
}
