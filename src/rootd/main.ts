/**
 * The egress daemon, run as root: `daemon.js start <config.json>` binds the proxy, loads
 * the table, points the resolver at the proxy, applies the lockdown, then gives up root
 * for the proxy's own user (its `nft -i` child stays root) and prints one line,
 * `READY {json}` or `ERROR {json}`, for the action that started it. Any failure before
 * READY undoes everything done so far. `daemon.js teardown <id>` removes it all.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { createInterface } from 'node:readline';
import net, { isIP } from 'node:net';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { describeError } from '../platform/errors.js';
import {
  LEDGER_COPY,
  stateDir,
  STATE_ROOT,
  type DaemonConfig,
  type DaemonReport,
  type DaemonState,
} from './protocol.js';
import { applyRuleset, execSync, removeTable, renderRuleset } from '../fence/firewall.js';
import { disableDocker, disableSudo, restoreLockdown, type LockdownBackup } from '../fence/lockdown.js';
import { AllowSets, NftShell, parseBlocked, TABLE, type BlockedEntry } from '../fence/nftshell.js';
import { DomainMatcher } from '../fence/policy.js';
import { BUFFER_BYTES, DnsProxy } from '../fence/proxy.js';
import { cgroupMountDir, rmdirQuiet, serveCgroups, type CgroupEnd } from './cgroups.js';
import { whoAsked, type WhoQuery } from '../fence/who.js';
import {
  detectUpstreams,
  hostResolved,
  pointResolver,
  pointSystemdResolved,
  restoreResolver,
  restoreSystemdResolved,
  type ResolverBackup,
} from '../fence/resolver.js';

export const DNS_USER = 'cordon-dns';
const CHAINS = ['output', 'forward', 'decide', 'refuse', 'dns_redirect', 'dns_input'];

function ensureUser(name: string): { uid: number; gid: number } {
  if (execSync(['id', '-u', name]).code !== 0) {
    const r = execSync([
      'useradd',
      '--system',
      '--no-create-home',
      '--home-dir',
      '/nonexistent',
      '--shell',
      '/usr/sbin/nologin',
      name,
    ]);
    if (r.code !== 0) throw new Error(`could not create the system user ${name}: ${r.stderr.trim()}`);
  }
  return {
    uid: Number(execSync(['id', '-u', name]).stdout.trim()),
    gid: Number(execSync(['id', '-g', name]).stdout.trim()),
  };
}

function bindUdp(type: 'udp4' | 'udp6', address: string): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket({
      type,
      ipv6Only: type === 'udp6',
      reuseAddr: true,
      recvBufferSize: BUFFER_BYTES,
      sendBufferSize: BUFFER_BYTES,
    });
    s.once('error', reject);
    s.bind(53, address, () => {
      s.off('error', reject);
      resolve(s);
    });
  });
}

function listenTcp(host: string, ipv6Only: boolean): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen({ port: 53, host, ipv6Only }, () => {
      s.off('error', reject);
      resolve(s);
    });
  });
}

interface Listeners {
  udp4: dgram.Socket;
  tcp4: net.Server;
  udp6?: dgram.Socket;
  tcp6?: net.Server;
  /** Port 53 on every address (needed for containers' redirected DNS), or loopback only. */
  wildcard: boolean;
  closers: (() => void)[];
}

/**
 * Port 53 on every address, so the bridge redirect lands on the proxy; when another
 * server already holds port 53 on some address (systemd-resolved's stub on 127.0.0.53),
 * the wildcard bind fails and the proxy falls back to loopback only.
 */
