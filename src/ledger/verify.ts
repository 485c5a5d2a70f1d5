/**
 * Checking the ledger: `run` against the lines it held in memory while the agent ran,
 * `start`'s post against its nonce and head, and the verdict the summary opens with.
 */
import { checkChain, diffLedger, hashLine, type LedgerLine } from './ledger.js';
import { dataOf, type LedgerLineRef, type LedgerTampered } from './events.js';

/** The verdict the summary opens with. */
export interface Verdict {
  status: 'intact' | 'altered' | 'unverified';
  /** Human-readable reasons (which lines changed, were removed or inserted). */
  details: string[];
  /** Lines written while the agent's command ran: never trusted as Cordon's own, shown apart. */
  duringRun?: { line: number; action?: string; type?: string; time?: string; chained: boolean }[];
  /**
   * `daemon-copy`: read from the egress daemon's root-owned copy, not the user-writable
   * file; `file-copy-gone`: the fence ran but its copy is gone, so read from the file.
   */
  source?: 'daemon-copy' | 'file-copy-gone';
}

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

/** Lines run writes around its command, never while it runs. */
const RUN_OWN = ['run.started', 'ledger.verified', 'ledger.tampered', 'run.finished', 'run.sealed'];

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

function ref(
  l: LedgerLine,
  prevHash: string | undefined,
  scrub: (text: string) => string = (t) => t,
): LedgerLineRef {
  const text = (v: unknown): string | undefined => (typeof v === 'string' ? scrub(v) : undefined);
  return {
    line: l.line,
    action: text(l.event?.action),
    type: text(l.event?.type),
    time: text(l.event?.time),
    chained: !!l.event && prevHash !== undefined && l.event.prev === prevHash,
  };
}

/**
 * Compares the ledger now with `held`, the hash of every line up to `run.started` as
 * `run` wrote it, and judges the lines after it (written while the command ran). The
 * `action`, `type` and `time` of those lines are the writer's own text: each goes through
 * `scrub` (run's secret registry) whole, before it is cut for the details, so that a secret
 * there neither keeps the verdict out of the ledger nor leaves its first characters in it.
 */
export function checkRunWindow(
  held: string[],
  lines: LedgerLine[],
  by = 'run',
  scrub: (text: string) => string = (t) => t,
): WindowCheck {
  const diff = diffLedger(held, lines);
  const details: string[] = [];
  for (const n of diff.changed) details.push(`line ${n} was changed`);
  for (const n of diff.removed) details.push(`line ${n} was removed`);
  for (const n of diff.inserted) details.push(`line ${n} was inserted before run.started`);
  const at = lines.findIndex((l) => l.hash === held[held.length - 1]);
  if (at < 0) details.push('the run.started line written before the command is gone or changed');
  const from = at >= 0 ? at + 1 : held.length;
  const duringRun = lines.slice(from).map((l, i) => ref(l, (lines[from + i - 1] ?? undefined)?.hash, scrub));
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
    startedHash: held[held.length - 1],
    duringRun: duringRun.slice(0, MAX_LISTED),
    changed: diff.changed,
    removed: diff.removed,
    inserted: [...new Set(inserted)].sort((a, b) => a - b).slice(0, MAX_LISTED),
    details,
  };
}

/** A check `run` wrote once its command had ended: the only line that closes a window. */
function isRunCheck(l: LedgerLine): boolean {
  return (
    (l.event?.type === 'ledger.verified' || l.event?.type === 'ledger.tampered') && l.event.action === 'run'
  );
}

/**
 * The `run.started` lines that open a window. The command can append a well-formed
 * `run.started` while it runs (with `user: runner`); run's own check, written once the
 * command is gone and so after every line the command wrote, names the hash of the
 * `run.started` it held. A `run.started` whose window would be closed by a check naming an
 * earlier one is the command's, inside that window. One without a check after it (a run
 * step killed before its check) still opens one. Walked from the end, each line once.
 */
function openingStarts(lines: LedgerLine[]): number[] {
  const prevCheck: number[] = [];
  let last = -1;
  lines.forEach((l, i) => {
    prevCheck.push(last);
    if (isRunCheck(l)) last = i;
  });
  prevCheck.push(last);
  const startAt = new Map<string, number>();
  lines.forEach((l, i) => {
    if (l.event?.type === 'run.started' && !startAt.has(l.hash)) startAt.set(l.hash, i);
  });
  const opening: number[] = [];
  let end = lines.length;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (lines[i].event?.type !== 'run.started') continue;
    const close = prevCheck[end];
    const named: unknown =
      close > i ? (lines[close].event?.data as { startedHash?: unknown }).startedHash : undefined;
    const at = typeof named === 'string' ? startAt.get(named) : undefined;
    if (at !== undefined && at < i) continue;
    opening.push(i);
    end = i;
  }
  return opening.reverse();
}

