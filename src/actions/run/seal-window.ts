/**
 * `run`'s part in sealing its command's window (see `ledger/seal.ts`): take the key before
 * the command starts, seal once its processes are gone, leave the next key for the next run.
 */
import type { RunStarted } from '../../ledger/events.js';
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