async function bindListeners(log: (l: string) => void): Promise<Listeners> {
  const attempt = async (v4: string, v6: string): Promise<Listeners> => {
    const closers: (() => void)[] = [];
    try {
      const udp4 = await bindUdp('udp4', v4);
      closers.push(() => udp4.close());
      const tcp4 = await listenTcp(v4, false);
      closers.push(() => tcp4.close());
      let udp6: dgram.Socket | undefined;
      let tcp6: net.Server | undefined;
      try {
        udp6 = await bindUdp('udp6', v6);
        closers.push(() => udp6?.close());
        tcp6 = await listenTcp(v6, true);
        closers.push(() => tcp6?.close());
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE') throw e;
        log(`no IPv6 listener: ${describeError(e)}`);
      }
      return { udp4, tcp4, udp6, tcp6, wildcard: v4 === '0.0.0.0', closers };
    } catch (e) {
      for (const c of closers) c();
      throw e;
    }
  };
  try {
    return await attempt('0.0.0.0', '::');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    log(`port 53 is taken on some address (${describeError(e)}); listening on loopback only`);
    return attempt('127.0.0.1', '::1');
  }
}

async function start(configPath: string): Promise<void> {
  const started = Date.now();
  const cfg = JSON.parse(readFileSync(configPath, 'utf8')) as DaemonConfig;
  const dir = stateDir(cfg.id);
  mkdirSync(STATE_ROOT, { recursive: true, mode: 0o755 });
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { mode: 0o755 });
  const logFd = openSync(join(dir, 'daemon.log'), 'a', 0o644);
  const log = (line: string): void => {
    writeSync(logFd, `${new Date().toISOString()} ${line}\n`);
  };

  let applied = false;
  let resolver: ResolverBackup | undefined;
  let resolvedDropIn: string | undefined;
  const lockdown: LockdownBackup = { sudoers: [], groupsLeft: [] };
  const closers: (() => void)[] = [];
  try {
    const { uid, gid } = ensureUser(DNS_USER);
    const upstreams = cfg.upstream ? [cfg.upstream] : detectUpstreams();
    // Where systemd-resolved runs: pointed at the proxy and its stub off before the bind.
    resolvedDropIn = pointSystemdResolved(hostResolved, log);
    const l = await bindListeners(log);
    closers.push(...l.closers);
    const { udp4, tcp4, udp6, tcp6 } = l;

    applyRuleset(
      renderRuleset({ policy: cfg.policy, staticAllowed: cfg.ips, dnsUid: uid, upstreams }),
      join(dir, 'ruleset.nft'),
    );
    applied = true;
    const shell = new NftShell();
    await shell.run(`list set ${TABLE} ack`);
    resolver = { ...pointResolver('/etc/resolv.conf', udp6 !== undefined), resolvedDropIn };
    if (cfg.disableSudo) disableSudo(cfg.user, lockdown);
    if (cfg.disableDocker) disableDocker(cfg.user, lockdown);

    const sets = new AllowSets(shell, cfg.minTtl);
    const hooks: { askName?: (name: string, from: { proto: 'udp' | 'tcp'; port: number }) => void } = {};
    const proxy = new DnsProxy({
      matcher: new DomainMatcher(cfg.domains),
      policy: cfg.policy,
      upstream: { address: upstreams[0], port: 53 },
      sink: sets,
      log,
      // The answer cache is on; `CORDON_EGRESS_DNS_CACHE=off` in the daemon's environment
      // (a root start only: sudo drops it) turns it off, for the benchmark's comparison.
      cache: process.env.CORDON_EGRESS_DNS_CACHE === 'off' ? false : undefined,
      onRefused: (name, from) => hooks.askName?.(name, from),
    });
    for (const s of [udp4, udp6]) if (s) proxy.serveUdp(s);
    for (const s of [tcp4, tcp6]) if (s) proxy.serveTcp(s);

    const tamper: string[] = [];
    // The resolver text the proxy wrote, kept where the root helper can put it back.
    const resolvText = readFileSync('/etc/resolv.conf', 'utf8');
    writeFileSync(join(dir, 'resolv.conf'), resolvText, { mode: 0o644 });
    const hostsText = readOr('/etc/hosts');
    const dropInText = resolvedDropIn ? readOr(resolvedDropIn) : '';
    // Who asked, by `name <name>` or destKey: the first process found for each.
    const askers = new Map<string, string>();
    // How each cgroup made for a non-root run ended; an orphaned one means run was killed
    // while its command ran, so what the ledger says of that command cannot be trusted.
    const runCgroups: CgroupEnd[] = [];
    const helper = startHelper(
      dir,
      cfg.agentPidFile,
      uid,
      (key, p) => {
        if (!askers.has(key) && askers.size < 8192) askers.set(key, p);
      },
      (e) => {
        if (runCgroups.length < 256) runCgroups.push(e);
        if (e.end === 'orphaned')
          note(
            tamper,
            log,
            `run's process went away while its command ran: the daemon killed the command's cgroup ${e.name} (${e.alive} process(es) left)`,
          );
      },
    );
    closers.push(() => helper.stdin!.end());
    const nameTries = new Map<string, number>();
    hooks.askName = (name, from) => {
      const key = `name ${name}`;
      const n = nameTries.get(key) ?? 0;
      if (askers.has(key) || n >= WHO_TRIES || nameTries.size > 8192) return;
      nameTries.set(key, n + 1);
      helper.stdin!.write(`who ${JSON.stringify({ key, q: { kind: 'dns', ...from } })}\n`);
    };
    // Everything in the table but the dynamic sets' elements: a change means someone
    // else (root) edited it. In block mode the table is put back from the same file.
    // nft fails a line holding several `list` commands, so each is its own request.
    // The table's chain headers too: a chain someone adds to it (a hook after Cordon's,
    // rewriting an allowed packet's destination, say) is a change like any other.
    const listings = [
      ...CHAINS.map((c) => `list chain ${TABLE} ${c}`),
      `list set ${TABLE} static4`,
      `list set ${TABLE} static6`,
      `list chains ${TABLE.split(' ')[0]}`,
    ];
    const fingerprint = async (): Promise<string> =>
      (await Promise.all(listings.map((l) => shell.run(l))))
        .map((text, i) => (i === listings.length - 1 ? ownTableBlock(text) : text))
        .join('\n');
    const baseline = await fingerprint();
    const tablesAtStart = new Set(tableNames(await shell.run('list tables')));
    const reclose = (): void => {
      if (cfg.policy !== 'block') return;
      shell.run(`include "${join(dir, 'ruleset.nft')}"`).then(
        () => {
          sets.forget();
          log('re-closed: the table was loaded again from ruleset.nft');
        },
        (e: Error) => log(`could not re-close: ${e.message}`),
      );
    };
    /** Elements of allow4/allow6 the proxy did not add: recorded and taken out again. */
    const checkSets = async (): Promise<void> => {
      for (const set of ['allow4', 'allow6']) {
        const foreign = setAddresses(await shell.run(`list set ${TABLE} ${set}`)).filter((a) => !sets.has(a));
        if (!foreign.length) continue;
        note(tamper, log, `${foreign.join(', ')} added to ${set} by someone else (removed again)`);
        await shell.run(`delete element ${TABLE} ${set} { ${foreign.join(', ')} }`).catch(() => undefined);
      }
    };
    const checkTables = async (): Promise<void> => {
      for (const t of tableNames(await shell.run('list tables'))) {
        if (tablesAtStart.has(t) || t === TABLE) continue;
        tablesAtStart.add(t);
        note(
          tamper,
          log,
          `a table ${t} was added by someone else (an accept there does not get a packet past Cordon's drop)`,
        );
      }
    };
    let checking = false;
    const check = (): void => {
      if (checking) return;
      checking = true;
      fingerprint().then(
        async (now) => {
          if (now !== baseline) {
            note(tamper, log, 'the table inet cordon was changed by someone else');
            reclose();
          }
          await checkSets().catch((e: Error) => log(`set check failed: ${e.message}`));
          await checkTables().catch((e: Error) => log(`table check failed: ${e.message}`));
          checking = false;
        },
        () => {
          checking = false;
          note(tamper, log, 'the table inet cordon was removed');
          reclose();
        },
      );
    };
    // `nft monitor` reports every ruleset change as it happens, at no cost while nothing
    // changes; an address added to an allow set is checked against the proxy's own at
    // once. A full check every few seconds backs it up in case the monitor dies.
    const monitor = watchRuleset(check, (set, addresses) => {
      const foreign = addresses.filter((a) => !sets.has(a));
      if (foreign.length) check();
      void set;
    });
    closers.push(() => monitor.stdin!.end());
    const poll = setInterval(check, FULL_CHECK_MS);
    poll.unref();
    const watch = setInterval(() => {
      sets.sweep();
      const now = readOr('/etc/resolv.conf');
      if (now !== resolvText) {
        note(tamper, log, '/etc/resolv.conf was changed (put back to the proxy)');
        helper.stdin!.write('resolv\n');
      }
      // systemd-resolved's drop-in: recorded, not put back (resolved's own upstream queries
      // are refused by the fence whatever it says).
      if (resolvedDropIn && readOr(resolvedDropIn) !== dropInText)
        note(tamper, log, `${resolvedDropIn} (systemd-resolved pointed at the proxy) was changed or removed`);
      const hosts = readOr('/etc/hosts');
      if (hosts !== hostsText) {
        const added = hosts.split('\n').filter((l) => l.trim() && !hostsText.split('\n').includes(l));
        note(
          tamper,
          log,
          `/etc/hosts was changed${added.length ? `: ${added.slice(0, 5).join(' | ').slice(0, 300)}` : ''} (its addresses are still not in the sets)`,
        );
      }
    }, FILE_CHECK_MS);
    watch.unref();

    const control = net.createServer((c) => {
      c.on('error', () => c.destroy());
      c.setTimeout(5000, () => c.destroy());
      c.once('data', () => {
        collect(proxy, sets, shell, cfg, tamper, askers).then(
          (r) => c.end(JSON.stringify(runCgroups.length ? { ...r, runCgroups } : r)),
          (e) => c.end(JSON.stringify({ error: describeError(e) })),
        );
      });
    });
    const sock = join(dir, 'control.sock');
    await new Promise<void>((resolve, reject) => {
      control.once('error', reject);
      control.listen(sock, () => resolve());
    });
    chmodSync(sock, 0o666);
    closers.push(() => control.close());
    const ledgerCopy = await keepLedgerCopy(dir, log);
    closers.push(ledgerCopy);

    const state: DaemonState = {
      pid: process.pid,
      uid,
      upstreams,
      resolver,
      lockdown,
      user: cfg.user,
      setupMs: Date.now() - started,
    };
    writeFileSync(join(dir, 'state.json'), JSON.stringify(state), { mode: 0o600 });

    // From here on the process is the proxy's user: its upstream sockets carry that uid,
    // which is what the output chain lets through to the upstream.
    process.setgroups!([]);
    process.setgid!(gid);
    process.setuid!(uid);
    await proxy.connectUpstream();
    log(
      `ready: policy ${cfg.policy}, upstream ${upstreams.join(' ')}, ${cfg.domains.length} patterns, nft pid ${shell.pid}`,
    );
    process.stdout.write(
      `READY ${JSON.stringify({ pid: process.pid, upstreams, setupMs: state.setupMs, ipv6: udp6 !== undefined, wildcard: l.wildcard })}\n`,
    );
  } catch (e) {
    for (const c of closers) c();
    if (applied) removeTable();
    if (resolver) restoreResolver(resolver);
    else if (resolvedDropIn) restoreSystemdResolved(hostResolved, resolvedDropIn);
    restoreLockdown(lockdown, cfg.user);
    rmSync(dir, { recursive: true, force: true });
    process.stdout.write(`ERROR ${JSON.stringify({ message: describeError(e) })}\n`);
    process.exit(1);
  }
}

