/**
 * Writes a ledger line of any type and shape. `Ledger.append` only takes the events Cordon
 * writes; these tests exercise the chain, the lock, the copy and what the summary does with
 * lines it does not know, so they write others too.
 */
import type { EventTypes } from '../../src/ledger/events.js';
import type { Ledger } from '../../src/ledger/ledger.js';

export function appendAny(
  ledger: Ledger,
  type: string,
  data: object,
  nonce?: string,
): ReturnType<Ledger['append']> {
  return ledger.append(type as keyof EventTypes, data as never, nonce);
}

export function appendAnyWithSnapshot(
  ledger: Ledger,
  type: string,
  data: object,
  nonce?: string,
): ReturnType<Ledger['appendWithSnapshot']> {
  return ledger.appendWithSnapshot(type as keyof EventTypes, data as never, nonce);
}
