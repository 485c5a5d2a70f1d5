/**
 * The agent's web gate: its TCP connections to ports 80 and 443 are redirected here by
 * the kernel (firewall.ts, agent_web), and one goes on only when the name it asks for
 * (TLS server_name, HTTP Host: sni.ts) is on the agent's list AND its original
 * destination is an address the agent's proxy answered for that very name (answered.ts).
 * Nothing is terminated: the bytes read to decide are sent on as they came, then the two
 * connections are joined, the client's side still read: on port 80 every request on the
 * connection (HttpFollower), on port 443 every ClientHello up to the first encrypted data
 * record (TlsFollower), each of which must ask for the first name. Otherwise the connection is reset and the destination recorded
 * as the agent's block. The gate's own connections carry the proxy's uid, not an agent's,
 * so they are not redirected back here.
 */
import net from 'node:net';
import {
  HttpFollower,
  MAX_PEEK_BYTES,
  peekHttp,
  peekTls,
  TlsFollower,
  type Follow,
  type Head,
  type Peek,
} from './sni.js';
import type { AnsweredNames } from './answered.js';
import type { DomainMatcher } from './policy.js';
import { TABLE, type NftShell } from './nftshell.js';
import { canonicalAddress } from './ip.js';

/** Connections the gate holds at once (deciding or joined); past it a new one is reset. */
export const MAX_GATE_CONNECTIONS = 512;
/** How long a connection has to name its site and reach it before it is reset. */
export const GATE_DECIDE_MS = 5000;

export type GateRefusal =
  | 'no original destination'
  | 'unreadable start'
  | 'no name in time'
  | 'name off the list'
  | 'address not answered for the name'
  | 'destination unreachable'
  | 'another name later on the connection'
  | 'a later request the gate cannot read';

export interface WebGateOptions {
  matcher: DomainMatcher;
  answered: AnsweredNames;
  /** Where a redirected connection was going (its address), from its source as the gate sees it. */
  origin: (family: 4 | 6, source: string, sourcePort: number) => Promise<string | undefined>;
  /** A refused connection: its original destination when known (never the name: it may carry a secret). */
  refused: (why: GateRefusal, address: string | undefined, port: number) => void;
  /** How the gate reaches a destination; `net.connect` unless a test stands in. */
  connect?: (port: number, host: string) => net.Socket;
  maxConnections?: number;
  decideMs?: number;
}

export class WebGate {
  private open = 0;
  readonly stats = { passed: 0, refused: 0, overCap: 0 };
  private readonly servers: net.Server[] = [];

  constructor(private readonly o: WebGateOptions) {}

  /** Serves the connections redirected from `port` (80 or 443) on an already-listening server. */
  serve(server: net.Server, port: 80 | 443): void {
    this.servers.push(server);
    server.on('connection', (c) => this.accept(c, port));
  }

