/**
 * Checking the ledger: `run` against the lines it held in memory while the agent ran,
 * `start`'s post against its nonce and head, and the verdict the summary opens with.
 */
import { checkChain, diffLedger, type LedgerLine } from '../core/ledger.js';
import type { LedgerLineRef, LedgerTampered } from '../core/events.js';
import type { Verdict } from './render.js';

/**
 * Events Cordon itself may write while the agent's command runs (the credential broker,
 * a separate process): even these are only shown apart, since anyone who can hash can
 * write a line that chains.
 */
export const DURING_RUN_TYPES = [
  'broker.started',
  'credentials.refreshed',
  'token.refreshed',
  'broker.stopped',
];

/** Lines listed one by one in a ledger event (the rest are counted in the details). */
const MAX_LISTED = 500;

function clip(v: string | undefined): string {
  if (v === undefined) return '?';
  return v.length > 60 ? `${v.slice(0, 60)}...` : v;
}

/** Consecutive numbers as [first, last] ranges. */
export function ranges(ns: number[]): [number, number][] {
  const out: [number, number][] = [];
  for (const n of ns) {
    const last = out[out.length - 1];
    if (last && n === last[1] + 1) last[1] = n;
    else out.push([n, n]);
  }
  return out;
}

export interface WindowCheck extends LedgerTampered {
  ok: boolean;
}

function ref(l: LedgerLine, prevHash: string | undefined): LedgerLineRef {
  return {
    line: l.line,
    action: l.event?.action,
    type: l.event?.type,
    time: l.event?.time,
    chained: !!l.event && prevHash !== undefined && l.event.prev === prevHash,
  };
}

/**
 * Compares the ledger now with `held`, the hash of every line up to `run.started` as
 * `run` wrote it, and judges the lines after it (written while the command ran).
 */
export function checkRunWindow(held: string[], lines: LedgerLine[], by = 'run'): WindowCheck {
  const diff = diffLedger(held, lines);
  const details: string[] = [];
  for (const n of diff.changed) details.push(`line ${n} was changed`);
  for (const n of diff.removed) details.push(`line ${n} was removed`);
  for (const n of diff.inserted) details.push(`line ${n} was inserted before run.started`);
  const at = lines.findIndex((l) => l.hash === held[held.length - 1]);
  if (at < 0) details.push('the run.started line written before the command is gone or changed');
  const from = at >= 0 ? at + 1 : held.length;
  const duringRun = lines.slice(from).map((l, i) => ref(l, (lines[from + i - 1] ?? undefined)?.hash));
  const inserted = [...diff.inserted];
  const unchained: number[] = [];
  for (const d of duringRun) {
    if (!d.chained) {
      inserted.push(d.line);
      unchained.push(d.line);
    } else if (!d.type || !DURING_RUN_TYPES.includes(d.type)) {
      inserted.push(d.line);
      details.push(
        `line ${d.line} (${clip(d.type)}, as ${clip(d.action)}) was written while the agent ran, and Cordon writes no such event then`,
      );
    }
  }
  for (const [a, b] of ranges(unchained))
    details.push(
      a === b
        ? `line ${a} was written while the agent ran and does not chain to the line before it`
        : `lines ${a}-${b} were written while the agent ran and do not chain to the lines before them`,
    );
  return {
    ok: details.length === 0,
    by,
    upTo: at >= 0 ? at + 1 : held.length,
    duringRun: duringRun.slice(0, MAX_LISTED),
    changed: diff.changed,
    removed: diff.removed,
    inserted: [...new Set(inserted)].sort((a, b) => a - b).slice(0, MAX_LISTED),
    details,
  };
}

/**
 * The lines between each `run.started` and the last verification (`ledger.verified` or
 * `ledger.tampered`) before the next `run.started`: a line the agent forged to look like a
 * verification does not close the window early.
 */
export function agentWindows(
  lines: LedgerLine[],
): { started: number; closedBy?: LedgerLine; lines: LedgerLine[] }[] {
  const starts = lines.filter((l) => l.event?.type === 'run.started').map((l) => l.line);
  return starts.map((started, i) => {
    const next = starts[i + 1] ?? lines.length + 1;
    const inside = lines.filter((l) => l.line > started && l.line < next);
    let close = -1;
    inside.forEach((l, k) => {
      if (l.event?.type === 'ledger.verified' || l.event?.type === 'ledger.tampered') close = k;
    });
    return close < 0
      ? { started, lines: inside }
      : { started, closedBy: inside[close], lines: inside.slice(0, close) };
  });
}

/**
 * Lines written while the agent ran that are tampering (not chained, or not an event Cordon
 * writes then): shown apart in the verdict, left out of the sections rendered as Cordon's.
 */
export function untrustedLines(v: Verdict): Set<number> {
  return new Set(
    (v.duringRun ?? [])
      .filter((d) => !d.chained || !d.type || !DURING_RUN_TYPES.includes(d.type))
      .map((d) => d.line),
  );
}

/** The summary's verdict: the chain from the nonce, start's own line, and every agent window. */
export function verdictFor(lines: LedgerLine[], opts: { nonce?: string; head?: string } = {}): Verdict {
  if (lines.length === 0) {
    return opts.head
      ? { status: 'altered', details: ['the ledger is empty or missing, but Cordon steps wrote to it'] }
      : { status: 'unverified', details: ['the ledger is empty or missing'] };
  }
  const check = checkChain(lines, opts);
  const details = ranges(check.broken).map(([a, b]) =>
    a === b
      ? `line ${a} does not chain to the line before it (changed, inserted, or a line before it was removed)`
      : `lines ${a}-${b} do not chain to the lines before them (changed, inserted, or lines before them removed)`,
  );
  if (check.headFound === false) details.push('the line this step wrote is no longer in the ledger');
  const duringRun: LedgerLineRef[] = [];
  for (const w of agentWindows(lines)) {
    for (const l of w.lines.slice(0, MAX_LISTED)) duringRun.push(ref(l, lines[l.line - 2]?.hash));
    if (w.lines.length > MAX_LISTED)
      details.push(
        `${w.lines.length} lines were written while the agent ran; the first ${MAX_LISTED} are listed`,
      );
    if (!w.closedBy)
      details.push(
        `the command started at line ${w.started} has no verification after it: the run step was killed, or it is still running`,
      );
  }
  // Every tampering run recorded, wherever it stands.
  for (const l of lines) {
    if (l.event?.type !== 'ledger.tampered') continue;
    const t = l.event.data as unknown as Partial<LedgerTampered>;
    const found = Array.isArray(t.details) ? t.details.map(String) : [];
    for (const d of found) details.push(`${String(t.by ?? l.event.action)} (line ${l.line}): ${d}`);
    if (!found.length) details.push(`tampering recorded at line ${l.line}`);
  }
  const status = details.length ? 'altered' : 'intact';
  return duringRun.length ? { status, details, duringRun } : { status, details };
}
