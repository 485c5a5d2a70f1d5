/**
 * RUNNER_TEMP closed to other users while the agent's own user runs: the runner keeps there,
 * until the job ends, every step's file-command files (an earlier step's GITHUB_ENV holds the
 * secrets it exported, its GITHUB_OUTPUT and GITHUB_STATE what it handed on) and the scripts
 * of `run:` steps (with whatever their expressions put in them), all readable by anyone who
 * can reach the directory. The agent needs nothing there (its script and files are in its own
 * HOME), and cannot write there anyway; run is the directory's owner (or root) and takes the
 * bits for "other" away before the command starts and puts them back after it.
 */
import { closeSync, constants, fchmodSync, fstatSync, openSync, realpathSync } from 'node:fs';
import { relative, resolve, sep } from 'node:path';
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
    fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch (e) {
    return none(`RUNNER_TEMP could not be opened: ${describeError(e)}`);
  }
  let mode: number;
  try {
    mode = fstatSync(fd).mode & 0o7777;
    // Nothing open to others; or a directory every user shares (/tmp, sticky), not run's to close.
    if ((mode & 0o007) === 0 || mode & 0o1000) {
      closeSync(fd);
      return none(mode & 0o1000 ? 'RUNNER_TEMP is a directory every user shares (sticky)' : undefined);
    }
    fchmodSync(fd, mode & ~0o007);
  } catch (e) {
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
