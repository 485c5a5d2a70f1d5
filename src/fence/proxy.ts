/**
 * The DNS proxy: a name on the list is forwarded to the one upstream and its answer's
 * addresses are in the sets before the client sees the answer; any other name gets
 * NXDOMAIN at once and is never sent on (in audit mode it is forwarded and recorded).
 * An answer counts only when it comes from the upstream's address and port, carries the
 * id we sent and repeats the question we asked. Accepted answers to names on the list are
 * cached (see dnscache.ts); a cached answer goes through the same set check as a fresh
 * one before it is sent. An answer with an address that points inward (inward.ts) is
 * refused whole (REFUSED) in block mode, before anything goes into a set: rewriting it
 * without that address would mean re-encoding the message, and a name that answers with
 * the metadata service next to a public address is the attack, not a mistake to route
 * around. It is recorded as a rebinding attempt either way (audit mode lets it through).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { randomFillSync } from 'node:crypto';
import {
  readAnswer,
  readName,
  readQuery,
  refusal,
  RCODE_NXDOMAIN,
  RCODE_REFUSED,
  RCODE_SERVFAIL,
  type AnswerAddresses,
} from './dnswire.js';
import type { InwardFilter } from './inward.js';
import { ProxyStats, type NameStats } from './proxy-stats.js';
import type { DomainMatcher } from './policy.js';
import { AnswerCache, cacheKey, serveCached, type CacheHit } from './dnscache.js';
import { Refusals, type SourceAsk } from './refusals.js';

export interface AddressSink {
  /**
   * Undefined when every address is already allowed for at least max(ttl - ageSeconds,
   * min-ttl) seconds; else a promise that settles once they are (or could not be).
   */
  ensure(
    v4: readonly { address: string; ttl: number }[],
    v6: readonly { address: string; ttl: number }[],
    ageSeconds?: number,
  ): Promise<void> | undefined;
}

export interface ProxyOptions {
  matcher: DomainMatcher;
  policy: 'block' | 'audit';
  upstream: { address: string; port: number };
  sink: AddressSink;
  stats?: ProxyStats;
  timeoutMs?: number;
  log?: (line: string) => void;
  /** Finds the addresses of an answer that point inward; none checked when absent. */
  inward?: InwardFilter;
  /** The answer cache; `false` turns it off. Default: a new AnswerCache with its defaults. */
  cache?: AnswerCache | false;
  /**
   * Called for a new source of refused names (see refusals.ts: once per client socket, a
   * few a second at most), after the answer is on its way (finding who asked must not
   * delay it), with the source's key and the client socket's port.
   */
  onRefused?: SourceAsk;
}

interface Pending {
  /** TCP clients: writes a framed reply. UDP clients use `sock`, `port`, `address`. */
  reply?: (b: Buffer) => void;
  sock?: dgram.Socket;
  port: number;
  address: string;
  origId: number;
  name: string;
  qtype: number;
  stats: NameStats | undefined;
  at: number;
  /** Where the answer goes in the cache (names on the list only). */
  key: string | undefined;
}

const MAX_PENDING = 50000;
/** Socket buffers asked for (the kernel caps them at net.core.rmem_max / wmem_max). */
export const BUFFER_BYTES = 4 << 20;

/** Upstream query ids come from a pool of random bytes refilled 32 KiB at a time (not a syscall per query). */
class IdPool {
  private readonly buf = Buffer.allocUnsafe(32768);
  private at = this.buf.length;

  next(): number {
    if (this.at >= this.buf.length) {
      randomFillSync(this.buf);
      this.at = 0;
    }
    const id = this.buf.readUInt16BE(this.at);
    this.at += 2;
    return id;
  }
}

function addAddresses(
  stats: NameStats,
  v4: readonly { address: string }[],
  v6: readonly { address: string }[],
): void {
  for (let i = 0; i < v4.length && stats.addresses.size < 64; i++) stats.addresses.add(v4[i].address);
  for (let i = 0; i < v6.length && stats.addresses.size < 64; i++) stats.addresses.add(v6[i].address);
}

