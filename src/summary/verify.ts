/** Turns a chain check into the summary's verdict. */
import { checkChain, type LedgerLine } from '../core/ledger.js';
import type { Verdict } from './render.js';

export function verdictFor(lines: LedgerLine[], opts: { nonce?: string; head?: string } = {}): Verdict {
  if (lines.length === 0) {
    return opts.head
      ? { status: 'altered', details: ['the ledger is empty or missing, but Cordon steps wrote to it'] }
      : { status: 'unverified', details: ['the ledger is empty or missing'] };
  }
  const check = checkChain(lines, opts);
  if (check.ok) return { status: 'intact', details: [] };
  const details = check.broken.map(
    (n) =>
      `line ${n} does not chain to the line before it (changed, inserted, or a line before it was removed)`,
  );
  if (check.headFound === false) details.push('the line this step wrote is no longer in the ledger');
  return { status: 'altered', details };
}