/**
 * The lines between each `run.started` that opens a window (see `openingStarts`) and the
 * last verification by `run` (`ledger.verified` or `ledger.tampered`) before the next one:
 * a line the agent forged to look like a verification does not close the window early.
 */
export function agentWindows(
  lines: LedgerLine[],
): { started: number; closedBy?: LedgerLine; lines: LedgerLine[] }[] {
  const opening = openingStarts(lines);
  return opening.map((at, k) => {
    const inside = lines.slice(at + 1, opening[k + 1] ?? lines.length);
    let close = -1;
    // Only run's own check closes the window; post steps verify their heads later.
    inside.forEach((l, j) => {
      if (isRunCheck(l)) close = j;
    });
    const started = lines[at].line;
    return close < 0
      ? { started, lines: inside }
      : { started, closedBy: inside[close], lines: inside.slice(0, close) };
  });
}

/**
 * Lines written while the agent ran (`during`, every one, not only the ones the verdict
 * lists) and those of them that are tampering (`untrusted`: not chained, or not an event
 * Cordon writes then), which are left out of the sections rendered as Cordon's.
 */
export function linesDuringRun(lines: LedgerLine[]): { during: Set<number>; untrusted: Set<number> } {
  const during = new Set<number>();
  const untrusted = new Set<number>();
  for (const w of agentWindows(lines))
    for (const l of w.lines) {
      during.add(l.line);
      const d = ref(l, lines[l.line - 2]?.hash);
      if (!d.chained || !d.type || !DURING_RUN_TYPES.includes(d.type)) untrusted.add(l.line);
    }
  return { during, untrusted };
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
    // run's check says its window held only the broker's lines, and run writes none of its
    // own there: a window it "verified" that holds run's lines was closed by someone else's
    // check (a later step's, T32), folding run's closing lines, or a later command, into it.
    const folded =
      w.closedBy?.event?.type === 'ledger.verified'
        ? w.lines.filter((l) => l.event?.action === 'run' && RUN_OWN.includes(l.event.type))
        : [];
    if (folded.length)
      details.push(
        `line ${w.closedBy?.line} claims to be run's check that the command started at line ${w.started} wrote nothing, but run's own ${clip(folded[0].event?.type)} (line ${folded[0].line}${folded.length > 1 ? ` and ${folded.length - 1} more` : ''}) comes before it: that check is not run's`,
      );
  }
  // A non-root run whose process went away before it removed its cgroup: the lines that
  // close its window (verification, run.finished) may be the agent's. Only the egress
  // post writes this, after the agent is gone.
  for (const l of lines) {
    if (l.event?.type !== 'egress.report' || l.event.action !== 'egress') continue;
    // Anyone can write a line in egress's name (the file and the daemon's socket as the
    // runner user): an entry of any shape, null included, must not stop the verdict.
    const cg = (l.event.data as { runCgroups?: unknown }).runCgroups;
    for (const c of Array.isArray(cg)
      ? (cg as ({ name?: unknown; end?: unknown; alive?: unknown } | null)[])
      : [])
      if (c?.end === 'orphaned')
        details.push(
          `run's process went away while its command ran (the egress daemon killed ${String(c.name)}, ${String(c.alive)} process(es) left): what the ledger says of that command is not Cordon's`,
        );
  }
  // Every tampering run recorded, wherever it stands.
  for (const l of lines) {
    const t: Partial<LedgerTampered> | undefined = dataOf(l.event, 'ledger.tampered');
    if (!l.event || !t) continue;
    const found = Array.isArray(t.details) ? t.details.map(String) : [];
    for (const d of found) details.push(`${String(t.by ?? l.event.action)} (line ${l.line}): ${d}`);
    if (!found.length) details.push(`tampering recorded at line ${l.line}`);
  }
  const status = details.length ? 'altered' : 'intact';
  return duringRun.length ? { status, details, duringRun } : { status, details };
}

