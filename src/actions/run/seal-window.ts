/**
 * `run`'s part in sealing its command's window (see `ledger/seal.ts`): take the key before
 * the command starts, seal once its processes are gone, leave the next key for the next run.
 */
import type { RunFinished, RunStarted } from '../../ledger/events.js';
import { checkRunWindow } from '../../ledger/verify.js';
import type { Ledger } from '../../ledger/ledger.js';
import {
  newSealKey,
  sealData,
  sealKeyPath,
  takeSealKey,
  writeSealKey,
  type SealKey,
} from '../../ledger/seal.js';
import type { Runner } from '../../platform/runner.js';

/**
 * Takes the window key off the disk and writes `run.started`; returns what run holds in
 * memory. When `run.started` cannot be written no command runs: the key goes back as it was.
 */
export function openWindow(
  ledger: Ledger,
  started: RunStarted,
  runner: Runner,
): { held: string[]; sealKey: SealKey | undefined } {
  const path = sealKeyPath(ledger.path);
  const sealKey = takeSealKey(path);
  if (!sealKey)
    runner.info(
      `run: no key to seal this command's record with at ${path} (start did not run, or an earlier run step was killed): start's post will not trust it`,
    );
  try {
    return { held: ledger.appendWithSnapshot('run.started', started).hashes, sealKey };
  } catch (e) {
    if (sealKey) writeSealKey(path, sealKey);
    throw e;
  }
}

/** Seals the window (the command's processes are gone) and leaves the next window's key. */
export function sealWindow(ledger: Ledger, sealKey: SealKey | undefined): void {
  if (!sealKey) return;
  const next = newSealKey(sealKey.window + 1);
  ledger.appendBound('run.sealed', (prev) => sealData(sealKey, prev, next.publicKey));
  writeSealKey(sealKeyPath(ledger.path), next.key);
}

/**
 * Once the command's processes are gone: compares the ledger with the hashes run held in
 * memory and records the verdict (`ledger.verified` or `ledger.tampered`).
 */
export function verifyWindow(
  ledger: Ledger,
  held: string[],
  scrub?: (text: string) => string,
): ReturnType<typeof checkRunWindow> {
  const window = checkRunWindow(held, ledger.read(), 'run', scrub);
  const { ok, ...verdict } = window;
  if (ok)
    ledger.append('ledger.verified', {
      by: verdict.by,
      upTo: verdict.upTo,
      startedHash: verdict.startedHash,
      duringRun: verdict.duringRun,
    });
  else ledger.append('ledger.tampered', verdict);
  return window;
}

/**
 * The command was never started (its cgroup could not be made): the window is closed as at
 * a normal end, with a `run.finished` that says so and why, so the record shows a step that
 * failed before its command, not a run killed while it ran.
 */
export function closeUnstarted(
  ledger: Ledger,
  window: { held: string[]; sealKey: SealKey | undefined },
  finished: Pick<RunFinished, 'notStarted' | 'containment' | 'containmentReason'>,
): void {
  const verified = verifyWindow(ledger, window.held);
  ledger.append('run.finished', {
    exitCode: null,
    durationMs: 0,
    bytesScrubbed: 0,
    leaks: [],
    ledgerIntact: verified.ok,
    ...finished,
  });
  sealWindow(ledger, window.sealKey);
}