const OWN_CHANGE = /^(add|delete) element inet cordon (allow4|allow6|ack) /;
const ALLOW_ADD = /^add element inet cordon (allow4|allow6) \{ (.*) \}/;
const FULL_CHECK_MS = 3000;
const BLOCKED_POLL_MS = 300;
/** Polls in which a blocked destination is looked for before giving up on it. */
const WHO_TRIES = 3;
const FILE_CHECK_MS = 500;

function readOr(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Cordon's own `table inet cordon { ... }` block of a listing that may hold other tables. */
function ownTableBlock(text: string): string {
  const lines = text.split('\n');
  const start = lines.indexOf(`table ${TABLE} {`);
  if (start < 0) return '';
  const end = lines.indexOf('}', start);
  return lines.slice(start, end < 0 ? undefined : end + 1).join('\n');
}

/** `table inet cordon` lines of `list tables`, as "inet cordon". */
export function tableNames(text: string): string[] {
  return [...text.matchAll(/^table (\S+ \S+)/gm)].map((m) => m[1]);
}

/** Addresses in a `list set` of allow4/allow6 (elements with or without timeouts). */
export function setAddresses(text: string): string[] {
  const m = /elements = \{([^}]*)\}/s.exec(text);
  if (!m) return [];
  return m[1]
    .split(',')
    .map((e) => e.trim().split(/\s+/)[0])
    .filter((a) => a && isIP(a) !== 0);
}

