/**
 * The proxy's answer path, warmed before the daemon says READY (issue 20). A job's first
 * lookups are the daemon's first: cold, V8 compiles Node's datagram path and the proxy's
 * checks, cache and set bookkeeping on its background threads while those lookups wait
 * for the same two cores, and the first queries' p99 was 3-4x the steady one. So setup
 * ends by sending a throwaway proxy a few thousand queries on loopback: the same classes
 * built by the same code as the daemon's own proxies (so the same compiled functions), an
 * upstream inside this process, its sets fed to a shell that writes nothing. Nothing of
 * it reaches the kernel's sets, the report, the ledger, the root helper or the web gate's
 * answered names. Bounded in queries and in time; a warm-up that does not finish is
 * logged by the caller and setup goes on (it only costs the first lookups their speed).
 */
import dgram from 'node:dgram';
import { parseDomain, type DomainPattern } from './policy.js';
import type { DnsProxy } from './proxy.js';
import type { SetShell } from './nftshell.js';

/** The names the warm proxy allows; the warm-up asks them and names outside them. */
export const WARM_DOMAINS: DomainPattern[] = [parseDomain('*.warm.cordon.invalid')];
/** Queries a warm-up sends at most, in two rounds, and the time it may take at most. */
export const WARM_QUERIES = 4000;
export const WARM_BUDGET_MS = 600;
/** The pause between the rounds, for the compiles the first round started to finish. */
const SETTLE_MS = 40;
/** A query not answered within this is given up (a refusal over budget is not answered). */
const QUERY_MS = 50;
/** Queries on their way at once: a few, as a busy job's resolvers have. */
const WINDOW = 8;

/** A shell that takes every set update and writes nothing: the warm proxy's sets. */
export const NO_SETS: SetShell = { run: () => Promise.resolve('') };

export interface WarmResult {
  /** Queries answered, of those sent; false `finished` when the time ran out first. */
  answered: number;
  sent: number;
  ms: number;
  finished: boolean;
}

const TYPE_A = 1;
const TYPE_AAAA = 28;

/**
 * Bytes handed out once each from blocks made ahead, for the queries and answers a warm-up
 * writes in place: one allocation a block, not a few a message. A piece is never handed out
 * again: dgram's `send` may read a buffer after it returns (an unconnected socket looks its
 * address up on the next tick; a send the kernel would block waits in libuv's queue), so a
 * buffer written again for the next message could change what an earlier send carries.
 */
export class Slab {
  private block: Buffer;
  private used = 0;

  constructor(private readonly blockBytes = 64 * 1024) {
    this.block = Buffer.allocUnsafe(blockBytes);
  }

  /** `n` bytes no other call was given; the caller writes every one of them. */
  take(n: number): Buffer {
    if (this.used + n > this.block.length) {
      this.block = Buffer.allocUnsafe(Math.max(this.blockBytes, n));
      this.used = 0;
    }
    this.used += n;
    return this.block.subarray(this.used - n, this.used);
  }
}

/** `name`'s labels as the wire has them, ending with the root label, at `at` in `to`; the end. */
function writeName(to: Buffer, at: number, name: string): number {
  for (const label of name.split('.')) {
    to[at] = label.length;
    at += 1 + to.write(label, at + 1, 'latin1');
  }
  to[at] = 0;
  return at + 1;
}

