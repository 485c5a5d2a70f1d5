/**
 * A REAL systemd-resolved, pointed at the proxy and back through resolver.ts. No systemd
 * runs here (PID 1 is not systemd, no system bus), and installing systemd-resolved would
 * replace the host's /etc/resolv.conf, so scripts/fetch-resolved.sh unpacks the Debian
 * package into node_modules/.cache and the binary runs inside a network namespace made
 * here. A holder process keeps one private mount namespace in it for every start of
 * resolved: /run is a tmpfs with /run/systemd this test's directory, /etc an overlay on
 * the host's (writes land in this test's directory) with /etc/systemd this test's, a
 * `systemd-resolve` user (resolved started as root drops to it, as under systemd) and
 * /etc/resolv.conf the symlink to resolved's stub file, as on a runner. The host's files
 * are never written: the namespace's resolv.conf is reached through /proc/<holder>/root,
 * only after checking a marker that exists only inside.
 * `systemctl restart systemd-resolved` is played by stopping the process by its pid,
 * waiting for it to exit, starting it again and waiting for it to write its resolv.conf
 * files (which it does after its listeners and varlink socket are up, just before it would
 * report READY to systemd). Lookups go through its varlink socket (io.systemd.Resolve),
 * which needs no bus; the proxy is played by a logging DNS server that binds 0.0.0.0:53 like
 * the daemon does. Needs root, ip, ss, nsenter, overlayfs and apt-get; skipped only when CI
 * is unset.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createConnection } from 'node:net';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { canUseNetns, Netns, stop, veth } from '../../src/devkit/netns.js';
import {
  pointResolver,
  pointSystemdResolved,
  restoreResolver,
  restoreSystemdResolved,
  type SystemdResolved,
} from '../../src/fence/resolver.js';
import { tempDir } from '../harness/tmp.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const IP = '/usr/sbin/ip';
const MARKER = '.cordon-resolved-live';

/** The unpacked package's root, or why this machine cannot run the test. */
function fetchResolved(): { root?: string; why?: string } {
  if (!canUseNetns()) return { why: 'needs root and ip (network namespaces)' };
  const r = spawnSync(join(ROOT, 'scripts', 'fetch-resolved.sh'), [], { encoding: 'utf8', timeout: 180_000 });
  if (r.status !== 0)
    return { why: `scripts/fetch-resolved.sh failed: ${r.error?.message ?? r.stderr.trim()}` };
  return { root: r.stdout.trim() };
}

const fetched = fetchResolved();
if (!fetched.root && process.env.CI === 'true') {
  throw new Error(
    `resolved-live e2e: cannot run a real systemd-resolved (CI=true, so not skipping): ${fetched.why}`,
  );
}
if (!fetched.root) console.warn(`resolved-live e2e skipped: ${fetched.why}`);
const suite = fetched.root ? describe : describe.skip;

