/**
 * The DNS proxy's TCP clients (length-prefixed, pipelined): the same decisions as over
 * UDP (proxy.ts), each client with its own upstream connection, opened on its first
 * forwarded query.
 */
import net from 'node:net';
import { cacheKey, type AnswerCache } from './dnscache.js';
import { readQuery, refusal, RCODE_NXDOMAIN, RCODE_SERVFAIL } from './dnswire.js';
import { Pending, type IdPool } from './pending.js';
import type { AnswerPath, ProxyOptions } from './proxy-answer.js';
import type { NameStats, ProxyStats } from './proxy-stats.js';
import type { Refusals } from './refusals.js';
import { refuseInPlace } from './refusals.js';

/** What a TCP client shares with the proxy that accepted it. */
export interface TcpCore {
  o: ProxyOptions;
  stats: ProxyStats;
  refusals: Refusals;
  cache: AnswerCache | undefined;
  ids: IdPool;
  answers: AnswerPath;
  refusedName(name: string): NameStats | undefined;
}

/** Answers not yet taken by a TCP client past which it is not read (it is not reading). */
const MAX_UNSENT = 64 * 1024;
/** How long a TCP client over its refusal budget is not read. */
const HOLD_MS = 200;
/** Queries one TCP client may have waiting for the upstream at once. */
const WAITING_PER_CLIENT = 256;

export function tcpClient(c: net.Socket, core: TcpCore): void {
  const { o, stats: proxyStats, refusals, cache, ids, answers } = core;
  let buf = Buffer.alloc(0);
  let upstream: net.Socket | undefined;
  let upBuf = Buffer.alloc(0);
  const waiting = new Map<number, Pending>();
  c.setTimeout(10000, () => c.destroy());
  c.on('error', () => c.destroy());
  const write = (b: Buffer): void => {
    if (c.destroyed) return;
    const len = Buffer.alloc(2);
    len.writeUInt16BE(b.length);
    c.write(Buffer.concat([len, b]));
  };
  const fromUp = (msg: Buffer): void => {
    if (msg.length < 12) return;
    const id = msg.readUInt16BE(0);
    const p = waiting.get(id);
    if (p && answers.accept(msg, p)) waiting.delete(id);
  };
  const openUpstream = (): net.Socket => {
    const u = net.connect({ host: o.upstream.address, port: o.upstream.port });
    u.on('data', (d: Buffer) => {
      upBuf = Buffer.concat([upBuf, d]);
      while (upBuf.length >= 2 && upBuf.length >= 2 + upBuf.readUInt16BE(0)) {
        const n = upBuf.readUInt16BE(0);
        fromUp(Buffer.from(upBuf.subarray(2, 2 + n)));
        upBuf = upBuf.subarray(2 + n);
      }
    });
    u.on('error', (e) => o.log?.(`tcp upstream: ${e.message}`));
    u.on('close', () => {
      upstream = undefined;
      upBuf = Buffer.alloc(0);
    });
    u.setTimeout(10000, () => u.destroy());
    return u;
  };
  c.on('close', () => upstream?.destroy());
  let held = false;
  // Answers the whole queries in `buf`; stops for a while when the source is over its
  // refusal budget or its answers are not being read (a client may pipeline without end).
  const serve = (): void => {
    let over = false;
    while (!over && buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      const n = buf.readUInt16BE(0);
      const msg = Buffer.from(buf.subarray(2, 2 + n));
      buf = buf.subarray(2 + n);
      const check = readQuery(msg);
      if (!check.ok) {
        proxyStats.malformed++;
        if (msg.length >= 12) write(refusal(msg, check.end, check.rcode));
        continue;
      }
      const q = check.q;
      const allowed = o.matcher.matches(q.name);
      // Over the source's budget a refusal is still answered (TCP loses nothing), but the
      // connection is not read again until HOLD_MS later: one connection cannot pipeline
      // refused names past the budget the UDP path keeps.
      if (!allowed) over = !refusals.refused('tcp', c.remoteAddress ?? '', c.remotePort ?? 0);
      const stats = allowed ? proxyStats.query(q.name, true) : core.refusedName(q.name);
      if (!allowed && o.policy === 'block') {
        write(refuseInPlace(msg, q.end, RCODE_NXDOMAIN));
        continue;
      }
      let key: string | undefined;
      if (allowed && cache) {
        key = cacheKey(msg, q, true);
        const hit = key === undefined ? undefined : cache.get(key);
        const to = { reply: write, sock: undefined, port: 0, address: '' };
        if (hit && answers.fromCache(hit, msg, q, stats, to)) continue;
      }
      if (waiting.size >= WAITING_PER_CLIENT) {
        write(refusal(msg, q.end, RCODE_SERVFAIL));
        continue;
      }
      let id = ids.next();
      while (waiting.has(id)) id = (id + 1) & 0xffff;
      waiting.set(id, new Pending(write, undefined, 0, '', q.id, msg, q.end, q.name, stats, key, Date.now()));
      msg.writeUInt16BE(id, 0);
      upstream ??= openUpstream();
      const len = Buffer.alloc(2);
      len.writeUInt16BE(msg.length);
      upstream.write(Buffer.concat([len, msg]));
    }
    if (buf.length > 70000) return void c.destroy();
    if (held || c.destroyed || (!over && c.writableLength <= MAX_UNSENT)) return;
    held = true;
    c.pause();
    const resume = (): void => {
      held = false;
      if (c.destroyed) return;
      c.resume();
      serve();
    };
    if (over) setTimeout(resume, HOLD_MS);
    else c.once('drain', resume);
  };
  c.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    serve();
  });
}