/**
 * A root child kept before the daemon gives up root (the same script, `helper <dir>`):
 * on `resolv` it writes the proxy's resolv.conf back (in place, as bind mounts need); on
 * `who <json>` it finds the process behind a refused name; on its own it polls the
 * blocked sets and finds the process behind each new destination. Answers come back as
 * `who <json>` lines. It also serves `run`'s cgroups (cgroups.ts) and reports how each
 * ended as a `cgroup <json>` line. It exits when the daemon closes its stdin.
 */
function startHelper(
  dir: string,
  pidFile: string | undefined,
  proxyUid: number,
  seen: (key: string, process: string) => void,
  cgroupEnded: (e: CgroupEnd) => void,
): ChildProcess {
  const h = spawn(process.execPath, [process.argv[1], 'helper', dir, pidFile ?? '', String(proxyUid)], {
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  h.on('error', () => undefined);
  h.stdin!.on('error', () => undefined);
  createInterface({ input: h.stdout! }).on('line', (line) => {
    if (line.startsWith('cgroup ')) {
      try {
        cgroupEnded(JSON.parse(line.slice(7)) as CgroupEnd);
      } catch {
        // A torn line.
      }
      return;
    }
    if (!line.startsWith('who ')) return;
    try {
      const r = JSON.parse(line.slice(4)) as { key: string; process: string };
      if (r.process) seen(r.key, r.process);
    } catch {
      // A torn line: nothing learned.
    }
  });
  return h;
}

function rootPid(pidFile: string | undefined): number | undefined {
  if (!pidFile) return undefined;
  const n = Number(readOr(pidFile).trim());
  return Number.isInteger(n) && n > 1 ? n : undefined;
}

/** The helper's side (root): see startHelper. */
function helperMain(dir: string, pidFile: string | undefined, proxyUid: number | undefined): void {
  const reply = (key: string, q: WhoQuery): void => {
    let found: string | undefined;
    try {
      found = whoAsked(q, rootPid(pidFile));
    } catch {
      found = undefined;
    }
    if (found) process.stdout.write(`who ${JSON.stringify({ key, process: found })}\n`);
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
        const { key, q } = JSON.parse(line.slice(4)) as { key: string; q: WhoQuery };
        reply(key, q);
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
    ended: (e) => process.stdout.write(`cgroup ${JSON.stringify(e)}\n`),
  }).catch(() => undefined);
  // Blocked destinations: the kernel refuses them without user space, so the sets are
  // polled (a separate nft, never the proxy's) and each new one mapped to a live socket.
  const tries = new Map<string, number>();
  let busy = false;
  const poll = setInterval(() => {
    if (busy) return;
    busy = true;
    const lists = ['blocked4', 'blocked6'].map(
      (set) =>
        new Promise<string>((resolve) =>
          execFile('nft', ['list', 'set', ...TABLE.split(' '), set], { timeout: 5000 }, (_e, out) =>
            resolve(out ?? ''),
          ),
        ),
    );
    void Promise.all(lists).then((outs) => {
      busy = false;
      for (const b of parseBlocked(outs.join('\n'))) {
        const key = destKey(b);
        const n = tries.get(key) ?? 0;
        if (n >= WHO_TRIES) continue;
        tries.set(key, n + 1);
        reply(key, { kind: 'dest', proto: b.protocol, address: b.address, port: b.port });
        if (tries.size > 4096) tries.clear();
      }
    });
  }, BLOCKED_POLL_MS);
  poll.unref();
}

export function destKey(b: { address: string; protocol: string; port: number }): string {
  return `dest ${b.address} ${b.protocol} ${b.port}`;
}

/**
 * Runs `nft monitor ruleset` (as root, before the daemon drops it) and calls `changed`
 * soon after any change to a table other than our own element updates; `added` gets the
 * addresses of every element added to allow4/allow6 (ours or not).
 */
function watchRuleset(changed: () => void, added: (set: string, addresses: string[]) => void): ChildProcess {
  // The shell ends the monitor when our end of its stdin closes, that is when the daemon
  // dies: a monitor in a namespace nobody changes would otherwise never notice.
  const monitor = spawn('/bin/sh', ['-c', 'nft monitor ruleset & m=$!; read _; kill $m'], {
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  monitor.on('error', () => undefined);
  let timer: NodeJS.Timeout | undefined;
  createInterface({ input: monitor.stdout! }).on('line', (line) => {
    const add = ALLOW_ADD.exec(line);
    if (add)
      added(
        add[1],
        add[2].split(',').map((e) => e.trim().split(/\s+/)[0]),
      );
    if (OWN_CHANGE.test(line) || line.startsWith('# new generation')) return;
    timer ??= setTimeout(() => {
      timer = undefined;
      changed();
    }, 50);
  });
  return monitor;
}

const MAX_LEDGER_LINE = 256 * 1024;
const MAX_LEDGER_BYTES = 64 * 1024 * 1024;
const LEDGER_IDLE_MS = 60_000;
const LEDGER_MAX_CONNECTIONS = 64;

/**
 * The root-owned copy of the ledger: every Cordon step sends each line it appends to
 * `ledger.sock` as well, and the daemon appends it to `ledger.jsonl` in its own directory.
 * The file is opened as root before the daemon gives up root, so the runner user can read
 * it but not write it; the summary can compare it with the user-writable file. Anyone may
 * send, so a line here proves when it arrived, not who wrote it.
 */
async function keepLedgerCopy(dir: string, log: (l: string) => void): Promise<() => void> {
  const fd = openSync(join(dir, LEDGER_COPY), 'a', 0o644);
  let bytes = 0;
  let full = false;
  const server = net.createServer((c) => {
    c.on('error', () => c.destroy());
    // Steps reconnect on their next line; an idle connection only holds a descriptor.
    c.setTimeout(LEDGER_IDLE_MS, () => c.destroy());
    let buf = '';
    c.setEncoding('utf8');
    c.on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!line) continue;
        if (bytes + line.length > MAX_LEDGER_BYTES) {
          // Once, a line that is no event: the copy's chain breaks here, so the summary
          // says the record was altered instead of quietly missing what came after.
          if (!full) writeSync(fd, `copy full: lines after ${MAX_LEDGER_BYTES} bytes were dropped\n`);
          if (!full) log('ledger copy: full, later lines dropped');
          full = true;
          continue;
        }
        bytes += line.length + 1;
        writeSync(fd, `${line}\n`);
      }
      if (buf.length > MAX_LEDGER_LINE) {
        log('ledger copy: a line longer than 256 KiB was dropped');
        c.destroy();
      }
    });
  });
  server.maxConnections = LEDGER_MAX_CONNECTIONS;
  const path = join(dir, 'ledger.sock');
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  chmodSync(path, 0o666);
  return () => server.close();
}

