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
import { readQuery, refusal, RCODE_NXDOMAIN, RCODE_SERVFAIL } from './dnswire.js';
import { ProxyStats, type NameStats } from './proxy-stats.js';
import { AnswerCache, cacheKey } from './dnscache.js';
import { Refusals, refuseInPlace } from './refusals.js';
import { IdPool, Pending, PendingTable } from './pending.js';
import { AnswerPath, type ProxyOptions } from './proxy-answer.js';
import { tcpClient } from './proxy-tcp.js';

export type { AddressSink, ProxyOptions } from './proxy-answer.js';

const MAX_PENDING = 50000;
/**
 * TCP clients one proxy keeps at once (each may hold an upstream connection too). Past it
 * the least recently active is closed for the new one: without a cap, connections held
 * open (10 s each, 2000 a second under the per-uid limit) would run the daemon out of
 * file descriptors, and with them its control socket and its nft shells.
 */
export const MAX_TCP_CLIENTS = 1000;
/** Socket buffers asked for (the kernel caps them at net.core.rmem_max / wmem_max). */
export const BUFFER_BYTES = 4 << 20;

export class DnsProxy {
  readonly stats: ProxyStats;
  private readonly ids = new IdPool();
  private readonly pending = new PendingTable(MAX_PENDING, this.ids);
  private upstreamSocket: dgram.Socket | undefined;
  private readonly servers: (dgram.Socket | net.Server)[] = [];
  /** Open TCP clients, least recently active first. */
  private readonly tcp = new Map<net.Socket, true>();
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly timeoutMs: number;
  private readonly answers: AnswerPath;
  readonly cache: AnswerCache | undefined;
  readonly refusals: Refusals;

  constructor(private readonly o: ProxyOptions) {
    this.stats = o.stats ?? new ProxyStats();
    this.refusals = new Refusals(o.onRefused);
    this.timeoutMs = o.timeoutMs ?? 5000;
    this.cache = o.cache === false ? undefined : (o.cache ?? new AnswerCache());
    this.answers = new AnswerPath(o, this.stats, this.cache);
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
    server.on('connection', (c) => {
      // Least recently active first: a Map keeps insertion order, and activity re-inserts.
      if (this.tcp.size >= MAX_TCP_CLIENTS) {
        const oldest = this.tcp.keys().next().value as net.Socket;
        this.tcp.delete(oldest);
        oldest.destroy();
        this.stats.tcpEvicted++;
      }
      this.tcp.set(c, true);
      c.on('data', () => {
        this.tcp.delete(c);
        this.tcp.set(c, true);
      });
      c.on('close', () => this.tcp.delete(c));
      tcpClient(c, {
        o: this.o,
        stats: this.stats,
        refusals: this.refusals,
        cache: this.cache,
        ids: this.ids,
        answers: this.answers,
        refusedName: (name) => this.refusedName(name),
      });
    });
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
    // Closed while connecting (the warm-up gives up at its budget): nothing is left open.
    if (this.closed) {
      s.close();
      return;
    }
    this.upstreamSocket = s;
    // One sweeper for every waiting query, not a timer each.
    this.sweeper = setInterval(() => {
      this.stats.upstreamTimeouts += this.pending.sweep(Date.now() - this.timeoutMs);
    }, 1000);
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
      const to = { reply: undefined, sock, port: rinfo.port, address: rinfo.address };
      if (hit && this.answers.fromCache(hit, msg, q, stats, to)) return;
    }
    if (this.pending.full || !this.upstreamSocket) {
      sock.send(refusal(msg, q.end, RCODE_SERVFAIL), rinfo.port, rinfo.address);
      return;
    }
    const id = this.pending.freeId();
    const p = new Pending(
      undefined,
      sock,
      rinfo.port,
      rinfo.address,
      q.id,
      msg,
      q.end,
      q.name,
      stats,
      key,
      Date.now(),
    );
    this.pending.set(id, p);
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
    const id = msg.readUInt16BE(0);
    const p = this.pending.get(id);
    if (p && this.answers.accept(msg, p)) this.pending.delete(id);
  }

  close(): void {
    this.closed = true;
    if (this.sweeper) clearInterval(this.sweeper);
    this.upstreamSocket?.close();
    for (const s of this.servers) s.close();
  }
}
