/** A post step's check of the ledger line its main wrote (the head kept in saved state). */
import type { LedgerTampered } from './events.js';
import { checkChain, type LedgerLine } from './ledger.js';

export interface HeadCheck extends LedgerTampered {
  ok: boolean;
}

function span(ns: number[]): string {
  return ns.length === 1
    ? `line ${ns[0]}`
    : `lines ${ns.slice(0, 20).join(', ')}${ns.length > 20 ? ', ...' : ''}`;
}

/**
 * Whether the line hashing to `head` is still in the ledger, every line chains to the
 * one before it, and line 1 still chains to what it did when the step wrote (`firstPrev`). Lines after the head are other steps' (or the agent's): the chain shows
 * whether anything was edited, not who extended it.
 */
export function checkOwnHead(lines: LedgerLine[], head: string, by: string, firstPrev?: string): HeadCheck {
  const chain = checkChain(lines, { head });
  const at = lines.findIndex((l) => l.hash === head);
  const details: string[] = [];
  if (firstPrev !== undefined && lines.length && lines[0].event?.prev !== firstPrev)
    details.push(
      'line 1 is not the line the ledger started with: lines before it were removed or it was changed',
    );
  if (at < 0)
    details.push(
      `the last line ${by.replace(/ post$/, '')} wrote is no longer in the ledger (changed or removed)`,
    );
  if (chain.broken.length)
    details.push(
      `${span(chain.broken)} ${chain.broken.length === 1 ? 'does' : 'do'} not chain to the line before (changed, inserted, or a line before removed)`,
    );
  return {
    ok: details.length === 0,
    by,
    upTo: at >= 0 ? at + 1 : 0,
    duringRun: [],
    changed: [],
    removed: [],
    inserted: chain.broken.slice(0, 500),
    details,
  };
}
