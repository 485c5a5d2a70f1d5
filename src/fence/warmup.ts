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

/** A query for `name` of `qtype` (RD set), with `id`. */
export function warmQuery(id: number, name: string, qtype: number): Buffer {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const q = Buffer.concat([Buffer.alloc(12), ...labels, Buffer.from([0, 0, 0, 0, 1])]);
  q.writeUInt16BE(id, 0);
  q.writeUInt16BE(0x0100, 2);
  q.writeUInt16BE(1, 4);
  q.writeUInt16BE(qtype, q.length - 4);
  return q;
}

/**
 * The warm upstream's answer to `query`: one A or AAAA record for its name (a pointer to
 * the question), an address from the documentation ranges picked by `n`, TTL 300.
 */
export function warmAnswer(query: Buffer, n: number): Buffer {
  const qtype = query.readUInt16BE(query.length - 4);
  const v6 = qtype === TYPE_AAAA;
  const rr = Buffer.alloc(12 + (v6 ? 16 : 4));
  rr.writeUInt16BE(0xc00c, 0);
  rr.writeUInt16BE(v6 ? TYPE_AAAA : TYPE_A, 2);
  rr.writeUInt16BE(1, 4);
  rr.writeUInt32BE(300, 6);
  rr.writeUInt16BE(v6 ? 16 : 4, 10);
  if (v6) {
    rr.writeUInt32BE(0x20010db8, 12);
    rr.writeUInt16BE(n & 0xffff, 26);
  } else rr.set([192, 0, 2, 1 + (n % 250)], 12);
  const out = Buffer.concat([query, rr]);
  out.writeUInt16BE(0x8180, 2);
  out.writeUInt16BE(1, 6);
  return out;
}

/** The i-th query of a warm-up: mostly one name again (cached), new names, AAAA, refused names. */
function nth(i: number): { name: string; qtype: number } {
  const k = i % 10;
  if (k < 6) return { name: 'a.warm.cordon.invalid', qtype: TYPE_A };
  if (k < 8) return { name: `n${i}.warm.cordon.invalid`, qtype: TYPE_A };
  if (k === 8) return { name: `n${i}.warm.cordon.invalid`, qtype: TYPE_AAAA };
  return { name: `r${i}.refused.invalid`, qtype: TYPE_A };
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
  const result: WarmResult = { answered: 0, sent: 0, ms: 0, finished: false };
  let limit: NodeJS.Timeout | undefined;
  try {
    upstream.on('message', (m, r) => upstream.send(warmAnswer(m, n++), r.port, r.address));
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
            const { name, qtype } = nth(i);
            const id = (i % 0xffff) + 1;
            out.set(id, Date.now());
            result.sent++;
            client.send(warmQuery(id, name, qtype), port, '127.0.0.1');
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