  private accept(c: net.Socket, port: 80 | 443): void {
    if (this.open >= (this.o.maxConnections ?? MAX_GATE_CONNECTIONS)) {
      this.stats.overCap++;
      c.resetAndDestroy();
      return;
    }
    this.open++;
    c.once('close', () => this.open--);
    c.on('error', () => c.destroy());
    const peek: (b: Buffer) => Peek | Head = port === 443 ? peekTls : peekHttp;
    const chunks: Buffer[] = [];
    let size = 0;
    let address: string | undefined;
    let done = false;
    // What the deadline means: no name yet, or (once joining) a destination that did not answer.
    let late: GateRefusal = 'no name in time';
    const refuse = (why: GateRefusal): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.stats.refused++;
      this.o.refused(why, address, port);
      c.resetAndDestroy();
    };
    const timer = setTimeout(() => refuse(late), this.o.decideMs ?? GATE_DECIDE_MS);
    // The client ended its side before naming a site: what it sent is all there will be.
    let ended = false;
    const decide = (): void => {
      if (done || address === undefined) return;
      if (!size) {
        if (ended) refuse('unreadable start');
        return;
      }
      const buf = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size);
      const p = peek(buf.subarray(0, MAX_PEEK_BYTES));
      if (p.state === 'more') {
        if (size >= MAX_PEEK_BYTES || ended) refuse('unreadable start');
        return;
      }
      if (p.state === 'refuse') return refuse('unreadable start');
      if (!this.o.matcher.matches(p.name)) return refuse('name off the list');
      if (!this.o.answered.answered(p.name, address)) return refuse('address not answered for the name');
      c.off('data', onData);
      c.off('end', onEnd);
      c.pause();
      late = 'destination unreachable';
      // The first ClientHello or head is read once: it goes on as it came, the follower
      // reads what comes after it (sni.ts).
      this.join(
        c,
        buf.subarray(0, p.size),
        buf.subarray(p.size),
        'body' in p
          ? new HttpFollower(p.name, p.body)
          : new TlsFollower(p.name, 'early' in p && p.early === true),
        address,
        port,
        () => {
          done = true;
          clearTimeout(timer);
        },
        refuse,
      );
    };
    const onData = (d: Buffer): void => {
      chunks.push(d);
      size += d.length;
      // Enough to decide on: the rest waits in the kernel (the origin may still be on its way).
      if (size >= MAX_PEEK_BYTES) c.pause();
      decide();
    };
    c.on('data', onData);
    const onEnd = (): void => {
      ended = true;
      decide();
    };
    c.once('end', onEnd);
    c.once('close', () => clearTimeout(timer));
    const family = c.remoteFamily === 'IPv6' ? 6 : 4;
    const source = c.remoteAddress;
    const sourcePort = c.remotePort;
    if (!source || !sourcePort) return refuse('no original destination');
    this.o.origin(family, source, sourcePort).then(
      (a) => {
        if (!a) return refuse('no original destination');
        address = a;
        decide();
      },
      () => refuse('no original destination'),
    );
  }

  /**
   * Sends what was read on to the original destination (`first`, read already; `rest`,
   * through `follow`), then joins the two connections: the server's side piped, the
   * client's side through `follow` until it says `done` (then piped), reset when it refuses.
   */
  private join(
    c: net.Socket,
    first: Buffer,
    rest: Buffer,
    follow: HttpFollower | TlsFollower,
    address: string,
    port: number,
    joined: () => void,
    refuse: (why: GateRefusal) => void,
  ): void {
    const up = (this.o.connect ?? ((p, h) => net.connect({ port: p, host: h, allowHalfOpen: true })))(
      port,
      address,
    );
    up.on('error', () => {
      refuse('destination unreachable');
      up.destroy();
      c.destroy();
    });
    c.once('close', () => up.destroy());
    up.once('close', () => c.destroy());
    let stopped = false;
    /** Sends on what the follower let through; false when the connection was reset. */
    const send = (f: Follow): boolean => {
      if (f.state === 'refuse') {
        stopped = true;
        // Counted as let through when it joined: each connection counts once, as the summary
        // reads them (let through, or reset).
        this.stats.passed--;
        this.stats.refused++;
        this.o.refused(
          f.other ? 'another name later on the connection' : 'a later request the gate cannot read',
          address,
          port,
        );
        up.resetAndDestroy();
        c.resetAndDestroy();
        return false;
      }
      let room = true;
      for (const b of f.out) room = up.write(b) && room;
      if (f.state === 'done') {
        stopped = true;
        c.off('data', onData);
        c.off('end', onEnd);
        up.off('drain', onDrain);
        c.pipe(up);
      } else if (!room) c.pause();
      return true;
    };
    const onData = (d: Buffer): void => {
      if (!stopped) send(follow.feed(d));
    };
    const onDrain = (): void => {
      if (!stopped) c.resume();
    };
    // What the client sent up to its end goes on; a head it had not finished does not.
    const onEnd = (): void => {
      if (!stopped) up.end();
    };
    up.once('connect', () => {
      joined();
      this.stats.passed++;
      up.write(first);
      if (rest.length && !send(follow.feed(rest))) return;
      up.pipe(c);
      if (stopped) return;
      c.on('data', onData);
      up.on('drain', onDrain);
      // The client may have ended while the gate connected (a socket ends even paused).
      if (c.readableEnded) onEnd();
      else c.once('end', onEnd);
      if (!up.writableNeedDrain) c.resume();
    });
  }

  /** Connections deciding or joined now. */
  get connections(): number {
    return this.open;
  }

  close(): void {
    for (const s of this.servers) s.close();
  }
}

