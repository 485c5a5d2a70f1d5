/**
 * The egress tests' world: a "runner" namespace and an "internet" namespace joined by a
 * veth pair with IPv4 and IPv6, the logging DNS server and HTTP/TCP servers in
 * "internet", and optionally a "container" namespace behind a bridge in "runner".
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe } from '@jest/globals';
import { Netns, canUseNetns, run, stop, veth } from '../../src/devkit/netns.js';
import {
  launcherDropIn,
  removeState,
  stateDir,
  type DaemonConfig,
  type DaemonReady,
  type DaemonState,
} from '../../src/rootd/protocol.js';
import { startDetached } from '../../src/platform/detached.js';
import { REPO_ROOT } from '../../src/devkit/run-action.js';
import { AGENT_UID_MAX, AGENT_UID_MIN } from '../../src/identity/user.js';

const HERE = dirname(fileURLToPath(import.meta.url));

export const DNS4 = '203.0.113.53';
export const DNS6 = '2001:db8:2::53';
export const FORGER = '203.0.113.66';
export const WEB4 = '203.0.113.10';
export const WEB6 = '2001:db8:2::10';
export const CHAIN4 = '203.0.113.20';
export const OTHER4 = '203.0.113.30';
export const OTHER6 = '2001:db8:2::30';
export const SHORT4 = '203.0.113.40';
export const EVIL4 = '203.0.113.50';
export const FORGED4 = '203.0.113.99';
export const REAL4 = '203.0.113.11';

export const ZONE = {
  'www.a.test': [
    { type: 'A', value: WEB4, ttl: 300 },
    { type: 'AAAA', value: WEB6, ttl: 300 },
  ],
  'a.test': [{ type: 'A', value: EVIL4 }],
  'a.test.evil.test': [{ type: 'A', value: EVIL4 }],
  'evila.test': [{ type: 'A', value: EVIL4 }],
  'secret.evil.test': [{ type: 'A', value: EVIL4 }],
  'alias.a.test': [{ type: 'CNAME', value: 'cdn.other.test' }],
  'cdn.other.test': [{ type: 'A', value: CHAIN4, ttl: 300 }],
  'short.a.test': [{ type: 'A', value: SHORT4, ttl: 1 }],
  'forged.a.test': [{ type: 'A', value: REAL4, ttl: 300 }],
  'txt.a.test': [{ type: 'TXT', value: 'hello' }],
  'direct.a.test': [{ type: 'A', value: WEB4 }],
  'ctr.a.test': [{ type: 'A', value: WEB4 }],
  'ctr.evil.test': [{ type: 'A', value: EVIL4 }],
};

export interface QueryLog {
  q?: string;
  type?: number;
  proto?: string;
  from?: string;
  /** The query's source port and id (UDP queries only). */
  port?: number;
  id?: number;
  ready?: boolean;
}

export class World {
  readonly runner: Netns;
  readonly internet: Netns;
  container?: Netns;
  private server?: ChildProcess;
  readonly queries: QueryLog[] = [];
  private readonly made: Netns[] = [];

  constructor(readonly tag: string) {
    const p = process.pid % 100000;
    this.runner = Netns.create(`egr${tag}${p}`, { resolvConf: `nameserver ${DNS4}\n` });
    this.made.push(this.runner);
    // `ip netns exec` mounts this over /etc/hosts: the tamper tests edit it, not the host's.
    // A copy of the host's, so the host's own name still resolves without DNS (sudo asks).
    writeFileSync(`/etc/netns/${this.runner.name}/hosts`, readFileSync('/etc/hosts'));
    this.internet = Netns.create(`egi${tag}${p}`);
    this.made.push(this.internet);
    veth(
      { ns: this.runner, dev: 'eth0', addresses: ['198.51.100.2/24', '2001:db8:1::2/64'] },
      { ns: this.internet, dev: 'up0', addresses: ['198.51.100.1/24', '2001:db8:1::1/64'] },
    );
    this.runner.route(['default', 'via', '198.51.100.1']);
    this.runner.route(['default', 'via', '2001:db8:1::1']);
    for (const a of [DNS4, FORGER, WEB4, CHAIN4, OTHER4, SHORT4, EVIL4, FORGED4, REAL4])
      this.internet.addAddress('lo', `${a}/32`);
    for (const a of [DNS6, WEB6, OTHER6]) this.internet.addAddress('lo', `${a}/128`);
    this.internet.route(['192.0.2.0/24', 'via', '198.51.100.2']);
    this.internet.route(['fd00:c0::/64', 'via', '2001:db8:1::2']);
  }

