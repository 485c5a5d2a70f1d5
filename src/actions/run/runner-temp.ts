/**
 * RUNNER_TEMP closed to other users while the agent's own user runs: the runner keeps there,
 * until the job ends, every step's file-command files (an earlier step's GITHUB_ENV holds the
 * secrets it exported, its GITHUB_OUTPUT and GITHUB_STATE what it handed on) and the scripts
 * of `run:` steps (with whatever their expressions put in them), all readable by anyone who
 * can reach the directory. The agent needs nothing there (its script and files are in its own
 * HOME), and cannot write there anyway; run is the directory's owner (or root) and takes the
 * bits for "other" away before the command starts and puts them back after it.
 *
 * A step killed in between (its timeout, a cancel, SIGKILL) never puts them back: so the mode
 * is first recorded in `$RUNNER_TEMP/cordon/runner-temp-mode` (the directory 0700, the file
 * 0600, run's), the put-back removes the record, and the next `run` step and start's post put
 * a recorded mode back (see recoverRunnerTemp).
 */
import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  realpathSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { DIR_FLAGS } from '../../platform/dir-fd.js';
import { describeError } from '../../platform/errors.js';
import type { Runner } from '../../platform/runner.js';

export interface ClosedTemp {
  /** What the directory's mode was, for the record (octal, e.g. "755"); undefined: not changed. */
  was?: string;
  /** Why it was left as it was. */
  skipped?: string;
  /** Puts the mode back (a failure is a warning). Safe to call twice. */
  reopen(): void;
}

/** `p` as the kernel reaches it (links above it followed), or as written when it is not there. */
const real = (p: string): string => {
  try {
    return realpathSync(p);
  } catch {
    return resolve(p);
  }
};

const inside = (dir: string, p: string): boolean => {
  const rel = relative(real(dir), real(p));
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !rel.startsWith(sep));
};

/**
 * Takes "other"'s bits off `dir` (opened without following a link), unless the workspace
 * is inside it (the agent must reach the workspace) or nothing is open to others already.
 */
export function closeRunnerTemp(
  dir: string | undefined,
  workspace: string,
  say: Pick<Runner, 'info' | 'warning'>,
): ClosedTemp {
  const none = (skipped?: string): ClosedTemp => {
    if (skipped) say.info(`run: RUNNER_TEMP stays open to other users: ${skipped}`);
    return { skipped, reopen: () => undefined };
  };
  if (!dir) return none('RUNNER_TEMP is not set');
  if (inside(dir, workspace)) return none('the workspace is inside RUNNER_TEMP');
  let fd: number;
  try {
    fd = openSync(dir, DIR_FLAGS);
  } catch (e) {
    return none(`RUNNER_TEMP could not be opened: ${describeError(e)}`);
  }
  let mode: number;
  try {
    const st = fstatSync(fd);
    mode = st.mode & 0o7777;
    // Nothing open to others; or a directory every user shares (/tmp, sticky), not run's to close.
    if ((mode & 0o007) === 0 || mode & 0o1000) {
      closeSync(fd);
      return none(mode & 0o1000 ? 'RUNNER_TEMP is a directory every user shares (sticky)' : undefined);
    }
    // Recorded before it is closed: a step killed after this leaves what puts it back.
    writeRecord(fd, { dev: st.dev, ino: st.ino, was: mode, set: mode & ~0o007 });
    fchmodSync(fd, mode & ~0o007);
  } catch (e) {
    dropRecord(fd);
    closeSync(fd);
    return none(`RUNNER_TEMP could not be closed to other users: ${describeError(e)}`);
  }
  let open = true;
  return {
    was: mode.toString(8),
    reopen() {
      if (!open) return;
      open = false;
      try {
        fchmodSync(fd, mode);
        dropRecord(fd);
      } catch (e) {
        say.warning(
          `run: RUNNER_TEMP's mode (${mode.toString(8)}) could not be put back: ${describeError(e)}`,
        );
      } finally {
        closeSync(fd);
      }
    },
  };
}