/** When each tamper entry was first seen, by its text. */
const tamperSeen = new Map<string, string>();

function note(tamper: string[], log: (l: string) => void, what: string): void {
  if (tamper.includes(what)) return;
  tamper.push(what);
  tamperSeen.set(what, new Date().toISOString());
  log(`tamper: ${what}`);
}

async function collect(
  proxy: DnsProxy,
  sets: AllowSets,
  shell: NftShell,
  cfg: DaemonConfig,
  tamper: string[],
  askers: Map<string, string>,
): Promise<DaemonReport> {
  const blocked: BlockedEntry[] = [];
  for (const set of ['blocked4', 'blocked6']) {
    try {
      blocked.push(...parseBlocked(await shell.run(`list set ${TABLE} ${set}`)));
    } catch {
      note(tamper, () => undefined, `the set ${set} could not be read`);
    }
  }
  const s = proxy.stats;
  return {
    policy: cfg.policy,
    names: [...s.names].map(([name, n]) => ({
      name,
      queries: n.queries,
      allowed: n.allowed,
      addresses: [...n.addresses],
      process: askers.get(`name ${name}`),
    })),
    namesDropped: s.namesDropped,
    forgedAnswers: s.forgedAnswers,
    malformed: s.malformed,
    upstreamTimeouts: s.upstreamTimeouts,
    setFailures: s.setFailures,
    cacheHits: s.cacheHits,
    setUpdates: sets.updates,
    blocked: blocked.map((b) => ({ ...b, process: askers.get(destKey(b)) })),
    tamper,
    tamperSeen: tamper.map((t) => tamperSeen.get(t) ?? ''),
  };
}