/** A query's header: RD set, one question, no records; its id is written per query. */
const HEADER = Buffer.from([0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);

/** A query for `name` (ASCII, no trailing dot) of `qtype` (RD set), with `id`. */
export function warmQuery(id: number, name: string, qtype: number): Buffer {
  const q = Buffer.allocUnsafe(12 + name.length + 2 + 4);
  HEADER.copy(q, 0);
  q.writeUInt16BE(id, 0);
  const end = writeName(q, 12, name);
  q.writeUInt16BE(qtype, end);
  q.writeUInt16BE(1, end + 2);
  return q;
}

/**
 * The ten queries every ten of a warm-up: mostly one name again (cached), new names, AAAA,
 * refused names. A numbered one's first label is its letter and the query's index.
 */
const MIX = [
  ...Array.from({ length: 6 }, () => ({
    first: 'a',
    numbered: false,
    rest: 'warm.cordon.invalid',
    qtype: TYPE_A,
  })),
  { first: 'n', numbered: true, rest: 'warm.cordon.invalid', qtype: TYPE_A },
  { first: 'n', numbered: true, rest: 'warm.cordon.invalid', qtype: TYPE_A },
  { first: 'n', numbered: true, rest: 'warm.cordon.invalid', qtype: TYPE_AAAA },
  { first: 'r', numbered: true, rest: 'refused.invalid', qtype: TYPE_A },
].map((m) => {
  // What follows the first label, written once: the other labels, the root, type and class.
  const tail = Buffer.alloc(m.rest.length + 2 + 4);
  const end = writeName(tail, 0, m.rest);
  tail.writeUInt16BE(m.qtype, end);
  tail.writeUInt16BE(1, end + 2);
  return { ...m, letter: m.first.charCodeAt(0), tail };
});

/** The i-th query's name and type (what `queryAt` writes). */
export function nth(i: number): { name: string; qtype: number } {
  const m = MIX[i % 10];
  return { name: `${m.first}${m.numbered ? i : ''}.${m.rest}`, qtype: m.qtype };
}

/** The i-th query of a warm-up, with `id`, written into bytes of `slab` from the templates. */
export function queryAt(slab: Slab, i: number, id: number): Buffer {
  const m = MIX[i % 10];
  let digits = 0;
  if (m.numbered) for (let v = i; digits === 0 || v > 0; v = Math.floor(v / 10)) digits++;
  const label = 1 + digits;
  const q = slab.take(12 + 1 + label + m.tail.length);
  HEADER.copy(q, 0);
  q.writeUInt16BE(id, 0);
  q[12] = label;
  q[13] = m.letter;
  for (let at = 13 + label, v = i, d = 0; d < digits; d++, v = Math.floor(v / 10)) q[--at] = 0x30 + (v % 10);
  m.tail.copy(q, 13 + label);
  return q;
}

/** The warm upstream's record of `type`, TTL 300, its name a pointer to the question's. */
function record(type: number, rdata: number[]): Buffer {
  const r = Buffer.alloc(12 + rdata.length);
  r.writeUInt16BE(0xc00c, 0);
  r.writeUInt16BE(type, 2);
  r.writeUInt16BE(1, 4);
  r.writeUInt32BE(300, 6);
  r.writeUInt16BE(rdata.length, 10);
  r.set(rdata, 12);
  return r;
}
/** Their addresses' last byte (A) or two (AAAA) are written per answer. */
const RECORD_A = record(TYPE_A, [192, 0, 2, 0]);
const RECORD_AAAA = record(TYPE_AAAA, [0x20, 0x01, 0x0d, 0xb8, ...new Array<number>(12).fill(0)]);

/** The fewest bytes a query with a question has: the header, the root name, type and class. */
const QUESTION_MIN = 12 + 1 + 4;

/**
 * The warm upstream's answer to `query`: one A or AAAA record for its name (a pointer to
 * the question), an address from the documentation ranges picked by `n`, TTL 300; written
 * into bytes of `slab`. None to a datagram too short to hold a question: any local process
 * can send to the warm upstream's port while it is open, and a throw in its handler would
 * end the daemon.
 */
export function warmAnswer(
  query: Buffer,
  n: number,
  slab: Slab = new Slab(query.length + 28),
): Buffer | undefined {
  if (query.length < QUESTION_MIN) return undefined;
  const v6 = query.readUInt16BE(query.length - 4) === TYPE_AAAA;
  const rr = v6 ? RECORD_AAAA : RECORD_A;
  const out = slab.take(query.length + rr.length);
  query.copy(out, 0);
  rr.copy(out, query.length);
  out.writeUInt16BE(0x8180, 2);
  out.writeUInt16BE(1, 6);
  if (v6) out.writeUInt16BE(n & 0xffff, out.length - 2);
  else out[out.length - 1] = 1 + (n % 250);
  return out;
}

const bound = (s: dgram.Socket): Promise<void> =>
  new Promise((resolve, reject) => {
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => {
      s.off('error', reject);
      resolve();
    });
  });

