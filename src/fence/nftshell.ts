/**
 * One long-lived `nft -e -i` child, fed lines on stdin: a set update costs a netlink
 * transaction, not a process spawn. `nft -i` prints nothing that marks the end of a
 * command, so each request is followed by a sentinel element added to the `ack` set;
 * its echo closes the request, and any `Error:` before it fails the request.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { CordonError } from '../platform/errors.js';

export const TABLE = 'inet cordon';
const SWEEP_GRACE_MS = 5000;
/** Sentinel numbers a shell goes through before reusing one (the `ack` set is an inet_service). */
export const ACK_RANGE = 32767;

interface Request {
  seq: number;
  resolve: (out: string) => void;
  reject: (e: Error) => void;
  lines: string[];
}

export class NftShell {
  private readonly child: ChildProcess;
  private readonly queue: Request[] = [];
  private seq = 0;
  private partial = '';
  private closed: Error | undefined;

  /**
   * `ackBase` keeps the sentinels of two shells on one table apart: each shell numbers its
   * own from ackBase + 1 to ackBase + ACK_RANGE (an element that is already there would
   * not be echoed, and its request never closed).
   */
  constructor(
    nft = 'nft',
    private readonly ackBase = 0,
  ) {
    // stderr joined to stdout so an error is read in order with the echoes around it.
    this.child = spawn('/bin/sh', ['-c', 'exec "$0" -e -i 2>&1', nft], { stdio: ['pipe', 'pipe', 'ignore'] });
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (d: string) => this.read(d));
    this.child.stdin!.on('error', () => undefined);
    this.child.on('exit', (code, signal) => this.fail(new Error(`nft exited (${signal ?? code})`)));
    this.child.on('error', (e) => this.fail(e));
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Runs one line (several commands joined with `;` are one transaction); resolves with what nft printed. */
  run(line: string): Promise<string> {
    if (this.closed) return Promise.reject(this.closed);
    const seq = (this.seq = (this.seq % ACK_RANGE) + 1) + this.ackBase;
    return new Promise((resolve, reject) => {
      this.queue.push({ seq, resolve, reject, lines: [] });
      this.child.stdin!.write(
        `${line.replace(/\n/g, ' ')}\nadd element ${TABLE} ack { ${seq} timeout 1s }\n`,
      );
    });
  }

  private read(chunk: string): void {
    const text = this.partial + chunk;
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) {
      const head = this.queue[0];
      if (!head) continue;
      const ack = /^add element inet cordon ack \{ (\d+) /.exec(line);
      if (ack && Number(ack[1]) === head.seq) {
        this.queue.shift();
        const out = head.lines.join('\n');
        const err = head.lines.findIndex((l) => l.startsWith('Error:'));
        if (err >= 0) head.reject(new Error(head.lines.slice(err).join('\n')));
        else head.resolve(out);
        continue;
      }
      if (!line.startsWith('# new generation')) head.lines.push(line);
    }
  }

  private fail(e: Error): void {
    this.closed ??= e;
    for (const r of this.queue.splice(0)) r.reject(e);
  }

  close(): void {
    this.child.stdin!.end();
  }
}

/**
 * Keeps answered addresses in a pair of sets: `allow4`/`allow6` for the runner's proxy,
 * `agent4`/`agent6` for the agent's. Updates are batched: while one line is
 * with nft, new addresses wait and go together in the next. An address already in the
 * set for long enough costs nothing. A refreshed element is written with 25% extra time,
 * so repeated lookups of a name do not each cost a set update. An address whose element
 * is still on its way to the kernel is not yet "in": a second answer carrying it waits
 * for the same update as the first.
 */
/** What a set of allowed addresses needs of its shell (warmup.ts gives one that writes nothing). */
export type SetShell = Pick<NftShell, 'run'>;