/**
 * Origin lookups with the nft shell at once. The shell is the tamper watch's and the
 * report's too (setup.ts): an agent opening hundreds of connections must not put hundreds
 * of lookups ahead of a re-close of the table.
 */
export const MAX_ORIGIN_LOOKUPS = 4;

/**
 * The gate's `origin` from the kernel's maps (firewall.ts): for the source port, where the
 * connection was going and from which address; taken only when that address is the source
 * the gate sees (another connection from the same port on another address may have written
 * the port's elements). They run out by themselves (firewall.ts WEB_ORIGIN_SECONDS).
 */
export function nftOrigin(shell: Pick<NftShell, 'run'>): WebGateOptions['origin'] {
  let inShell = 0;
  const waiting: (() => void)[] = [];
  const lookup = async (line: string): Promise<string> => {
    // Bounded waiting here (the gate holds MAX_GATE_CONNECTIONS), not in the shell's queue.
    if (inShell >= MAX_ORIGIN_LOOKUPS) await new Promise<void>((r) => waiting.push(r));
    inShell++;
    try {
      return await shell.run(line);
    } finally {
      inShell--;
      waiting.shift()?.();
    }
  };
  return async (family, source, sourcePort) => {
    if (net.isIP(source) !== family || !Number.isInteger(sourcePort)) return undefined;
    const maps = [`weborig${family}`, `websrc${family}`];
    let out: string;
    try {
      out = await lookup(maps.map((m) => `get element ${TABLE} ${m} { ${sourcePort} }`).join('; '));
    } catch {
      return undefined;
    }
    const value = (map: string): string | undefined =>
      new RegExp(
        `map ${map} \\{[^}]*elements = \\{ ${sourcePort} (?:expires \\S+ )?: ([0-9a-fA-F.:]+) \\}`,
      ).exec(out)?.[1];
    const [to, from] = maps.map(value);
    if (!to || !from || net.isIP(to) !== family || net.isIP(from) !== family) return undefined;
    return canonicalAddress(from) === canonicalAddress(source) ? to : undefined;
  };
}

/** Refusals the daemon's log names one by one; past them they are only counted (stats). */
export const LOGGED_REFUSALS = 200;
/** A destination is written to the blocked set again at most this often (a flood costs no nft work). */
const RECORD_EVERY_MS = 1000;
const RECENT_MAX = 4096;
/** nft's error for an element that does not fit a set at its `size` (ENFILE). */
const SET_FULL = /Too many open files in system/;

/**
 * A refused connection's record: its destination in the agent's blocked sets, where the
 * report reads every block (the name is never kept: it may carry a secret), and a log
 * line. Bounded: one write per destination a second, LOGGED_REFUSALS lines in all.
 */
export class RefusalRecorder {
  private readonly recent = new Map<string, number>();
  private logged = 0;
  private full = false;

  constructor(
    private readonly shell: Pick<NftShell, 'run'>,
    private readonly log: (line: string) => void,
    private readonly failed: () => void,
    private readonly now: () => number = Date.now,
  ) {}

  note(why: GateRefusal, address: string | undefined, port: number): void {
    if (this.logged < LOGGED_REFUSALS) {
      this.logged++;
      this.log(
        `web gate: reset an agent connection to ${address ?? 'an unknown address'} port ${port}: ${why}`,
      );
      if (this.logged === LOGGED_REFUSALS) this.log('web gate: further resets are counted, not logged');
    }
    if (!address || !net.isIP(address)) return;
    const key = `${address} ${port}`;
    const t = this.now();
    const last = this.recent.get(key);
    if (last !== undefined && t - last < RECORD_EVERY_MS) return;
    if (this.recent.size >= RECENT_MAX) this.recent.clear();
    this.recent.set(key, t);
    const set = net.isIP(address) === 6 ? 'agentblocked6' : 'agentblocked4';
    this.shell.run(`add element ${TABLE} ${set} { ${address} . tcp . ${port} }`).catch((e: Error) => {
      // The agent can fill the set itself (BLOCKED_SET_SIZE refused destinations); the kernel's own
      // updates stop there too. Not tampering: the block is still counted (stats).
      if (!SET_FULL.test(e.message)) return this.failed();
      if (!this.full) this.log("web gate: the agent's blocked set is full; later blocks are counted only");
      this.full = true;
    });
  }
}