function send(p: Pick<Pending, 'reply' | 'sock' | 'port' | 'address'>, b: Buffer): void {
  if (p.reply) p.reply(b);
  else p.sock!.send(b, p.port, p.address);
}

export class DnsProxy {
  readonly stats: ProxyStats;
  private readonly pending = new Map<number, Pending>();
  private upstreamSocket: dgram.Socket | undefined;
  private readonly servers: (dgram.Socket | net.Server)[] = [];
  private sweeper: NodeJS.Timeout | undefined;
  private readonly timeoutMs: number;
  private readonly ids = new IdPool();
  readonly cache: AnswerCache | undefined;
  readonly refusals: Refusals;

  constructor(private readonly o: ProxyOptions) {
    this.stats = o.stats ?? new ProxyStats();
    this.refusals = new Refusals(o.onRefused);
    this.timeoutMs = o.timeoutMs ?? 5000;
    this.cache = o.cache === false ? undefined : (o.cache ?? new AnswerCache());
  }

  /** Serves clients on an already-bound UDP socket. */
  serveUdp(sock: dgram.Socket): void {
    this.servers.push(sock);
    sock.on('message', (msg, rinfo) => this.handle(msg, sock, rinfo));
    sock.on('error', (e) => this.o.log?.(`udp server: ${e.message}`));
  }

  /** Serves clients on an already-listening TCP server (length-prefixed, pipelined). */
  serveTcp(server: net.Server): void {
    this.servers.push(server);
    server.on('connection', (c) => this.tcpClient(c));
  }

  /**
   * Opens the upstream socket; called after the process has taken the proxy's uid, so the
   * socket is owned by it. The socket is connected: the kernel drops datagrams from any
   * other source before they reach us, and a send skips the per-call address lookup.
   */
  async connectUpstream(): Promise<void> {
    const type = net.isIP(this.o.upstream.address) === 6 ? 'udp6' : 'udp4';
    // A burst of answers must not overflow the default ~200 KiB buffer: a dropped answer
    // costs its client a whole retry timeout.
    const s = dgram.createSocket({ type, recvBufferSize: BUFFER_BYTES, sendBufferSize: BUFFER_BYTES });
    s.on('message', (msg, rinfo) => this.fromUpstream(msg, rinfo));
    s.on('error', (e) => this.o.log?.(`upstream socket: ${e.message}`));
    await new Promise<void>((resolve) => s.connect(this.o.upstream.port, this.o.upstream.address, resolve));
    this.upstreamSocket = s;
    this.sweeper = setInterval(() => this.sweep(), 1000);
    this.sweeper.unref();
  }

  private handle(msg: Buffer, sock: dgram.Socket, rinfo: dgram.RemoteInfo): void {
    const check = readQuery(msg);
    if (!check.ok) {
      this.stats.malformed++;
      if (msg.length >= 12) sock.send(refusal(msg, check.end, check.rcode), rinfo.port, rinfo.address);
      return;
    }
    const q = check.q;
    const allowed = this.o.matcher.matches(q.name);
    if (!allowed) {
      // Counted per source and per name, nothing kept per query; the answer is the query
      // itself turned into NXDOMAIN in place (no copy), unless the source is over budget.
      const answer = this.refusals.refused('udp', rinfo.address, rinfo.port);
      this.refusedName(q.name);
      if (this.o.policy === 'block') {
        if (answer) sock.send(refuseInPlace(msg, q.end, RCODE_NXDOMAIN), rinfo.port, rinfo.address);
        return;
      }
    }
    const stats = allowed ? this.stats.query(q.name, true) : this.stats.names.get(q.name);
    let key: string | undefined;
    if (allowed && this.cache) {
      key = cacheKey(msg, q, false);
      const hit = key === undefined ? undefined : this.cache.get(key);
      if (hit && this.fromCache(hit, msg, q.end, stats, { sock, port: rinfo.port, address: rinfo.address }))
        return;
    }
    if (this.pending.size >= MAX_PENDING || !this.upstreamSocket) {
      sock.send(refusal(msg, q.end, RCODE_SERVFAIL), rinfo.port, rinfo.address);
      return;
    }
    let id = this.ids.next();
    for (let i = 0; this.pending.has(id) && i < 65536; i++) id = (id + 1) & 0xffff;
    this.pending.set(id, {
      sock,
      port: rinfo.port,
      address: rinfo.address,
      ...asked(q, stats, key),
    });
    msg.writeUInt16BE(id, 0);
    this.upstreamSocket.send(msg);
  }