export class AllowSets {
  private readonly expiry = new Map<string, number>();
  /** Addresses written but not yet confirmed by nft, with the update that carries them. */
  private readonly unconfirmed = new Map<string, Promise<void>>();
  private batch: { family: 4 | 6; address: string; seconds: number; refresh: boolean }[] = [];
  private next: Deferred | undefined;
  private inFlight = false;
  /** Set updates written and addresses added, for the report. */
  updates = 0;

  constructor(
    private readonly shell: SetShell,
    private readonly minTtl: number,
    private readonly now: () => number = Date.now,
    /** The IPv4 and IPv6 sets this instance fills. */
    readonly names: readonly [string, string] = ['allow4', 'allow6'],
  ) {}

  /**
   * Undefined when every address is already in its set for at least max(ttl - age,
   * min-ttl) seconds from now; else a promise for the update(s) that put them there.
   * `ageSeconds` is how long a cached answer has been held (its TTLs count down by that).
   */
  ensure(
    v4: readonly { address: string; ttl: number }[],
    v6: readonly { address: string; ttl: number }[],
    ageSeconds = 0,
  ): Promise<void> | undefined {
    const now = this.now();
    let wait: Promise<void> | undefined;
    let more: Promise<void>[] | undefined;
    for (let f = 0; f < 2; f++) {
      const list = f === 0 ? v4 : v6;
      for (let i = 0; i < list.length; i++) {
        const { address, ttl } = list[i];
        const seconds = Math.max(ttl - ageSeconds, this.minTtl);
        const until = this.expiry.get(address);
        let p: Promise<void> | undefined;
        if (until !== undefined && until >= now + seconds * 1000) {
          p = this.unconfirmed.get(address);
          if (!p) continue;
        } else {
          const write = Math.ceil(seconds * 1.25);
          this.expiry.set(address, now + write * 1000);
          this.next ??= deferred();
          p = this.next.promise;
          this.unconfirmed.set(address, p);
          this.batch.push({ family: f === 0 ? 4 : 6, address, seconds: write, refresh: until !== undefined });
        }
        if (!wait) wait = p;
        else if (p !== wait) (more ??= []).push(p);
      }
    }
    if (this.batch.length && !this.inFlight) this.flush();
    if (!wait || !more) return wait;
    return Promise.all([wait, ...more]).then(() => undefined);
  }

  private flush(): void {
    const batch = this.batch;
    const d = this.next!;
    this.batch = [];
    this.next = undefined;
    this.inFlight = true;
    this.updates++;
    const cmds: string[] = [];
    for (const family of [4, 6] as const) {
      const set = family === 4 ? this.names[0] : this.names[1];
      const items = batch.filter((b) => b.family === family);
      if (!items.length) continue;
      const elems = items.map((b) => `${b.address} timeout ${b.seconds}s`).join(', ');
      const refresh = items.filter((b) => b.refresh).map((b) => b.address);
      // The kernel keeps an element's old timeout on a plain add; delete and re-add in
      // the same transaction (the first add makes the delete safe if it already expired).
      if (refresh.length) {
        cmds.push(
          `add element ${TABLE} ${set} { ${elems} }`,
          `delete element ${TABLE} ${set} { ${refresh.join(', ')} }`,
        );
      }
      cmds.push(`add element ${TABLE} ${set} { ${elems} }`);
    }
    const settle = (): void => {
      for (const b of batch)
        if (this.unconfirmed.get(b.address) === d.promise) this.unconfirmed.delete(b.address);
    };
    this.shell.run(cmds.join('; ')).then(
      () => {
        settle();
        d.resolve();
        this.done();
      },
      (e: Error) => {
        settle();
        for (const b of batch) this.expiry.delete(b.address);
        d.reject(e);
        this.done();
      },
    );
  }

  private done(): void {
    this.inFlight = false;
    if (this.batch.length) this.flush();
  }