/**
 * Warms the answer path: `make` builds a proxy exactly as the daemon builds its own, with
 * the upstream given (one on loopback inside this process); it is closed afterwards.
 */
export async function warmUp(
  make: (upstream: { address: string; port: number }) => DnsProxy,
  o: { queries?: number; budgetMs?: number } = {},
): Promise<WarmResult> {
  const queries = o.queries ?? WARM_QUERIES;
  const budgetMs = o.budgetMs ?? WARM_BUDGET_MS;
  const started = Date.now();
  const upstream = dgram.createSocket('udp4');
  const server = dgram.createSocket('udp4');
  const client = dgram.createSocket('udp4');
  let proxy: DnsProxy | undefined;
  let n = 0;
  // Every query and answer of this warm-up written in place into these (see Slab).
  const queryBytes = new Slab();
  const answerBytes = new Slab();
  const result: WarmResult = { answered: 0, sent: 0, ms: 0, finished: false };
  let limit: NodeJS.Timeout | undefined;
  try {
    upstream.on('message', (m, r) => {
      const answer = warmAnswer(m, n++, answerBytes);
      if (answer) upstream.send(answer, r.port, r.address);
    });
    await Promise.all([bound(upstream), bound(server), bound(client)]);
    // An error on a socket of its own (a send the kernel refused) must not end the daemon:
    // the query it carried is given up as unanswered.
    for (const s of [upstream, client]) s.on('error', () => undefined);
    proxy = make({ address: '127.0.0.1', port: upstream.address().port });
    proxy.serveUdp(server);
    // A proxy whose upstream socket never connects (its connect failed: logged, never
    // settled) must not hold setup: the budget bounds this wait too.
    const connected = await Promise.race([
      proxy.connectUpstream().then(() => true),
      new Promise<false>((r) => (limit = setTimeout(() => r(false), budgetMs))),
    ]);
    clearTimeout(limit);
    if (!connected) return result;
    const port = server.address().port;
    const over = (): boolean => Date.now() - started >= budgetMs;
    /** Sends queries `from` to `to`, WINDOW at a time; settles once each is answered or given up. */
    const round = (from: number, to: number): Promise<void> =>
      new Promise((resolve) => {
        const out = new Map<number, number>();
        let i = from;
        const fill = (): void => {
          while (out.size < WINDOW && i < to && !over()) {
            const id = (i % 0xffff) + 1;
            out.set(id, Date.now());
            result.sent++;
            client.send(queryAt(queryBytes, i, id), port, '127.0.0.1');
            i++;
          }
          if (out.size) return;
          clearInterval(tick);
          client.off('message', answered);
          resolve();
        };
        const answered = (m: Buffer): void => {
          if (m.length < 2 || !out.delete(m.readUInt16BE(0))) return;
          result.answered++;
          fill();
        };
        // A query unanswered for QUERY_MS (a refusal over budget gets none) is given up.
        const tick = setInterval(() => {
          const old = Date.now() - QUERY_MS;
          for (const [id, at] of out) if (at <= old || over()) out.delete(id);
          fill();
        }, 10);
        client.on('message', answered);
        fill();
      });
    const first = Math.floor(queries * 0.8);
    await round(0, first);
    if (!over()) await new Promise((r) => setTimeout(r, SETTLE_MS));
    await round(first, queries);
    result.finished = result.sent === queries;
  } finally {
    clearTimeout(limit);
    proxy?.close();
    for (const s of [upstream, client]) s.close();
    if (!proxy) server.close();
    result.ms = Date.now() - started;
  }
  return result;
}