/** Stops the daemon, removes the table, restores the resolver and the lockdown. */
function teardown(id: string): void {
  const dir = stateDir(id);
  const file = join(dir, 'state.json');
  if (!existsSync(file)) {
    process.stdout.write(`ERROR ${JSON.stringify({ message: `no egress state in ${dir}` })}\n`);
    process.exit(1);
  }
  const state = JSON.parse(readFileSync(file, 'utf8')) as DaemonState;
  try {
    if (readFileSync(`/proc/${state.pid}/cmdline`, 'utf8').includes('daemon'))
      process.kill(state.pid, 'SIGTERM');
  } catch {
    // Already gone.
  }
  // The proxy must have let go of port 53 before systemd-resolved's stub is back.
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < 60 && existsSync(`/proc/${state.pid}`); i++) Atomics.wait(pause, 0, 0, 50);
  removeTable();
  if (state.resolver) restoreResolver(state.resolver);
  if (state.lockdown) restoreLockdown(state.lockdown, state.user);
  rmSync(dir, { recursive: true, force: true });
  rmdirQuiet(cgroupMountDir(dir));
  process.stdout.write('DONE\n');
}

process.stdout.on('error', () => undefined);
process.on('SIGHUP', () => undefined);
process.on('SIGPIPE', () => undefined);
const [cmd, arg] = process.argv.slice(2);
if (cmd === 'start' && arg) await start(arg);
else if (cmd === 'teardown' && arg) teardown(arg);
else if (cmd === 'helper' && arg)
  helperMain(arg, process.argv[4] || undefined, Number(process.argv[5]) || undefined);
else {
  process.stderr.write('usage: daemon.js start <config.json> | teardown <id>\n');
  process.exitCode = 2;
}
