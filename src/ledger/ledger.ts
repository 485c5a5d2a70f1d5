/**
 * The run ledger: append-only JSON Lines under `$RUNNER_TEMP/cordon/`, one event a line,
 * each line chained to the one before by SHA-256 so that edits show. Appends from several
 * processes are serialised by a lock directory (`lock.ts`); a line is written with one `write` call.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CordonError } from '../platform/errors.js';
import { ledgerCopyPathsFor, sendLedgerLine } from './copy.js';
import {
  appendLedger,
  assertRegularLedger,
  endsWithNewline,
  readLedgerText,
  readTail,
  withOpenFile,
} from './ledger-file.js';

export { assertRegularLedger, lastLine, readLedgerText } from './ledger-file.js';
import type { EventTypes } from './events.js';
import { lockForced, withLock } from './lock.js';
import { secrets as defaultRegistry, type SecretRegistry } from '../platform/mask.js';
import type { Env } from '../platform/runner.js';

export const LEDGER_VERSION = 1;

export interface LedgerEvent<T = Record<string, unknown>> {
  v: number;
  time: string;
  action: string;
  type: string;
  data: T;
  /** SHA-256 (hex) of the previous line, or of the chain's nonce for the first line. */
  prev: string;
}

export interface LedgerLine {
  /** 1-based line number in the file. */
  line: number;
  raw: string;
  hash: string;
  event?: LedgerEvent;
  /** Set when the line is not a valid event. */
  error?: string;
}

export interface LedgerOptions {
  action: string;
  registry?: SecretRegistry;
  clock?: () => Date;
  /**
   * The egress daemon's socket each appended line is also sent to, when it exists; by
   * default the one for the job this ledger belongs to. `false` sends nothing.
   */
  copySocket?: string | false;
}

/** The hash of the last line this process appended (to any ledger): the step's head. */
let lastWritten: { path: string; hash: string } | undefined;

/** The last line this process appended, by ledger path and hash (for post steps to verify). */
export function ownHead(): { path: string; hash: string } | undefined {
  return lastWritten;
}

export function ledgerDir(env: Env): string {
  return join(env.RUNNER_TEMP || env.TMPDIR || '/tmp', 'cordon');
}

export function ledgerPath(env: Env): string {
  return join(ledgerDir(env), 'ledger.jsonl');
}

export function hashLine(raw: string): string {
  return createHash('sha256').update(raw, 'utf8').digest('hex');
}

export class Ledger {
  readonly path: string;
  private readonly registry: SecretRegistry;
  private readonly clock: () => Date;
  readonly action: string;
  private readonly copySocket: string | undefined;

  constructor(path: string, opts: LedgerOptions) {
    this.path = path;
    this.action = opts.action;
    this.registry = opts.registry ?? defaultRegistry;
    this.clock = opts.clock ?? (() => new Date());
    this.copySocket =
      opts.copySocket === false ? undefined : (opts.copySocket ?? ledgerCopyPathsFor(path).socket);
  }

  /**
   * Sends lines already in the file to the daemon's copy, in order: what was written before
   * the daemon started. Returns how many were sent.
   */
  seedCopy(): number {
    const socket = this.copySocket;
    if (!socket || !this.exists()) return 0;
    // Under the lock: no append can land between what is read here and what is sent.
    return withLock(this.path, (forced) => {
      let n = 0;
      const lines = this.rawLines();
      for (const raw of lines) if (sendLedgerLine(socket, raw)) n++;
      if (forced !== undefined && lines.length) {
        const notice = lockForced(this.action, 'send the ledger to its copy', forced, this.path);
        this.put('ledger.tampered', notice, hashLine(lines[lines.length - 1]), !endsWithNewline(this.path));
        n++;
      }
      return n;
    });
  }

  static forEnv(env: Env, opts: LedgerOptions): Ledger {
    return new Ledger(ledgerPath(env), opts);
  }

  exists(): boolean {
    return existsSync(this.path);
  }

  /** Refuses a ledger path that is not a regular file (see `assertRegularLedger`). */
  private regular(): void {
    assertRegularLedger(this.path);
  }

  /**
   * Creates the ledger if absent and returns the nonce its chain starts from; `start`
   * keeps it in saved state, out of reach of later steps. An existing ledger is kept.
   */
  open(): string | undefined {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    if (this.exists()) return undefined;
    return randomBytes(32).toString('hex');
  }

  /** Appends one event and returns the hash of the line written (the new head). */
  append<K extends keyof EventTypes>(
    type: K,
    data: EventTypes[K],
    nonce?: string,
  ): { hash: string; event: LedgerEvent } {
    const { hash, event } = this.write(type, data, nonce, false);
    return { hash, event };
  }