/** What a closed RUNNER_TEMP was, kept until its mode is back. */
interface ModeRecord {
  dev: number;
  ino: number;
  /** The mode to put back. */
  was: number;
  /** The mode run set (only a directory still with it is put back). */
  set: number;
}

const RECORD = 'runner-temp-mode';

/**
 * `$RUNNER_TEMP/cordon/`, reached through the open RUNNER_TEMP without following a link,
 * made 0700 when missing; refused unless it is a directory of this user's closed to others.
 */
function recordDir(dirFd: number, make: boolean): string {
  const path = `/proc/self/fd/${dirFd}/cordon`;
  if (make) mkdirSync(path, { mode: 0o700, recursive: true });
  const fd = openSync(path, DIR_FLAGS);
  try {
    const st = fstatSync(fd);
    if (st.uid !== process.geteuid?.() || st.mode & 0o077)
      throw new Error(
        `${RECORD}: $RUNNER_TEMP/cordon is not this user's alone (mode ${(st.mode & 0o7777).toString(8)})`,
      );
  } finally {
    closeSync(fd);
  }
  return path;
}

function writeRecord(dirFd: number, r: ModeRecord): void {
  const path = join(recordDir(dirFd, true), RECORD);
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;
  const fd = openSync(path, flags, 0o600);
  try {
    fchmodSync(fd, 0o600);
    writeSync(fd, `${JSON.stringify(r)}\n`);
  } finally {
    closeSync(fd);
  }
}

function dropRecord(dirFd: number): void {
  try {
    unlinkSync(join(recordDir(dirFd, false), RECORD));
  } catch {
    // None was written.
  }
}

function readRecord(dirFd: number): ModeRecord | undefined {
  let text: string;
  try {
    const fd = openSync(join(recordDir(dirFd, false), RECORD), constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      text = readFileSync(fd, 'utf8');
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
  try {
    const r = JSON.parse(text) as Partial<ModeRecord>;
    const n = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
    if (n(r.dev) && n(r.ino) && n(r.was) && n(r.set) && r.was <= 0o7777 && r.set <= 0o7777)
      return r as ModeRecord;
  } catch {
    // Not a record of ours: dropped below.
  }
  return { dev: -1, ino: -1, was: -1, set: -1 };
}

/**
 * Puts back RUNNER_TEMP's mode that a killed `run` step left closed, from its record: only
 * while the directory is still the one closed (same dev:ino) and still has the mode run set
 * (anything else is someone's later choice). Said in the log either way; the record is removed.
 * Returns the mode put back (octal), if any.
 */
export function recoverRunnerTemp(
  dir: string | undefined,
  say: Pick<Runner, 'info' | 'warning'>,
  who: string,
): string | undefined {
  if (!dir) return undefined;
  let fd: number;
  try {
    fd = openSync(dir, DIR_FLAGS);
  } catch {
    return undefined;
  }
  try {
    const r = readRecord(fd);
    if (!r) return undefined;
    dropRecord(fd);
    if (r.was < 0) {
      say.warning(
        `${who}: $RUNNER_TEMP/cordon/${RECORD} is not a record run wrote; removed, the mode left as it is`,
      );
      return undefined;
    }
    const st = fstatSync(fd);
    const now = st.mode & 0o7777;
    if (st.dev !== r.dev || st.ino !== r.ino) {
      say.info(
        `${who}: RUNNER_TEMP left closed by a killed run step is another directory now; its mode is left as it is`,
      );
      return undefined;
    }
    if (now !== r.set) {
      say.info(
        `${who}: RUNNER_TEMP left closed by a killed run step has had its mode changed since (${now.toString(8)}, run set ${r.set.toString(8)}); left as it is`,
      );
      return undefined;
    }
    fchmodSync(fd, r.was);
    say.info(
      `${who}: RUNNER_TEMP's mode put back to ${r.was.toString(8)} (a run step was ended before it could put it back)`,
    );
    return r.was.toString(8);
  } catch (e) {
    say.warning(`${who}: RUNNER_TEMP's recorded mode could not be put back: ${describeError(e)}`);
    return undefined;
  } finally {
    closeSync(fd);
  }
}