  /** Counts a refused name against the source just counted (refusals.ts NAMES_PER_SOURCE). */
  private refusedName(name: string): NameStats | undefined {
    const before = this.stats.names.size;
    const stats = this.stats.query(name, false, this.refusals.lastKey, this.refusals.mayName());
    if (this.stats.names.size > before && this.refusals.last) this.refusals.last.named++;
    return stats;
  }

  private fromUpstream(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (rinfo.address !== this.o.upstream.address || rinfo.port !== this.o.upstream.port || msg.length < 12) {
      this.stats.forgedAnswers++;
      return;
    }
    const p = this.pending.get(msg.readUInt16BE(0));
    if (!p) return;
    const ans = readAnswer(msg);
    if (!ans || ans.name !== p.name || ans.qtype !== p.qtype) {
      this.stats.forgedAnswers++;
      return;
    }
    this.pending.delete(msg.readUInt16BE(0));
    msg.writeUInt16BE(p.origId, 0);
    this.release(ans, p, msg);
  }

  /**
   * Answers from the cache: the client's id and question case, TTLs counted down, sent
   * once the addresses are in the sets for that long (at once when they already are).
   * False when the entry does not fit this query (then it goes upstream as usual).
   */
  private fromCache(
    hit: CacheHit,
    msg: Buffer,
    questionEnd: number,
    stats: NameStats | undefined,
    to: Pick<Pending, 'reply' | 'sock' | 'port' | 'address'>,
  ): boolean {
    const out = serveCached(hit, msg, questionEnd);
    if (!out) return false;
    const { v4, v6 } = hit.entry;
    if (stats && stats.addresses.size === 0) addAddresses(stats, v4, v6);
    const update = v4.length || v6.length ? this.o.sink.ensure(v4, v6, hit.age) : undefined;
    // Counted once sent: one refused for want of a set update is a set failure instead.
    if (!update) {
      this.stats.cacheHits++;
      send(to, out);
    } else
      update.then(
        () => {
          this.stats.cacheHits++;
          send(to, out);
        },
        (e: Error) => this.setFailed(e, to, out),
      );
    return true;
  }

  private setFailed(e: Error, to: Pick<Pending, 'reply' | 'sock' | 'port' | 'address'>, msg: Buffer): void {
    this.stats.setFailures++;
    this.o.log?.(`set update failed: ${e.message}`);
    send(to, refusal(msg, msg.length, RCODE_SERVFAIL));
  }

  /**
   * Sends the answer once its addresses are in the sets; SERVFAIL if they could not be
   * added. Cached (when it may be) only once the addresses are in.
   */
  private release(ans: AnswerAddresses, p: Pending, msg: Buffer): void {
    const inward = this.o.inward?.check(ans);
    if (inward) {
      this.stats.rebound(p.name, inward);
      // The name goes to the report only: this log is kept by the daemon and not scrubbed.
      this.o.log?.(`an answer pointed inward: ${inward.map((a) => `${a.address} (${a.kind})`).join(', ')}`);
      if (this.o.policy === 'block') {
        const q = readName(msg, 12);
        send(p, refusal(msg, q ? q.end + 4 : 12, RCODE_REFUSED));
        return;
      }
    }
    if (p.stats) addAddresses(p.stats, ans.v4, ans.v6);
    const update = ans.v4.length || ans.v6.length ? this.o.sink.ensure(ans.v4, ans.v6) : undefined;
    if (!update) {
      if (p.key !== undefined) this.cache?.put(p.key, msg, ans);
      send(p, msg);
      return;
    }
    update.then(
      () => {
        if (p.key !== undefined) this.cache?.put(p.key, msg, ans);
        send(p, msg);
      },
      (e: Error) => this.setFailed(e, p, msg),
    );
  }

  private sweep(): void {
    const old = Date.now() - this.timeoutMs;
    for (const [id, p] of this.pending) {
      if (p.at < old) {
        this.pending.delete(id);
        this.stats.upstreamTimeouts++;
      }
    }
  }