  /**
   * Puts every address still known back in its set, with the time it has left (the table
   * was loaded again, empty). Clients keep an answer for its TTL, and the proxy serves
   * cached answers without a new set update while the address is known: without this an
   * allowed name stays unreachable until its answer runs out. Resolves with how many
   * addresses went back. Answers carrying one of them wait for the same update.
   */
  refill(): Promise<number> {
    const now = this.now();
    let count = 0;
    for (const [address, until] of this.expiry) {
      const seconds = Math.ceil((until - now) / 1000);
      // One already waiting for the next update goes in with it.
      if (seconds <= 0 || (this.next && this.unconfirmed.get(address) === this.next.promise)) continue;
      this.next ??= deferred();
      this.unconfirmed.set(address, this.next.promise);
      this.batch.push({ family: address.includes(':') ? 6 : 4, address, seconds, refresh: false });
      count++;
    }
    if (!count) return Promise.resolve(0);
    const p = this.next!.promise;
    if (!this.inFlight) this.flush();
    return p.then(() => count);
  }

  /**
   * Forgets addresses whose element has expired, a few seconds late: the kernel's timeout
   * starts a little after ours, and an element still listed must still be known as ours.
   */
  sweep(): void {
    const now = this.now();
    for (const [a, t] of this.expiry) if (t + SWEEP_GRACE_MS <= now) this.expiry.delete(a);
  }

  /** True when the proxy added this address (and it has not long expired). */
  has(address: string): boolean {
    return this.expiry.has(address);
  }

  get size(): number {
    return this.expiry.size;
  }
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (e: Error) => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Every update's promise goes to at least one caller; this keeps a rejection that no
  // later caller waits for from counting as unhandled.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

export interface BlockedEntry {
  address: string;
  protocol: string;
  port: number;
  packets: number;
}

/** Parses `list set` output of the blocked sets (`addr . proto . port counter packets N ...`). */
export function parseBlocked(text: string): BlockedEntry[] {
  const out: BlockedEntry[] = [];
  const re = /([0-9a-fA-F.:]+) \. (\w+) \. (\d+) counter packets (\d+)/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    out.push({ address: m[1], protocol: m[2], port: Number(m[3]), packets: Number(m[4]) });
  }
  return out;
}

/**
 * The destination of a packet line of `nft monitor trace` from Cordon's refuse chains
 * (`trace id … inet cordon refuse packet: oif … ip daddr A … udp dport P …`), keyed as
 * the blocked sets key it; undefined for any other line.
 */
export function parseTracedDest(line: string): Omit<BlockedEntry, 'packets'> | undefined {
  if (!/^trace id \S+ inet cordon (agent_)?refuse packet: /.test(line)) return undefined;
  const address = /\bip6? daddr ([0-9a-fA-F.:]+) /.exec(line)?.[1];
  const port = /\b(tcp|udp) dport (\d+)\b/.exec(line);
  if (!address || !port) return undefined;
  return { address, protocol: port[1], port: Number(port[2]) };
}

export function nftError(what: string, e: unknown): CordonError {
  return new CordonError({
    what,
    why: `nft said: ${e instanceof Error ? e.message : String(e)}`.slice(0, 2000),
    fix: 'check allowed-ips for overlapping networks and that the kernel has nf_tables; the host was left as it was',
  });
}

/**
 * A long-lived `nft monitor <what>` whose stdout is a pipe only nft holds (so it ends when
 * nft does), under a shell that ends nft when our end of its stdin closes (we died): a
 * monitor in a namespace nobody changes would otherwise never notice.
 */
export function spawnMonitor(what: 'ruleset' | 'trace'): ChildProcess {
  const monitor = spawn(
    '/bin/sh',
    ['-c', `exec 3>&1 >/dev/null; nft monitor ${what} >&3 3>&- & m=$!; exec 3>&-; read _; kill $m`],
    { stdio: ['pipe', 'pipe', 'ignore'] },
  );
  monitor.on('error', () => undefined);
  monitor.stdin!.on('error', () => undefined);
  return monitor;
}
