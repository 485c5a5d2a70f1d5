/**
 * The run ledger: append-only JSON Lines under `$RUNNER_TEMP/cordon/`, one event a line,
 * each line chained to the one before by SHA-256 so that edits show. Appends from several
 * processes are serialised by a lock directory; a line is written with one `write` call.
 */
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CordonError } from './errors.js';
import { secrets as defaultRegistry, type SecretRegistry } from './mask.js';
import type { Env } from './runner.js';

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

const LOCK_WAIT_MS = 5000;
const LOCK_STALE_MS = 10000;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

function withLock<T>(path: string, fn: () => T): T {
  const lock = `${path}.lock`;
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (let attempt = 0; ; attempt++) {
    try {
      mkdirSync(lock);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      try {
        if (Date.now() - statSync(lock).mtimeMs > LOCK_STALE_MS) rmdirSync(lock);
      } catch {
        // The holder released it between our two calls.
      }
      if (Date.now() > deadline) {
        throw new CordonError({
          what: `ledger: could not lock ${path}`,
          why: `another process held ${lock} for over ${LOCK_WAIT_MS} ms`,
          fix: 'remove the stale lock directory if no Cordon step is running',
        });
      }
      Atomics.wait(sleeper, 0, 0, Math.min(20, 1 + attempt));
    }
  }
  try {
    return fn();
  } finally {
    rmdirSync(lock);
  }
}

export class Ledger {
  readonly path: string;
  private readonly registry: SecretRegistry;
  private readonly clock: () => Date;
  readonly action: string;

  constructor(path: string, opts: LedgerOptions) {
    this.path = path;
    this.action = opts.action;
    this.registry = opts.registry ?? defaultRegistry;
    this.clock = opts.clock ?? (() => new Date());
  }

  static forEnv(env: Env, opts: LedgerOptions): Ledger {
    return new Ledger(ledgerPath(env), opts);
  }

  exists(): boolean {
    return existsSync(this.path);
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
  append(type: string, data: Record<string, unknown>, nonce?: string): { hash: string; event: LedgerEvent } {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    return withLock(this.path, () => {
      const lines = this.rawLines();
      const prev = lines.length
        ? hashLine(lines[lines.length - 1])
        : hashLine(nonce ?? randomBytes(32).toString('hex'));
      const event: LedgerEvent = {
        v: LEDGER_VERSION,
        time: this.clock().toISOString(),
        action: this.action,
        type,
        data,
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
      appendFileSync(this.path, raw + '\n', { encoding: 'utf8', mode: 0o600 });
      return { hash: hashLine(raw), event };
    });
  }

  private rawLines(): string[] {
    if (!this.exists()) return [];
    const text = readFileSync(this.path, 'utf8');
    return text.split('\n').filter((l) => l !== '');
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
