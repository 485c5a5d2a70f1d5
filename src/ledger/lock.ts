/**
 * The ledger's lock: a directory beside it, made by whoever appends. Its holder is not
 * known from the lock itself (anyone who can write the folder can make one), so a lock held
 * past a bound is taken over and the taking over is recorded as tampering.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, renameSync, rmSync, rmdirSync } from 'node:fs';
import { basename } from 'node:path';
import type { LedgerTampered } from './events.js';

const LOCK_WAIT_MS = 5000;
/** Once this process had to force a lock, someone is planting them: the next is forced sooner. */
const LOCK_WAIT_AFTER_FORCE_MS = 500;
let forcedBefore = false;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

/**
 * Runs `fn` holding the ledger's lock directory. Cordon holds it for milliseconds at
 * most; anyone who can write the folder (the runner user: a `user: runner` agent, a
 * later step) can also plant one, and give it any mtime or contents, so nothing about it is
 * evidence of who holds it. A lock still there after the bound is taken over, and `fn` is
 * told so (`forced`, how long it waited) to record it as tampering: a planted lock never
 * silences the record nor stops a post from judging it. If it is planted again at once, the
 * line is written without it (each line is one `write`; a fork of the chain shows).
 */
export function withLock<T>(path: string, fn: (forced: number | undefined) => T): T {
  const lock = `${path}.lock`;
  const wait = forcedBefore ? LOCK_WAIT_AFTER_FORCE_MS : LOCK_WAIT_MS;
  const startedAt = Date.now();
  let held = false;
  let forced: number | undefined;
  for (let attempt = 0; ; attempt++) {
    try {
      mkdirSync(lock, { mode: 0o700 });
      held = true;
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      if (Date.now() - startedAt > wait) {
        forced = Date.now() - startedAt;
        forcedBefore = true;
        clearLock(lock);
        try {
          mkdirSync(lock, { mode: 0o700 });
          held = true;
        } catch {
          // Planted again between the two calls: write without it.
        }
        break;
      }
      Atomics.wait(sleeper, 0, 0, Math.min(20, 1 + attempt));
    }
  }
  try {
    return fn(forced);
  } finally {
    if (held) clearLock(lock);
  }
}

/**
 * Removes a lock directory, also one someone filled while it stood: what cannot be removed
 * (a folder made unwritable inside it) is moved aside, so the name is free again.
 */
function clearLock(lock: string): void {
  try {
    rmdirSync(lock);
    return;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
  }
  const aside = `${lock}.forced-${randomBytes(6).toString('hex')}`;
  try {
    renameSync(lock, aside);
  } catch {
    return; // Gone already, or not ours to move: the next mkdir says which.
  }
  try {
    rmSync(aside, { recursive: true, force: true });
  } catch {
    // Left inside the job's temporary folder, which the runner removes.
  }
}

/** The line a step writes, before its own, when it had to take the lock over. */
export function lockForced(by: string, doing: string, waitedMs: number, path: string): LedgerTampered {
  return {
    by,
    upTo: 0,
    duringRun: [],
    changed: [],
    removed: [],
    inserted: [],
    details: [
      `${basename(path)}.lock was held for over ${waitedMs} ms when ${by} came to ${doing}; Cordon holds it for milliseconds, so someone planted it (or a step died holding it) to stop the record: it was taken over`,
    ],
  };
}