  private tcpClient(c: net.Socket): void {
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
      if (!p) return;
      const ans = readAnswer(msg);
      if (!ans || ans.name !== p.name || ans.qtype !== p.qtype) {
        this.stats.forgedAnswers++;
        return;
      }
      waiting.delete(id);
      msg.writeUInt16BE(p.origId, 0);
      this.release(ans, p, msg);
    };
    const openUpstream = (): net.Socket => {
      const u = net.connect({ host: this.o.upstream.address, port: this.o.upstream.port });
      u.on('data', (d: Buffer) => {
        upBuf = Buffer.concat([upBuf, d]);
        while (upBuf.length >= 2 && upBuf.length >= 2 + upBuf.readUInt16BE(0)) {
          const n = upBuf.readUInt16BE(0);
          fromUp(Buffer.from(upBuf.subarray(2, 2 + n)));
          upBuf = upBuf.subarray(2 + n);
        }
      });
      u.on('error', (e) => this.o.log?.(`tcp upstream: ${e.message}`));
      u.on('close', () => {
        upstream = undefined;
        upBuf = Buffer.alloc(0);
      });
      u.setTimeout(10000, () => u.destroy());
      return u;
    };
    c.on('close', () => upstream?.destroy());
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const n = buf.readUInt16BE(0);
        const msg = Buffer.from(buf.subarray(2, 2 + n));
        buf = buf.subarray(2 + n);
        const check = readQuery(msg);
        if (!check.ok) {
          this.stats.malformed++;
          if (msg.length >= 12) write(refusal(msg, check.end, check.rcode));
          continue;
        }
        const q = check.q;
        const allowed = this.o.matcher.matches(q.name);
        // TCP is flow-controlled, so a refusal over the source's budget is still answered.
        if (!allowed) this.refusals.refused('tcp', c.remoteAddress ?? '', c.remotePort ?? 0);
        const stats = allowed ? this.stats.query(q.name, true) : this.refusedName(q.name);
        if (!allowed && this.o.policy === 'block') {
          write(refuseInPlace(msg, q.end, RCODE_NXDOMAIN));
          continue;
        }
        let key: string | undefined;
        if (allowed && this.cache) {
          key = cacheKey(msg, q, true);
          const hit = key === undefined ? undefined : this.cache.get(key);
          if (hit && this.fromCache(hit, msg, q.end, stats, { reply: write, port: 0, address: '' })) continue;
        }
        if (waiting.size >= 256) {
          write(refusal(msg, q.end, RCODE_SERVFAIL));
          continue;
        }
        let id = this.ids.next();
        while (waiting.has(id)) id = (id + 1) & 0xffff;
        waiting.set(id, {
          reply: write,
          port: 0,
          address: '',
          ...asked(q, stats, key),
        });
        msg.writeUInt16BE(id, 0);
        upstream ??= openUpstream();
        const len = Buffer.alloc(2);
        len.writeUInt16BE(msg.length);
        upstream.write(Buffer.concat([len, msg]));
      }
      if (buf.length > 70000) c.destroy();
    });
  }

  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.upstreamSocket?.close();
    for (const s of this.servers) s.close();
  }
}

/**
 * The query turned into its refusal in place: same id, opcode, RD and question, QR and RA
 * set, the rcode, no records (a query has none: readQuery checked). Nothing allocated.
 */
function refuseInPlace(msg: Buffer, questionEnd: number, rcode: number): Buffer {
  msg.writeUInt16BE(0x8000 | (msg.readUInt16BE(2) & 0x7900) | 0x0080 | rcode, 2);
  msg.writeUInt16BE(0, 10);
  return msg.subarray(0, questionEnd);
}

/** What a forwarded query waits with, whichever way its answer goes back. */
function asked(
  q: { id: number; name: string; qtype: number },
  stats: Pending['stats'],
  key: Pending['key'],
): Pick<Pending, 'origId' | 'name' | 'qtype' | 'stats' | 'at' | 'key'> {
  return { origId: q.id, name: q.name, qtype: q.qtype, stats, at: Date.now(), key };
}