  /**
   * Appends one event whose data depends on the line it chains to (`prev`, read under the
   * lock): a signature over it (`run.sealed`).
   */
  appendBound<K extends keyof EventTypes>(type: K, make: (prev: string) => EventTypes[K]): { hash: string } {
    return { hash: this.write(type, make, undefined, false).hash };
  }

  /**
   * Appends one event and returns, with it, the hash of every line up to and including it,
   * read under the same lock: what a step holds in memory to tell later which lines were
   * changed, removed or inserted (see `diffLedger`).
   */
  appendWithSnapshot<K extends keyof EventTypes>(
    type: K,
    data: EventTypes[K],
    nonce?: string,
  ): { hash: string; event: LedgerEvent; hashes: string[] } {
    const r = this.write(type, data, nonce, true);
    return { hash: r.hash, event: r.event, hashes: r.hashes ?? [] };
  }

  private write(
    type: string,
    data: object | ((prev: string) => object),
    nonce: string | undefined,
    snapshot: boolean,
  ): { hash: string; event: LedgerEvent; hashes?: string[] } {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    this.regular();
    return withLock(this.path, (forced) => {
      const lines = snapshot ? this.rawLines() : undefined;
      const tail = lines ? undefined : readTail(this.path);
      const last = lines ? lines[lines.length - 1] : tail?.line;
      // A line someone wrote without its newline must not swallow ours.
      const glue = last !== undefined && !(tail ? tail.newline : endsWithNewline(this.path));
      const hashes = lines?.map(hashLine);
      let prev = last !== undefined ? hashLine(last) : hashLine(nonce ?? randomBytes(32).toString('hex'));
      if (forced !== undefined) {
        const notice = this.put(
          'ledger.tampered',
          lockForced(this.action, `write ${type}`, forced, this.path),
          prev,
          glue,
        );
        hashes?.push(notice.hash);
        prev = notice.hash;
      }
      const { hash, event } = this.put(type, data, prev, glue && forced === undefined);
      return { hash, event, hashes: hashes ? [...hashes, hash] : undefined };
    });
  }

  /** Writes one line chained to `prev` (the lock held) and sends it to the daemon's copy. */
  private put(
    type: string,
    data: object | ((prev: string) => object),
    prev: string,
    glue: boolean,
  ): { hash: string; event: LedgerEvent } {
    const event: LedgerEvent = {
      v: LEDGER_VERSION,
      time: this.clock().toISOString(),
      action: this.action,
      type,
      data: (typeof data === 'function' ? data(prev) : data) as Record<string, unknown>,
      prev,
    };
    const raw = JSON.stringify(event);
    const leaked = this.registry.findIn(raw);
    if (leaked) {
      throw new CordonError({
        what: `ledger: refused to record event ${type} from ${this.action}`,
        why: `it contains the value of ${leaked}, and the ledger never holds secret values`,
        fix: 'record the secret by name, never by value (this is a bug in Cordon: please report it)',
      });
    }
    appendLedger(this.path, (glue ? '\n' : '') + raw + '\n');
    const hash = hashLine(raw);
    lastWritten = { path: this.path, hash };
    // Lines can still reach the daemon out of order (a connection still opening, another
    // process's connection); the summary puts them back in chain order.
    if (this.copySocket) sendLedgerLine(this.copySocket, raw);
    return { hash, event };
  }

  private rawLines(): string[] {
    const text = readLedgerText(this.path);
    return text === undefined ? [] : text.split('\n').filter((l) => l !== '');
  }

  /** Every line in file order, parsed; malformed lines are kept with an error. */
  read(): LedgerLine[] {
    return this.rawLines().map((raw, i) => parseLine(raw, i + 1));
  }

  events(): LedgerEvent[] {
    return this.read().flatMap((l) => (l.event ? [l.event] : []));
  }

  head(): string | undefined {
    const lines = this.rawLines();
    return lines.length ? hashLine(lines[lines.length - 1]) : undefined;
  }
}

/** The `prev` of the file's first line (the hash its chain starts from), read from its start. */
export function firstPrev(path: string): string | undefined {
  return withOpenFile(path, (fd) => {
    const buf = Buffer.alloc(MAX_FIRST_LINE);
    const text = buf.subarray(0, readSync(fd, buf, 0, buf.length, 0)).toString('utf8');
    const nl = text.indexOf('\n');
    return parseLine(nl >= 0 ? text.slice(0, nl) : text, 1).event?.prev;
  });
}

const MAX_FIRST_LINE = 256 * 1024;