  /**
   * Starts the internet's servers and waits (bounded) until they listen. `extra` adds names
   * to the zone (a record's `later` is its answer from the second query on), and addresses
   * (on the internet's loopback, each with a web server).
   */
  async serve(
    extra: {
      zone?: Record<string, { type: string; value: string; ttl?: number; later?: string }[]>;
      http?: string[];
      /** Milliseconds a name's UDP answer is held (egress-internet.mjs). */
      delay?: Record<string, number>;
      /** Where the internet's forger takes datagrams to send from the DNS server's socket. */
      spoof?: { address: string; port: number };
    } = {},
  ): Promise<void> {
    for (const a of extra.http ?? []) this.internet.addAddress('lo', `${a}/32`);
    const cfg = {
      dns: [DNS4, DNS6],
      zone: { ...ZONE, ...extra.zone },
      forge: { 'forged.a.test': { from: FORGER, address: FORGED4 } },
      delay: extra.delay,
      spoof: extra.spoof,
      http: [WEB4, WEB6, CHAIN4, OTHER4, OTHER6, SHORT4, EVIL4, FORGED4, REAL4, ...(extra.http ?? [])],
      tcp: [
        { address: OTHER4, port: 853 },
        { address: OTHER4, port: 443 },
        { address: WEB4, port: 853 },
      ],
    };
    const child = this.internet.spawn([
      process.execPath,
      join(HERE, 'egress-internet.mjs'),
      JSON.stringify(cfg),
    ]);
    this.server = child;
    let partial = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('internet servers did not start in 10 s')), 10000);
      child.stdout!.on('data', (d: Buffer) => {
        const lines = (partial + d.toString()).split('\n');
        partial = lines.pop() ?? '';
        for (const l of lines) {
          const e = JSON.parse(l) as QueryLog;
          if (e.ready) {
            clearTimeout(timer);
            resolve();
          } else this.queries.push(e);
        }
      });
      child.on('exit', (code) => reject(new Error(`internet servers exited ${code}`)));
    });
  }

  /** A namespace behind bridge br0 in "runner", forwarding enabled, its resolver the old upstream. */
  addContainer(): Netns {
    const c = Netns.create(`egc${this.tag}${process.pid % 100000}`, { resolvConf: `nameserver ${DNS4}\n` });
    this.made.push(c);
    this.container = c;
    this.runner.bridge('br0', ['192.0.2.1/24', 'fd00:c0::1/64']);
    veth(
      { ns: this.runner, dev: 'vc0', addresses: [], bridge: 'br0' },
      { ns: c, dev: 'eth0', addresses: ['192.0.2.2/24', 'fd00:c0::2/64'] },
    );
    c.route(['default', 'via', '192.0.2.1']);
    c.route(['default', 'via', 'fd00:c0::1']);
    this.runner.sysctl('net.ipv4.ip_forward', '1');
    this.runner.sysctl('net.ipv6.conf.all.forwarding', '1');
    return c;
  }

  resolvConf(): string {
    return readFileSync(`/etc/netns/${this.runner.name}/resolv.conf`, 'utf8');
  }

  /**
   * The upstream's log for a name. The test's commands run synchronously, so the
   * server's log lines are read only once the test yields: wait for them first.
   */
  async asked(name: string): Promise<QueryLog[]> {
    await new Promise((r) => setTimeout(r, 250));
    return this.queries.filter((q) => q.q === name);
  }

  /** Stops the servers and the fence's daemon (by the pid it recorded), deletes everything made. */
  async destroy(fenceIds: string[]): Promise<void> {
    for (const id of fenceIds) {
      const file = join(stateDir(id), 'state.json');
      if (existsSync(file)) {
        const state = JSON.parse(readFileSync(file, 'utf8')) as Pick<DaemonState, 'pid'>;
        try {
          if (readFileSync(`/proc/${state.pid}/cmdline`, 'utf8').includes('daemon'))
            process.kill(state.pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
      // /run/cordon too when a fence made it and it is empty now, whichever fence that was.
      removeState(id);
      // With disable-sudo the fence left one sudoers rule (the launcher's); a job's post
      // without teardown keeps it, as on a runner that is thrown away after the job.
      rmSync(launcherDropIn(id), { force: true });
    }
    await stop(this.server);
    for (const ns of this.made.reverse()) ns.delete();
  }
}

/** Where the helpers below run a command: a namespace, or a user inside one. */
export type Runs = Pick<Netns, 'try'>;

/**
 * A uid of the agents' range no user has, from one that differs per test process (and per
 * `offset`, so test files running at once pick different ones).
 */
export function freeAgentUid(offset: number): number {
  const span = AGENT_UID_MAX - AGENT_UID_MIN + 1;
  for (let i = 0; i < span; i++) {
    const uid = AGENT_UID_MIN + ((process.pid + offset + i) % span);
    if (spawnSync('getent', ['passwd', String(uid)]).status !== 0) return uid;
  }
  throw new Error('no free uid in the agents range');
}

/**
 * The egress e2e files' `describe`: the real one when this machine has network namespaces,
 * nft, ip, dig, useradd, setpriv and `more` (commands in /usr/bin, such as `curl`); else
 * `describe.skip` with a warning, or, in CI (CI=true), an error. `name` is the test's
 * (`egress-sni`).
 */
export function egressSuite(name: string, more: string[] = []): typeof describe.skip {
  const tools = ['/usr/sbin/nft', '/usr/bin/dig', ...more.map((t) => `/usr/bin/${t}`)];
  const usable =
    canUseNetns() && [...tools, '/usr/sbin/useradd', '/usr/bin/setpriv'].every((f) => existsSync(f));
  const needs = `root, nft, ip, dig, ${more.map((t) => `${t}, `).join('')}useradd and setpriv`;
  if (!usable && process.env.CI === 'true') throw new Error(`${name} e2e: needs ${needs} (CI=true)`);
  if (!usable) console.warn(`${name} e2e skipped: needs ${needs}`);
  return usable ? describe : describe.skip;
}

/**
 * Starts egress-sites.mjs in `w.internet`: HTTP on port 80 and HTTPS (`cert`, `key`) on 443
 * of each of `addresses`, answering which site was asked for. `child` is there at once (for
 * the caller's cleanup); `ready` resolves once every server listens (at most 10 s).
 */
export function startSites(
  w: World,
  cfg: { addresses: string[]; cert: string; key: string },
): { child: ChildProcess; ready: Promise<void> } {
  const child = w.internet.spawn([process.execPath, join(HERE, 'egress-sites.mjs'), JSON.stringify(cfg)]);
  return { child, ready: untilReady(child, 'the sites') };
}

/**
 * Waits (at most 10 s) for `child` to print the line `ready`, handing each other non-empty
 * line to `line`; `what` names it in the errors (`the sites did not start in 10 s`).
 */
export function untilReady(
  child: ChildProcess,
  what: string,
  line: (l: string) => void = () => {},
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start in 10 s`)), 10000);
    let partial = '';
    child.stdout!.on('data', (b: Buffer) => {
      const lines = (partial + b.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) {
        if (l === 'ready') {
          clearTimeout(timer);
          resolve();
        } else if (l) line(l);
      }
    });
    child.on('exit', (code) => reject(new Error(`${what} exited ${code}`)));
  });
}

/**
 * Adds the Unix user `user` (its own group, no home, /bin/sh) on a free uid of the agents'
 * range (`freeAgentUid(offset)`); returns its uid and gid. The caller deletes it (userdel).
 */
export function addAgentUser(user: string, offset: number): { uid: number; gid: number } {
  const uid = freeAgentUid(offset);
  run(['useradd', '--uid', String(uid), '--user-group', '--no-create-home', '--shell', '/bin/sh', user]);
  return { uid, gid: Number(run(['id', '-g', user]).trim()) };
}

/** The elements of the fence's nft set `set` (inet cordon) in `w.runner`, as nft lists them. */
export function setElements(w: World, set: string): string {
  return w.runner.exec(['nft', 'list', 'set', 'inet', 'cordon', set]);
}

/** Runs commands in `ns` as uid:gid, with no supplementary groups. */
export function asUid(ns: Netns, uid: number, gid: number): Runs {
  return {
    try: (argv, timeoutMs) =>
      ns.try(['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', ...argv], timeoutMs),
  };
}

/** dig inside a namespace; returns the status and the answer lines. */
export function dig(
  ns: Runs,
  name: string,
  opts: { server?: string; type?: string; tcp?: boolean } = {},
): { status: string; answers: string[]; raw: string } {
  const r = ns.try(
    [
      'dig',
      `@${opts.server ?? '127.0.0.1'}`,
      '+time=2',
      '+tries=1',
      ...(opts.tcp ? ['+tcp'] : []),
      '+noall',
      '+comments',
      '+answer',
      name,
      opts.type ?? 'A',
    ],
    10000,
  );
  const status = /status: (\w+)/.exec(r.stdout)?.[1] ?? `failed(${r.code})`;
  const answers = r.stdout
    .split('\n')
    .filter((l) => l && !l.startsWith(';'))
    .map((l) => l.split(/\s+/).pop() ?? '');
  return { status, answers, raw: r.stdout };
}

/** A TCP connect from inside a namespace: 'open', or the error code, and how long it took. */
export function connect(ns: Runs, address: string, port: number): { result: string; ms: number } {
  const script = `const s=require('net').connect({host:process.argv[1],port:+process.argv[2]});const t=Date.now();s.setTimeout(4000,()=>{console.log('TIMEOUT '+(Date.now()-t));process.exit(0)});s.on('connect',()=>{console.log('open '+(Date.now()-t));process.exit(0)});s.on('error',e=>{console.log(e.code+' '+(Date.now()-t));process.exit(0)})`;
  const out = ns.try([process.execPath, '-e', script, address, String(port)], 10000).stdout.trim();
  const [result, ms] = out.split(' ');
  return { result: result ?? out, ms: Number(ms) };
}

/** curl a URL by name inside a namespace (its resolver is the proxy); returns the body or the exit code. */
export function fetchUrl(ns: Runs, url: string, family?: 4 | 6): string {
  const r = ns.try(['curl', '-s', '-m', '4', ...(family ? [`-${family}`] : []), '-g', url], 10000);
  return r.code === 0 ? r.stdout.trim() : `curl exit ${r.code}`;
}

/** The bundled egress daemon. */
export const DAEMON = join(REPO_ROOT, 'dist', 'egress', 'daemon.js');

/**
 * Starts the bundled daemon inside `w.runner` with a hand-written config (`cfg` over the
 * defaults: block, no static IPs, private answers allowed, the zone's resolver, root's
 * user), written to `file`; returns its id for `World.destroy`. `around` goes between the
 * namespace and node (a command that runs its last arguments, such as `unshare ... sh -c`).
 */
export async function startDaemon(
  w: World,
  file: string,
  cfg: Pick<DaemonConfig, 'id' | 'domains' | 'agentDomains'> & Partial<DaemonConfig>,
  around: string[] = [],
): Promise<string> {
  const full: DaemonConfig = {
    policy: 'block',
    ips: [],
    privateAnswers: 'allow',
    upstream: DNS4,
    minTtl: 60,
    disableSudo: false,
    disableDocker: false,
    user: 'root',
    ...cfg,
  };
  writeFileSync(file, JSON.stringify(full), { mode: 0o600 });
  await startDetached<DaemonReady>({
    name: 'the daemon',
    argv: [...w.runner.wrap, ...around, process.execPath, DAEMON, 'start', file],
    timeoutMs: 20000,
  });
  return full.id;
}
