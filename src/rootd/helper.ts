/**
 * The root helper: a root child kept before the daemon gives up root (the same script,
 * `daemon.js helper <dir> <pid file> <proxy uid> <client uid> <client gid>`). It finds the process behind a refused
 * name or a blocked destination, writes the proxy's resolv.conf back when someone changes
 * it, and serves `run`'s cgroups (cgroups.ts). It exits when the daemon closes its stdin.
 *
 * Its text protocol, one line each way:
 *  - helper to daemon, first: `ready` (its code is loaded: the daemon applies the lockdown
 *    only then, since the node and script it was started from are the runner user's files);
 *    then `listed` (the blocked sets were listed once its trace monitor listened: the
 *    daemon says READY only after, so those `nft` starts are part of setup);
 *  - daemon to helper: `resolv` (write `<dir>/resolv.conf` back to /etc/resolv.conf, in
 *    place, as bind mounts need); `who {"key","q"}` (find the process behind query `q`);
 *  - helper to daemon: `who {"key","process"}` (found it); `cgroup {CgroupEnd}` (how a
 *    cgroup made for `run` ended); `note "text"` (for the tamper record). Blocked
 *    destinations are found by the helper itself (watchBlocked) and answered as `who`
 *    lines keyed by `destKey`.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parentOf } from '../platform/proc-name.js';
import { readUserFile } from '../platform/user-file.js';
import type { Client } from './access.js';
import { parseBlocked, parseTracedDest, spawnMonitor, TABLE, type BlockedEntry } from '../fence/nftshell.js';
import { whoAsked, type WhoQuery } from '../fence/who.js';
import { serveCgroups } from './cgroups.js';
import type { CgroupEnd } from './protocol.js';

/** Lookups (refusals, or RETRY_MS apart for a destination) before giving up on a process. */
const WHO_TRIES = 3;
const RETRY_MS = 300;
/** Destination lookups a round at most (each reads every process's fds), and how many may wait. */
const WHO_BUDGET = 8;
const MAX_PENDING = 4096;
/** The listing of the blocked sets while the trace monitor is gone. */
const FALLBACK_POLL_MS = 1000;
/**
 * The first listing waits for the trace monitor to listen (its socket looked for every
 * SUBSCRIBE_POLL_MS), at most SUBSCRIBE_WAIT_MS; then the sets are listed anyway.
 */
const SUBSCRIBE_POLL_MS = 25;
const SUBSCRIBE_WAIT_MS = 1000;
/** NETLINK_NETFILTER, and NFNLGRP_NFTRACE (group 9) as a bit of /proc/net/netlink's Groups. */
const NETLINK_NETFILTER = 12;
const NFTRACE_GROUP_BIT = 1 << 8;

/**
 * The pids that hold a netfilter netlink socket receiving trace events, from the text of
 * /proc/net/netlink (the reader's network namespace): `nft monitor trace`'s socket is
 * bound to its pid, with NFNLGRP_NFTRACE among its groups, once it listens.
 */
export function traceListeners(netlink: string): number[] {
  const pids: number[] = [];
  for (const line of netlink.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || Number(f[1]) !== NETLINK_NETFILTER) continue;
    if (parseInt(f[3], 16) & NFTRACE_GROUP_BIT && Number(f[2]) > 0) pids.push(Number(f[2]));
  }
  return pids;
}

/** What watchBlocked runs; tests give their own. */
export interface BlockedWatchDeps {
  /** Starts `nft monitor trace` (nftshell.ts spawnMonitor: a shell, nft its child). */
  monitor: () => Pick<ChildProcess, 'pid' | 'stdout' | 'kill'>;
  /** Whether the monitor started under the shell with this pid listens yet. */
  listening: (shellPid: number | undefined) => boolean;
  /** `nft list set` of one blocked set: its text, or '' when it failed. */
  listSet: (set: string) => Promise<string>;
}