export function parseLine(raw: string, line: number): LedgerLine {
  const hash = hashLine(raw);
  try {
    const e = JSON.parse(raw) as LedgerEvent;
    if (typeof e !== 'object' || e === null || typeof e.type !== 'string' || typeof e.action !== 'string') {
      return { line, raw, hash, error: 'not a ledger event' };
    }
    if (typeof e.data !== 'object' || e.data === null) e.data = {};
    return { line, raw, hash, event: e };
  } catch {
    return { line, raw, hash, error: 'not valid JSON' };
  }
}

export function parseLedgerText(text: string): LedgerLine[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((raw, i) => parseLine(raw, i + 1));
}

export interface ChainCheck {
  ok: boolean;
  /** Lines whose `prev` does not match the line before them. */
  broken: number[];
  /** Whether a line hashing to `expectHead` exists. */
  headFound?: boolean;
}

/** Checks that each line chains to the one before, and optionally that `head` is still present. */
export function checkChain(lines: LedgerLine[], opts: { nonce?: string; head?: string } = {}): ChainCheck {
  const broken: number[] = [];
  lines.forEach((l, i) => {
    const expected = i === 0 ? (opts.nonce ? hashLine(opts.nonce) : undefined) : lines[i - 1].hash;
    if (!l.event || (expected !== undefined && l.event.prev !== expected)) broken.push(l.line);
  });
  const headFound = opts.head === undefined ? undefined : lines.some((l) => l.hash === opts.head);
  return { ok: broken.length === 0 && headFound !== false, broken, headFound };
}

/** How the lines a step held in memory compare with the file now. */
export interface LedgerDiff {
  /** Line numbers (in the file now) whose content differs from what was there. */
  changed: number[];
  /** Line numbers (as they were) that are gone. */
  removed: number[];
  /** Line numbers (in the file now) that were not there before. */
  inserted: number[];
}

/**
 * Compares `before` (the hash of each line, in order, as a step saw them) with the first
 * lines of the file now. `after` may run past the end of `before`: lines beyond the last
 * matched one are not part of the comparison unless the last line of `before` is gone.
 * A removed line next to an inserted one at the same place counts as changed.
 */
export function diffLedger(before: string[], after: LedgerLine[]): LedgerDiff {
  const diff: LedgerDiff = { changed: [], removed: [], inserted: [] };
  if (before.length === 0) return diff;
  // Compare only up to where `before`'s last line is now (or everything when it is gone).
  const lastAt = after.findIndex((l) => l.hash === before[before.length - 1]);
  const upTo = lastAt >= 0 ? lastAt + 1 : after.length;
  const a = before;
  const b = after.slice(0, upTo).map((l) => l.hash);
  let pre = 0;
  while (pre < a.length && pre < b.length && a[pre] === b[pre]) pre++;
  let suf = 0;
  while (suf < a.length - pre && suf < b.length - pre && a[a.length - 1 - suf] === b[b.length - 1 - suf])
    suf++;
  const am = a.slice(pre, a.length - suf);
  const bm = b.slice(pre, b.length - suf);
  if (am.length === 0 && bm.length === 0) return diff;
  // Longest common subsequence of the middles (bounded: past that, all of it differs).
  const keepA = new Set<number>();
  const keepB = new Set<number>();
  if (am.length * bm.length <= 4_000_000) {
    const w = bm.length + 1;
    const dp = new Uint32Array((am.length + 1) * w);
    for (let i = am.length - 1; i >= 0; i--)
      for (let j = bm.length - 1; j >= 0; j--)
        dp[i * w + j] =
          am[i] === bm[j] ? dp[(i + 1) * w + j + 1] + 1 : Math.max(dp[(i + 1) * w + j], dp[i * w + j + 1]);
    for (let i = 0, j = 0; i < am.length && j < bm.length;) {
      if (am[i] === bm[j]) {
        keepA.add(i++);
        keepB.add(j++);
      } else if (dp[(i + 1) * w + j] >= dp[i * w + j + 1]) i++;
      else j++;
    }
  }
  // Walk both, pairing a removed line with an inserted one in the same gap as changed.
  let i = 0;
  let j = 0;
  while (i < am.length || j < bm.length) {
    const gapA: number[] = [];
    const gapB: number[] = [];
    while (i < am.length && !keepA.has(i)) gapA.push(i++);
    while (j < bm.length && !keepB.has(j)) gapB.push(j++);
    const pairs = Math.min(gapA.length, gapB.length);
    for (let k = 0; k < gapB.length; k++) (k < pairs ? diff.changed : diff.inserted).push(pre + gapB[k] + 1);
    for (let k = pairs; k < gapA.length; k++) diff.removed.push(pre + gapA[k] + 1);
    if (i < am.length && j < bm.length && keepA.has(i) && keepB.has(j)) {
      i++;
      j++;
    } else if (gapA.length === 0 && gapB.length === 0) break;
  }
  return diff;
}
