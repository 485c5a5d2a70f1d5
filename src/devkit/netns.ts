/**
 * Network namespaces for tests and `cordon demo`: create and delete them, join them with
 * veth pairs carrying IPv4 and IPv6, put bridges in them, and run commands inside. Every
 * call is bounded in time; addresses should come from documentation and ULA ranges.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';

const IP = '/usr/sbin/ip';

/** Runs a command and returns its stdout; throws with its stderr when it fails. */
export function run(
  argv: string[],
  opts: { input?: string; timeoutMs?: number; allowFail?: boolean } = {},
): string {
  const r = spawnSync(argv[0], argv.slice(1), {
    input: opts.input,
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 15000,
  });
  if (!opts.allowFail && (r.error || r.status !== 0)) {
    throw new Error(`${argv.join(' ')} failed (${r.error?.message ?? r.status}): ${(r.stderr ?? '').trim()}`);
  }
  return r.stdout ?? '';
}

/** True when this process can create namespaces (root with `ip` present). */
export function canUseNetns(): boolean {
  if (process.getuid?.() !== 0) return false;
  return spawnSync(IP, ['netns', 'list'], { timeout: 5000 }).status === 0;
}

export class Netns {
  private constructor(readonly name: string) {}

  /**
   * Creates the namespace with loopback up. `resolvConf` is written to
   * /etc/netns/<name>/resolv.conf, which `ip netns exec` mounts over /etc/resolv.conf.
   */
  static create(name: string, opts: { resolvConf?: string } = {}): Netns {
    if (name.length > 15 || !/^[a-zA-Z0-9_-]+$/.test(name)) throw new Error(`bad namespace name ${name}`);
    run([IP, 'netns', 'add', name]);
    const ns = new Netns(name);
    ns.exec([IP, 'link', 'set', 'lo', 'up']);
    if (opts.resolvConf !== undefined) {
      mkdirSync(`/etc/netns/${name}`, { recursive: true });
      writeFileSync(`/etc/netns/${name}/resolv.conf`, opts.resolvConf);
    }
    return ns;
  }

  /** The argv prefix that runs a command inside (for `Job.run`'s `wrap`). */
  get wrap(): string[] {
    return [IP, 'netns', 'exec', this.name];
  }

  exec(argv: string[], opts: { input?: string; timeoutMs?: number; allowFail?: boolean } = {}): string {
    return run([...this.wrap, ...argv], opts);
  }

  /** Like `exec` but returns the exit status and both streams. */
  try(argv: string[], timeoutMs = 15000): { code: number | null; stdout: string; stderr: string } {
    const r = spawnSync(IP, ['netns', 'exec', this.name, ...argv], { encoding: 'utf8', timeout: timeoutMs });
    return { code: r.error ? null : r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  }

  /** Starts a long-running process inside; the caller stops it with `stop`. */
  spawn(argv: string[], env: Record<string, string | undefined> = process.env): ChildProcess {
    return spawn(IP, ['netns', 'exec', this.name, ...argv], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  }

  addAddress(dev: string, cidr: string): void {
    const v6 = cidr.includes(':');
    this.exec([IP, ...(v6 ? ['-6'] : []), 'addr', 'add', cidr, 'dev', dev, ...(v6 ? ['nodad'] : [])]);
  }

  route(spec: string[]): void {
    this.exec([IP, ...(spec.some((s) => s.includes(':')) ? ['-6'] : []), 'route', 'add', ...spec]);
  }

  sysctl(key: string, value: string): void {
    this.exec(['/usr/sbin/sysctl', '-qw', `${key}=${value}`]);
  }

  /** A bridge inside this namespace with the given addresses. */
  bridge(dev: string, addresses: string[]): void {
    this.exec([IP, 'link', 'add', dev, 'type', 'bridge']);
    this.exec([IP, 'link', 'set', dev, 'up']);
    for (const a of addresses) this.addAddress(dev, a);
  }

  /** Deletes the namespace and its /etc/netns directory; safe to call twice. */
  delete(): void {
    spawnSync(IP, ['netns', 'del', this.name], { timeout: 15000 });
    rmSync(`/etc/netns/${this.name}`, { recursive: true, force: true });
  }
}

export interface VethEnd {
  ns: Netns;
  dev: string;
  addresses: string[];
  /** Enslave this end to a bridge in its namespace instead of addressing it. */
  bridge?: string;
}

/** A veth pair from `a` to `b`, both ends up, with their addresses (IPv6 without DAD). */
export function veth(a: VethEnd, b: VethEnd): void {
  run([
    IP,
    'link',
    'add',
    a.dev,
    'netns',
    a.ns.name,
    'type',
    'veth',
    'peer',
    'name',
    b.dev,
    'netns',
    b.ns.name,
  ]);
  for (const end of [a, b]) {
    if (end.bridge) end.ns.exec([IP, 'link', 'set', end.dev, 'master', end.bridge]);
    end.ns.exec([IP, 'link', 'set', end.dev, 'up']);
    for (const addr of end.addresses) end.ns.addAddress(end.dev, addr);
  }
}

/** Stops a process started with `Netns.spawn` (SIGTERM, then SIGKILL after `graceMs`). */
export function stop(child: ChildProcess | undefined, graceMs = 2000): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