function readOr(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

const blockedWatchDeps: BlockedWatchDeps = {
  monitor: () => spawnMonitor('trace'),
  // Its nft is the shell's child: a listener whose parent is that shell.
  listening: (shellPid) =>
    shellPid !== undefined &&
    traceListeners(readOr('/proc/net/netlink')).some((pid) => parentOf(pid) === shellPid),
  listSet: (set) =>
    new Promise<string>((resolve) =>
      execFile('nft', ['list', 'set', ...TABLE.split(' '), set], { timeout: 5000 }, (_e, out) =>
        resolve(out ?? ''),
      ),
    ),
};

/** The key a blocked destination's process is reported under. */
export function destKey(b: { address: string; protocol: string; port: number }): string {
  return `dest ${b.address} ${b.protocol} ${b.port}`;
}

/** The daemon's side: starts the helper and keeps what it answers. */
export class RootHelper {
  /** Who asked, by `src <source key>` or destKey: the first process found for each. */
  readonly askers = new Map<string, string>();
  /**
   * How each cgroup made for a non-root run ended; an orphaned one means run was killed
   * while its command ran, so what the ledger says of that command cannot be trusted.
   */
  readonly runCgroups: CgroupEnd[] = [];
  private readonly nameTries = new Map<string, number>();
  private readonly child: ChildProcess;
  private closing = false;
  private readonly up: Promise<void>;
  private readonly firstListing: Promise<void>;

  constructor(opts: {
    dir: string;
    pidFile?: string;
    proxyUid: number;
    /** Who may use its cgroup socket (access.ts). */
    client: Client;
    /** Called for each cgroup run's process left behind (run was killed while its command ran). */
    orphaned: (e: CgroupEnd) => void;
    /** Called with what the helper has to report of itself (its trace monitor ended). */
    noted: (what: string) => void;
    /** Called once if the helper ends before `close` (how it ended). */
    died: (how: string) => void;
  }) {
    const { dir, pidFile, proxyUid, client } = opts;
    const argv = ['helper', dir, pidFile ?? '', String(proxyUid), String(client.uid), String(client.gid)];
    this.child = spawn(process.execPath, [process.argv[1], ...argv], {
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    let up: () => void = () => undefined;
    let listed: () => void = () => undefined;
    this.firstListing = new Promise<void>((resolve) => (listed = resolve));
    let failed: (e: Error) => void = () => undefined;
    this.up = new Promise<void>((resolve, reject) => {
      up = resolve;
      failed = reject;
    });
    // Settled by then when setup has awaited it; never an unhandled rejection otherwise.
    this.up.catch(() => undefined);
    this.child.on('error', (e) => failed(new Error(`the root helper could not start: ${e.message}`)));
    this.child.on('exit', (code, signal) => {
      const how = signal ? `was killed (${signal})` : `exited (code ${code})`;
      failed(new Error(`the root helper ${how} before it was ready`));
      if (!this.closing) opts.died(how);
    });
    this.child.stdin!.on('error', () => undefined);
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      if (line === 'ready') {
        up();
        return;
      }
      if (line === 'listed') {
        listed();
        return;
      }
      if (line.startsWith('cgroup ')) {
        try {
          const e = JSON.parse(line.slice(7)) as CgroupEnd;
          if (this.runCgroups.length < 256) this.runCgroups.push(e);
          if (e.end === 'orphaned') opts.orphaned(e);
        } catch {
          // A torn line.
        }
        return;
      }
      if (line.startsWith('note ')) {
        try {
          opts.noted(String(JSON.parse(line.slice(5))));
        } catch {
          // A torn line.
        }
        return;
      }
      if (!line.startsWith('who ')) return;
      try {
        const r = JSON.parse(line.slice(4)) as { key: string; process: string };
        if (r.process && !this.askers.has(r.key) && this.askers.size < 8192)
          this.askers.set(r.key, r.process);
      } catch {
        // A torn line: nothing learned.
      }
    });
  }

  /** Resolves once the helper has loaded its code and said `ready`; rejects after `ms` or when it ends first. */
  async loaded(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the root helper was not ready within ${ms / 1000} s`)), ms);
    });
    try {
      await Promise.race([this.up, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Resolves once the helper has listed the blocked sets the first time (as soon as its
   * trace monitor listens), or after `ms` (false then): the listing only names processes,
   * so setup goes on without it.
   */
  async blockedListed(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    try {
      return await Promise.race([this.firstListing.then(() => true), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Asks who is behind a source of refused names (refusals.ts sourceKey; a few times at most). */
  askSource(source: string, from: { proto: 'udp' | 'tcp'; port: number }): void {
    const key = `src ${source}`;
    const n = this.nameTries.get(key) ?? 0;
    if (this.askers.has(key) || n >= WHO_TRIES || this.nameTries.size > 8192) return;
    this.nameTries.set(key, n + 1);
    const q: WhoQuery = { kind: 'dns', ...from };
    this.child.stdin!.write(`who ${JSON.stringify({ key, q })}\n`);
  }

  /** Has the proxy's resolv.conf written back. */
  putResolvBack(): void {
    this.child.stdin!.write('resolv\n');
  }

  /** Ends the helper (it kills what is left in run's cgroups first). */
  close(): void {
    this.closing = true;
    this.child.stdin!.end();
  }
}

type BlockedDest = Omit<BlockedEntry, 'packets'>;

/** A pid and a newline; more than this is no pid file `run` wrote. */
const MAX_PID_FILE = 64;

/**
 * The pid in `$RUNNER_TEMP/cordon/agent.pid`: a file the runner user (and, with
 * `user: runner`, the agent) can replace, so it is read as one (no link followed, no
 * FIFO waited on, a regular file of a few bytes only); anything else counts as no pid.
 */
function rootPid(pidFile: string | undefined): number | undefined {
  if (!pidFile) return undefined;
  let text: string;
  try {
    text = readUserFile(pidFile, MAX_PID_FILE);
  } catch {
    return undefined;
  }
  const n = Number(text.trim());
  return Number.isInteger(n) && n > 1 ? n : undefined;
}

/** The helper's side (root): answers the daemon on stdout until its stdin closes. */
export function serveHelper(
  dir: string,
  pidFile: string | undefined,
  proxyUid: number | undefined,
  client: Client,
): void {
  const reply = (key: string, q: WhoQuery): boolean => {
    let found: string | undefined;
    try {
      found = whoAsked(q, rootPid(pidFile));
    } catch {
      found = undefined;
    }
    if (found) process.stdout.write(`who ${JSON.stringify({ key, process: found })}\n`);
    return found !== undefined;
  };
  createInterface({ input: process.stdin })
    .on('line', (line) => {
      if (line === 'resolv') {
        try {
          writeFileSync('/etc/resolv.conf', readFileSync(join(dir, 'resolv.conf')));
        } catch {
          // The daemon records the change either way.
        }
      } else if (line.startsWith('who ')) {
        try {
          const { key, q } = JSON.parse(line.slice(4)) as { key: string; q: WhoQuery };
          reply(key, q);
        } catch {
          // A torn line from the daemon: no answer, the proxy asks again on the next refusal.
        }
      }
    })
    .on('close', () => {
      // Whatever run left in a cgroup made here is killed, and the helper's mount undone.
      const exit = setTimeout(() => process.exit(0), 3000);
      void cgroups.then((stop) => {
        stop?.();
        clearTimeout(exit);
        process.exit(0);
      });
    });
  // Cgroups for a `run` step that is not root (see cgroups.ts).
  const cgroups = serveCgroups(dir, {
    proxyUid,
    client,
    ended: (e) => process.stdout.write(`cgroup ${JSON.stringify(e)}\n`),
  }).catch(() => undefined);
  // Everything the helper runs is loaded (the bundle is one file): the daemon may lock down.
  process.stdout.write('ready\n');
  // The daemon is READY only once the blocked sets were listed the first time.
  void watchBlocked(
    (b) => {
      const key = destKey(b);
      return reply(key, { kind: 'dest', proto: b.protocol, address: b.address, port: b.port });
    },
    (what) => process.stdout.write(`note ${JSON.stringify(what)}\n`),
  )
    .catch(() => undefined)
    .then(() => process.stdout.write('listed\n'));
}

/**
 * Blocked destinations: the kernel records them in the blocked sets without user space
 * and sends no event for an element it adds itself, so the refuse chains trace a TCP or
 * UDP packet to a destination not yet recorded (firewall.ts) and one long-lived `nft
 * monitor trace` hands it over at once, while its socket is most likely still open. A
 * destination whose process is not found is looked for again a few times, RETRY_MS
 * apart. If the monitor ends, the sets are listed every FALLBACK_POLL_MS instead, and
 * `note` says so (the daemon records it). `look` returns true when it found the process.
 * Resolves once the sets were listed the first time, as soon as the monitor listens.
 */
export async function watchBlocked(
  look: (b: BlockedDest) => boolean,
  note: (what: string) => void,
  deps: BlockedWatchDeps = blockedWatchDeps,
): Promise<void> {
  /** Lookups made per destination; a destination seen again after WHO_TRIES is left alone. */
  const tries = new Map<string, number>();
  /** Destinations to look for, with when. */
  const due = new Map<string, { b: BlockedDest; at: number }>();
  let timer: NodeJS.Timeout | undefined;
  const drain = (): void => {
    timer = undefined;
    const now = Date.now();
    let budget = WHO_BUDGET;
    let next = Infinity;
    for (const [key, d] of due) {
      if (d.at > now || budget === 0) {
        next = Math.min(next, budget === 0 ? now + RETRY_MS : d.at);
        continue;
      }
      budget--;
      const n = (tries.get(key) ?? 0) + 1;
      const found = look(d.b);
      tries.set(key, found ? WHO_TRIES : n);
      if (found || n >= WHO_TRIES) due.delete(key);
      else d.at = now + RETRY_MS;
    }
    if (due.size) schedule(Math.max(next - now, 0));
  };
  const schedule = (ms: number): void => {
    timer ??= setTimeout(drain, ms);
    timer.unref();
  };
  const seen = (b: BlockedDest): void => {
    const key = destKey(b);
    if (due.has(key) || (tries.get(key) ?? 0) >= WHO_TRIES || due.size >= MAX_PENDING) return;
    if (tries.size > 4096) tries.clear();
    due.set(key, { b, at: 0 });
    schedule(0);
  };
  // The set of destinations already found is listed as the packets arrive, so what was
  // blocked before the monitor listened (and anything it missed) comes from a listing:
  // once the monitor listens, then every FALLBACK_POLL_MS if the monitor ends.
  let busy = false;
  let lostAt = 0;
  const list = async (): Promise<void> => {
    if (busy) return;
    busy = true;
    const sets = ['blocked4', 'blocked6', 'agentblocked4', 'agentblocked6'];
    const outs = await Promise.all(sets.map((set) => deps.listSet(set)));
    busy = false;
    for (const b of parseBlocked(outs.join('\n'))) if (b.protocol === 'tcp' || b.protocol === 'udp') seen(b);
  };
  const monitor = deps.monitor();
  createInterface({ input: monitor.stdout! })
    .on('line', (line) => {
      const b = parseTracedDest(line);
      if (b) seen(b);
      // nft says when the kernel dropped events (a burst of traced packets): what they
      // carried is in the sets, so they are listed once (at most every FALLBACK_POLL_MS).
      else if (/lost some netlink events/i.test(line) && Date.now() - lostAt >= FALLBACK_POLL_MS) {
        lostAt = Date.now();
        void list();
      }
    })
    .on('close', () => {
      // Its shell, still ours, goes too (it would otherwise signal a pid nft no longer holds).
      monitor.kill();
      note(
        `the root helper's nft monitor trace ended: blocked destinations are listed every ${FALLBACK_POLL_MS / 1000} s from then on, so the process behind a short-lived connection may be missed`,
      );
      setInterval(() => void list(), FALLBACK_POLL_MS).unref();
    });
  // The first listing as soon as the monitor listens, not a fixed time after: the helper
  // says `ready` only after it, so its four `nft` starts are part of setup and not on the
  // 2 cores beside the proxy's first queries (bench/RESULTS-egress.md, 2026-12-04).
  const until = Date.now() + SUBSCRIBE_WAIT_MS;
  while (!deps.listening(monitor.pid) && Date.now() < until)
    await new Promise((r) => setTimeout(r, SUBSCRIBE_POLL_MS));
  await list();
}