/** Sleeps without yielding: the SystemdResolved interface is synchronous, as systemctl is. */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Gone or a zombie: its sockets are closed either way. */
function exited(pid: number): boolean {
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

/** Makes the namespace's private mounts, then holds them (bounded: 10 minutes at most). */
const HOLD = `set -e
T="$1"
mount -t tmpfs cordon-run /run
mkdir -p /run/systemd
mount --bind "$T/run-systemd" /run/systemd
# The overlay's upper layer on that tmpfs: /tmp may itself be an overlay, which cannot be one.
mkdir -p /run/.cordon-etc-up /run/.cordon-etc-work
mount -t overlay cordon-etc -o "lowerdir=/etc,upperdir=/run/.cordon-etc-up,workdir=/run/.cordon-etc-work" /etc
mount --bind "$T/etc-systemd" /etc/systemd
if ! grep -q '^systemd-resolve:' /etc/passwd; then
  cat "$T/passwd-add" >> /etc/passwd
  cat "$T/group-add" >> /etc/group
fi
rm -f /etc/resolv.conf
ln -s ../run/systemd/resolve/stub-resolv.conf /etc/resolv.conf
touch /etc/${MARKER}
exec sleep 600
`;

/** The proxy's stand-in: binds UDP and TCP 53 (on 0.0.0.0 unless told), logs each question, answers A 192.0.2.7. */
const LOGGING_DNS = `
import dgram from 'node:dgram';
import net from 'node:net';
function question(b) {
  let o = 12;
  const labels = [];
  while (b[o]) { labels.push(b.subarray(o + 1, o + 1 + b[o]).toString()); o += b[o] + 1; }
  return { name: labels.join('.').toLowerCase(), type: b.readUInt16BE(o + 1), end: o + 5 };
}
function answer(q) {
  const { type, end } = question(q);
  const edns = q.readUInt16BE(10) > 0;
  const h = Buffer.from(q.subarray(0, 12));
  h[2] = 0x80 | (q[2] & 0x01); h[3] = 0x80;
  h.writeUInt16BE(1, 4); h.writeUInt16BE(type === 1 ? 1 : 0, 6); h.writeUInt16BE(0, 8); h.writeUInt16BE(edns ? 1 : 0, 10);
  const parts = [h, q.subarray(12, end)];
  if (type === 1) parts.push(Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 192, 0, 2, 7]));
  if (edns) parts.push(Buffer.from([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]));
  return Buffer.concat(parts);
}
const say = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const fail = (e) => { say({ error: e.code ?? String(e) }); process.exit(2); };
const udp = dgram.createSocket('udp4');
udp.on('error', fail);
udp.on('message', (m, r) => { const { name, type } = question(m); say({ proto: 'udp', name, type }); udp.send(answer(m), r.port, r.address); });
const tcp = net.createServer((c) => {
  let buf = Buffer.alloc(0);
  c.on('error', () => c.destroy());
  c.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      const m = buf.subarray(2, 2 + buf.readUInt16BE(0));
      buf = buf.subarray(2 + m.length);
      const { name, type } = question(m);
      say({ proto: 'tcp', name, type });
      const a = answer(m);
      const len = Buffer.alloc(2); len.writeUInt16BE(a.length);
      c.write(Buffer.concat([len, a]));
    }
  });
});
tcp.on('error', fail);
const at = process.argv[2] ?? '0.0.0.0';
udp.bind(53, at, () => tcp.listen(53, at, () => say({ ready: true })));
`;

interface Query {
  proto: string;
  name: string;
  type: number;
}

/** The logging server inside the namespace: `ready` or the bind error (EADDRINUSE). */
class LoggingDns {
  readonly queries: Query[] = [];
  started: { ready?: true; error?: string } = {};
  private constructor(readonly child: ChildProcess) {}

  static readonly all: LoggingDns[] = [];

  static async start(ns: Netns, script: string, at = '0.0.0.0'): Promise<LoggingDns> {
    const dns = new LoggingDns(ns.spawn([process.execPath, script, at]));
    LoggingDns.all.push(dns);
    await new Promise<void>((resolve) => {
      const done = (s: { ready?: true; error?: string }): void => {
        clearTimeout(timer);
        if (!dns.started.ready && !dns.started.error) dns.started = s;
        resolve();
      };
      const timer = setTimeout(() => done({ error: 'no answer in 10 s' }), 10_000);
      dns.child.on('close', () => done({ error: 'exited' }));
      createInterface({ input: dns.child.stdout! }).on('line', (line) => {
        const o = JSON.parse(line) as Query & { ready?: true; error?: string };
        if (o.ready || o.error) done(o);
        else dns.queries.push(o);
      });
    });
    return dns;
  }

  asked(name: string): number {
    return this.queries.filter((q) => q.name === name && q.type === 1).length;
  }

  /** The count once it exceeds `than` (its log line may trail resolved's answer), or as it is after `ms`. */
  async askedMore(name: string, than: number, ms = 2000): Promise<number> {
    for (let i = 0; i < ms / 20 && this.asked(name) <= than; i++) await new Promise((r) => setTimeout(r, 20));
    return this.asked(name);
  }

  stop(): Promise<void> {
    return stop(this.child);
  }
}

interface VarlinkReply {
  parameters?: { addresses?: { family: number; address: number[] }[]; flags?: number };
  error?: string;
}

/** One varlink call: NUL-terminated JSON over resolved's unix socket (no bus needed). */
function varlink(socket: string, method: string, parameters: object): Promise<VarlinkReply> {
  return new Promise((resolve, reject) => {
    const c = createConnection(socket);
    let buf = '';
    const timer = setTimeout(() => {
      c.destroy();
      reject(new Error(`${method}: no reply in 10 s`));
    }, 10_000);
    c.on('connect', () => c.write(`${JSON.stringify({ method, parameters })}\0`));
    c.on('data', (d) => {
      buf += d.toString();
      const end = buf.indexOf('\0');
      if (end < 0) return;
      clearTimeout(timer);
      c.end();
      resolve(JSON.parse(buf.slice(0, end)) as VarlinkReply);
    });
    c.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

// sd-resolve.h: where an answer came from.
const FROM_CACHE = 1 << 20;
const FROM_NETWORK = 1 << 23;

suite('a real systemd-resolved pointed at the proxy and back (resolver.ts)', () => {
  // Made in beforeAll, never here: jest runs this body even when the suite is skipped.
  let ns!: Netns;
  let dir = '';
  let lib = '';
  let runSystemd = '';
  let etcSystemd = '';
  let socket = '';
  let uplink = '';
  let log = '';
  let dnsScript = '';
  const root = fetched.root ?? '';
  const STUB_LINK = '../run/systemd/resolve/stub-resolv.conf';
  const NAME = 'live.cordon-resolved.example';
  let holder: ChildProcess | undefined;
  let resolved: ChildProcess | undefined;
  const restarts: number[] = [];

  /** The namespace's /etc/resolv.conf, seen from here; never the host's. */
  function nsResolvConf(): string {
    const etc = `/proc/${holder?.pid}/root/etc`;
    if (
      !holder?.pid ||
      exited(holder.pid) ||
      !existsSync(join(etc, MARKER)) ||
      existsSync(`/etc/${MARKER}`)
    ) {
      throw new Error('the namespace holder is gone: not touching any resolv.conf');
    }
    return join(etc, 'resolv.conf');
  }

  function startResolved(): void {
    for (const f of ['resolv.conf', 'stub-resolv.conf'])
      rmSync(join(runSystemd, 'resolve', f), { force: true });
    const out = openSync(log, 'a');
    resolved = spawn(
      'nsenter',
      ['-t', String(holder!.pid), '-m', '-n', '--', join(root, 'lib', 'systemd', 'systemd-resolved')],
      {
        stdio: ['ignore', out, out],
        env: {
          PATH: process.env.PATH,
          LD_LIBRARY_PATH: lib,
          SYSTEMD_LOG_TARGET: 'console',
          SYSTEMD_LOG_LEVEL: 'debug',
        },
      },
    );
    closeSync(out);
    const pid = resolved.pid!;
    for (let i = 0; i < 500; i++) {
      if (exited(pid))
        throw new Error(`systemd-resolved exited at start:\n${readFileSync(log, 'utf8').slice(-2000)}`);
      if (existsSync(join(runSystemd, 'resolve', 'stub-resolv.conf')) && existsSync(uplink)) return;
      pause(20);
    }
    throw new Error(`systemd-resolved not ready in 10 s:\n${readFileSync(log, 'utf8').slice(-2000)}`);
  }

  function stopResolved(): void {
    const pid = resolved?.pid;
    if (!pid || exited(pid)) return;
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 250 && !exited(pid); i++) pause(20);
    if (!exited(pid)) {
      process.kill(pid, 'SIGKILL');
      for (let i = 0; i < 100 && !exited(pid); i++) pause(20);
    }
    if (!exited(pid)) throw new Error(`systemd-resolved (pid ${pid}) did not exit`);
  }

  /** `systemctl restart systemd-resolved`, for this one process. */
  const sd: SystemdResolved = {
    dropInDir: '', // set in beforeAll
    active: () => resolved?.pid !== undefined && !exited(resolved.pid),
    exec(cmd, args) {
      expect([cmd, ...args]).toEqual(['systemctl', 'restart', 'systemd-resolved']);
      const t = Date.now();
      stopResolved();
      startResolved();
      restarts.push(Date.now() - t);
    },
  };

  /** Sockets bound on port 53 inside the namespace, as `ss` prints them. */
  function port53(): string[] {
    return ns
      .exec(['ss', '-Hlntu'])
      .split('\n')
      .map((l) => l.split(/\s+/)[4])
      .filter((a) => a?.endsWith(':53'));
  }

  const STUB = expect.arrayContaining([expect.stringMatching(/^127\.0\.0\.53(%lo)?:53$/), '127.0.0.54:53']);

  function lookup(): Promise<VarlinkReply> {
    return varlink(socket, 'io.systemd.Resolve.ResolveHostname', { name: NAME, family: 2 });
  }

  beforeAll(() => {
    ns = Netns.create(`cordonres${process.pid % 1_000_000}`);
    dir = tempDir('cordon-resolved-');
    const arch = readdirSync(join(root, 'usr', 'lib')).find((d) => d.includes('linux'))!;
    lib = join(root, 'usr', 'lib', arch, 'systemd');
    runSystemd = join(dir, 'run-systemd');
    etcSystemd = join(dir, 'etc-systemd');
    sd.dropInDir = join(etcSystemd, 'resolved.conf.d');
    socket = join(runSystemd, 'resolve', 'io.systemd.Resolve');
    uplink = join(runSystemd, 'resolve', 'resolv.conf');
    log = join(dir, 'resolved.log');
    dnsScript = join(dir, 'logging-dns.mjs');
    // The global DNS scope answers NetworkDown unless some link has a routable address.
    veth({ ns, dev: 'crs0', addresses: ['198.51.100.1/24'] }, { ns, dev: 'crs1', addresses: [] });
    for (const d of [runSystemd, etcSystemd]) mkdirSync(d);
    for (const d of [dir, runSystemd, etcSystemd]) chmodSync(d, 0o755);
    if (existsSync(join(root, 'etc', 'systemd', 'resolved.conf'))) {
      copyFileSync(join(root, 'etc', 'systemd', 'resolved.conf'), join(etcSystemd, 'resolved.conf'));
    }
    // A systemd-resolve user, added to the overlay's /etc/passwd when the host has none.
    const used = new Set(
      [...readFileSync('/etc/passwd', 'utf8').split('\n'), ...readFileSync('/etc/group', 'utf8').split('\n')]
        .map((l) => Number(l.split(':')[2]))
        .filter(Number.isFinite),
    );
    let id = 980;
    while (used.has(id)) id--;
    writeFileSync(
      join(dir, 'passwd-add'),
      `systemd-resolve:x:${id}:${id}:systemd Resolver:/:/usr/sbin/nologin\n`,
    );
    writeFileSync(join(dir, 'group-add'), `systemd-resolve:x:${id}:\n`);
    writeFileSync(dnsScript, LOGGING_DNS);
    holder = spawn(IP, ['netns', 'exec', ns.name, 'sh', '-c', HOLD, 'sh', dir], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let holdErr = '';
    holder.stderr!.on('data', (d: Buffer) => (holdErr += d.toString()));
    for (let i = 0; i < 250 && !existsSync(`/proc/${holder.pid}/root/etc/${MARKER}`); i++) {
      if (exited(holder.pid!)) break;
      pause(20);
    }
    expect({ mounted: existsSync(`/proc/${holder.pid}/root/etc/${MARKER}`), holdErr }).toEqual({
      mounted: true,
      holdErr: '',
    });
    expect(readlinkSync(nsResolvConf())).toBe(STUB_LINK);
    startResolved();
  });

  afterAll(async () => {
    for (const d of LoggingDns.all) await d.stop();
    try {
      stopResolved();
    } finally {
      await stop(holder);
      if (ns) ns.delete();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
    if (restarts.length) console.log(`resolved-live: restarts took ${restarts.join(', ')} ms`);
  });

  test('it runs without systemd as PID 1 or a system bus; its stub holds 127.0.0.53:53 and 127.0.0.54:53, so the proxy cannot bind 0.0.0.0:53', async () => {
    expect(readFileSync(log, 'utf8')).toMatch(/Creating stub listener/);
    expect(port53()).toEqual(STUB);
    const blocked = await LoggingDns.start(ns, dnsScript);
    expect(blocked.started).toEqual({ error: 'EADDRINUSE' });
    // No DNS server of its own: /etc/resolv.conf is its own stub file, which it ignores.
    expect(await lookup()).toEqual({ error: 'io.systemd.Resolve.NoNameServers', parameters: {} });
  });

  test('pointSystemdResolved: the drop-in and a restart free port 53 before the proxy binds; resolved then asks 127.0.0.1 for every lookup, none from its cache', async () => {
    const before = resolved!.pid;
    const warnings: string[] = [];
    const dropIn = pointSystemdResolved(sd, (w) => warnings.push(w));
    expect(warnings).toEqual([]);
    expect(dropIn).toBe(join(sd.dropInDir, 'zz-cordon-egress.conf'));
    expect(resolved!.pid).not.toBe(before);
    expect(readFileSync(log, 'utf8')).toMatch(/Not creating stub listener/);
    expect(port53()).toEqual([]);
    // Its uplink file: the drop-in's server is the only one.
    expect(readFileSync(uplink, 'utf8').match(/^nameserver .*$/gm)).toEqual(['nameserver 127.0.0.1']);

    // As the daemon does: bind 0.0.0.0:53, then point resolv.conf at the proxy.
    const dns = await LoggingDns.start(ns, dnsScript);
    expect(dns.started).toEqual({ ready: true });
    const backup = { ...pointResolver(nsResolvConf(), true), resolvedDropIn: dropIn };
    expect(backup).toMatchObject({ kind: 'symlink', target: STUB_LINK });

    const counts: number[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await lookup();
      expect(r.error).toBeUndefined();
      expect(r.parameters?.addresses).toEqual([
        expect.objectContaining({ family: 2, address: [192, 0, 2, 7] }),
      ]);
      expect((r.parameters?.flags ?? 0) & FROM_NETWORK).toBe(FROM_NETWORK);
      expect((r.parameters?.flags ?? 0) & FROM_CACHE).toBe(0);
      counts.push(await dns.askedMore(NAME, counts[i - 1] ?? 0));
    }
    // Cache=no: the second, identical lookup reached the proxy too.
    expect(counts[0]).toBeGreaterThanOrEqual(1);
    expect(counts[1]).toBeGreaterThan(counts[0]);
    console.log(`resolved-live: queries seen by the proxy after each lookup: ${counts.join(', ')}`);

    // Teardown as the daemon does it: the proxy exits first, then restoreResolver.
    await dns.stop();
    const pointed = resolved!.pid;
    restoreResolver(backup, sd);
    expect(existsSync(dropIn as string)).toBe(false);
    expect(resolved!.pid).not.toBe(pointed);
    expect(readlinkSync(nsResolvConf())).toBe(STUB_LINK);
  });

  test('restored (the proxy gone first): the stub is back on 127.0.0.53 and 127.0.0.54, and resolved no longer asks 127.0.0.1 or ::1', async () => {
    expect(port53()).toEqual(STUB);
    // Whatever listens on 127.0.0.1:53 after the job must not answer for resolved.
    const dns = await LoggingDns.start(ns, dnsScript, '127.0.0.1');
    try {
      expect(dns.started).toEqual({ ready: true });
      const r = await lookup();
      await dns.askedMore(NAME, 0, 300);
      const servers = readFileSync(uplink, 'utf8').match(/^nameserver .*$/gm);
      // Before the fix: servers 127.0.0.1 and ::1, and the lookup answered by this server.
      expect({ servers, lookup: r, asked: dns.asked(NAME) }).toEqual({
        servers: null,
        lookup: { error: 'io.systemd.Resolve.NoNameServers', parameters: {} },
        asked: 0,
      });
    } finally {
      await dns.stop();
    }
  });

  test('restored while the proxy still holds 0.0.0.0:53, the stub stays off: why teardown waits for the proxy to exit', async () => {
    const dropIn = pointSystemdResolved(sd, () => undefined);
    const dns = await LoggingDns.start(ns, dnsScript);
    expect(dns.started).toEqual({ ready: true });
    restoreSystemdResolved(sd, dropIn as string);
    expect(sd.active()).toBe(true);
    expect(readFileSync(log, 'utf8')).toMatch(
      /Another process is already listening on (UDP|TCP) socket 127\.0\.0\.53:53/,
    );
    expect(port53()).toEqual(['0.0.0.0:53', '0.0.0.0:53']);
    await dns.stop();
    // Only the next restart brings it back.
    expect(port53()).toEqual([]);
    sd.exec('systemctl', ['restart', 'systemd-resolved']);
    expect(port53()).toEqual(STUB);
  });
});