/**
 * The daemon's copy in chain order. Steps send lines over separate connections, so two
 * appends close together can arrive swapped; each line names the hash of the one before
 * it, which gives the order back. Duplicates are dropped. The chain is walked from the
 * line that chains to the nonce (`rootPrev`, its hash) or else the first line, preferring
 * at a fork the line the file holds too (`inFile`, by hash); lines that
 * are not on that walk (a fork chained to an earlier line, a line that chains to nothing)
 * keep their arrival order at the end and are returned in `unplaced`: any process of the
 * runner user (a `user: runner` agent too) can send to the socket, so they are not Cordon's. Lines are numbered by their new place.
 */
export function orderByChain(
  lines: LedgerLine[],
  rootPrev?: string,
  inFile?: Set<string>,
): { lines: LedgerLine[]; unplaced: Set<number> } {
  const seen = new Set<string>();
  const unique = lines.filter((l) => (seen.has(l.hash) ? false : (seen.add(l.hash), true)));
  const next = new Map<string, LedgerLine[]>();
  for (const l of unique) {
    const prev = l.event?.prev;
    if (prev === undefined) continue;
    const list = next.get(prev) ?? [];
    list.push(l);
    next.set(prev, list);
  }
  const out: LedgerLine[] = [];
  const used = new Set<string>();
  // Where the chain forks (two lines naming the same one before them), the line the file
  // also holds wins: a line sent to the copy alone cannot push Cordon's own off the chain.
  const pick = (children: LedgerLine[] | undefined): LedgerLine | undefined => {
    const open = (children ?? []).filter((n) => !used.has(n.hash));
    return open.find((n) => inFile?.has(n.hash)) ?? open[0];
  };
  const root = (rootPrev !== undefined ? pick(next.get(rootPrev)) : undefined) ?? unique[0];
  for (let l: LedgerLine | undefined = root; l && !used.has(l.hash);) {
    used.add(l.hash);
    out.push(l);
    l = pick(next.get(l.hash));
  }
  const placed = out.length;
  for (const l of unique) if (!used.has(l.hash)) out.push(l);
  const numbered = out.map((l, i) => ({ ...l, line: i + 1 }));
  return {
    lines: numbered,
    unplaced: new Set(numbered.slice(placed).map((l) => l.line)),
  };
}

function describeRef(l: LedgerLine): string {
  return `${clip(l.event?.type ?? '(not an event)')}${l.event ? `, as ${clip(l.event.action)}` : ''}`;
}

/**
 * Compares the user-writable ledger with the egress daemon's root-owned copy: what the file
 * lost or had changed (on the copy's chain, not in the file), what reached the file
 * without going through a Cordon step (in the file, not in the copy), and what was sent to
 * the copy off its chain. Returns the copy's lines in chain order for the summary to be
 * rendered from, the lines not to render as Cordon's (`untrusted`), and one detail per
 * difference.
 */
export function compareWithCopy(
  fileLines: LedgerLine[],
  copyLines: LedgerLine[],
  opts: { nonce?: string } = {},
): { lines: LedgerLine[]; untrusted: Set<number>; details: string[] } {
  const inFile = new Set(fileLines.map((l) => l.hash));
  const { lines, unplaced } = orderByChain(copyLines, opts.nonce ? hashLine(opts.nonce) : undefined, inFile);
  const inCopy = new Set(lines.map((l) => l.hash));
  const details: string[] = [];
  const missing = lines.filter((l) => !inFile.has(l.hash) && !unplaced.has(l.line));
  const offChain = lines.filter((l) => unplaced.has(l.line));
  const extra = fileLines.filter((l) => !inCopy.has(l.hash));
  const listed = <T>(xs: T[]): T[] => xs.slice(0, 50);
  for (const l of listed(missing))
    details.push(
      `line ${l.line} of the daemon's copy (${describeRef(l)}) is not in the ledger file: it was changed or removed there`,
    );
  for (const l of listed(offChain))
    details.push(
      `line ${l.line} of the daemon's copy (${describeRef(l)}) does not fit its chain: sent by someone other than a Cordon step`,
    );
  for (const l of listed(extra))
    details.push(
      `line ${l.line} of the ledger file (${describeRef(l)}) never reached the daemon's copy: no Cordon step sent it while the daemon ran`,
    );
  const more = [missing, offChain, extra].reduce((n, xs) => n + Math.max(0, xs.length - 50), 0);
  if (more > 0) details.push(`${more} more difference(s) between the ledger file and the daemon's copy`);
  return { lines, untrusted: unplaced, details };
}
