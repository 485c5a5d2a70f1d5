/**
 * The host's resolver configuration: which upstream it uses today, and pointing it at
 * the proxy. `/etc/resolv.conf` is written in place when it is a file (inside `ip netns
 * exec` it is a bind mount that cannot be replaced), and replaced when it is a symlink
 * (systemd-resolved's stub), with what was there kept to restore; where systemd-resolved
 * runs, it is pointed at the proxy too.
 */
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  rmSync,
  readFileSync,
  readlinkSync,
  renameSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { CordonError } from '../platform/errors.js';

export interface ResolverBackup {
  path: string;
  kind: 'file' | 'symlink';
  content?: string;
  target?: string;
  /** The drop-in written for systemd-resolved, removed on restore. */
  resolvedDropIn?: string;
}

/**
 * systemd-resolved, where it runs: its stub (127.0.0.53) is what programs that skip
 * resolv.conf ask. Commands and paths are parameters so the sequence can be tested on a
 * machine without systemd.
 */
export interface SystemdResolved {
  /** Whether systemd-resolved runs here. */
  active(): boolean;
  /** Runs `systemctl` or `resolvectl`; throws on failure. */
  exec(cmd: string, args: string[]): void;
  dropInDir: string;
}

export const hostResolved: SystemdResolved = {
  active() {
    if (!existsSync('/run/systemd/resolve/stub-resolv.conf')) return false;
    try {
      execFileSync('systemctl', ['is-active', '--quiet', 'systemd-resolved'], {
        stdio: 'ignore',
        timeout: 5000,
      });
      return true;
    } catch {
      return false;
    }
  },
  exec(cmd, args) {
    // Well inside the 20 s the step waits for the daemon to be ready.
    execFileSync(cmd, args, { stdio: 'ignore', timeout: 8000 });
  },
  dropInDir: '/etc/systemd/resolved.conf.d',
};

const DROP_IN = 'zz-cordon-egress.conf';

/**
 * Points systemd-resolved at the proxy, before the proxy binds port 53: a drop-in makes
 * 127.0.0.1 the global server for every domain (`Domains=~.`, no cache of its own, so every
 * answer passes the proxy and its set updates) and turns its stub listener off, which frees
 * port 53 so the proxy can bind every address (127.0.0.53 included, and the bridges the
 * container redirect needs); then the service is restarted (the docker daemon and running
 * containers are untouched). Its queries to the links' own servers are dropped by the
 * fence anyway (only the proxy's user may send DNS out). Best effort: returns the
 * drop-in's path, or undefined with the reason in `warn` when it could not.
 */
export function pointSystemdResolved(sd: SystemdResolved, warn: (why: string) => void): string | undefined {
  if (!sd.active()) return undefined;
  const dropIn = join(sd.dropInDir, DROP_IN);
  try {
    mkdirSync(sd.dropInDir, { recursive: true, mode: 0o755 });
    writeFileSync(
      dropIn,
      '# written by Cordon egress: systemd-resolved asks the proxy for every name\n[Resolve]\nDNS=127.0.0.1\nDomains=~.\nCache=no\nDNSStubListener=no\n',
      { mode: 0o644 },
    );
    sd.exec('systemctl', ['restart', 'systemd-resolved']);
    return dropIn;
  } catch (e) {
    warn(
      `systemd-resolved could not be pointed at the proxy (${(e as Error).message}); its upstream queries stay blocked`,
    );
    rmSync(dropIn, { force: true });
    return undefined;
  }
}

export function restoreSystemdResolved(sd: SystemdResolved, dropIn: string): void {
  rmSync(dropIn, { force: true });
  try {
    sd.exec('systemctl', ['restart', 'systemd-resolved']);
  } catch {
    // The drop-in is gone: resolved reads its own settings at its next start.
  }
}

export function nameservers(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m) {
      const addr = m[1].replace(/%.*$/, '');
      if (isIP(addr)) out.push(addr);
    }
  }
  return out;
}

/**
 * The upstream the proxy should ask: the first nameserver of resolv.conf, or, behind
 * systemd-resolved's stub (127.0.0.53), the servers resolved itself uses.
 */
export function detectUpstreams(
  resolvConf = '/etc/resolv.conf',
  resolvedConf = '/run/systemd/resolve/resolv.conf',
): string[] {
  let servers = existsSync(resolvConf) ? nameservers(readFileSync(resolvConf, 'utf8')) : [];
  if (servers.some((s) => s.startsWith('127.0.0.5')) && existsSync(resolvedConf)) {
    servers = nameservers(readFileSync(resolvedConf, 'utf8'));
  }
  servers = servers.filter((s) => !s.startsWith('127.') && s !== '::1');
  if (!servers.length) {
    throw new CordonError({
      what: 'egress: could not find the host resolver to forward allowed names to',
      why: `${resolvConf} names no usable nameserver outside loopback`,
      fix: 'set `dns-upstream:` to the resolver address the runner should use',
      input: 'dns-upstream',
    });
  }
  return servers.slice(0, 1);
}

/** Points resolv.conf at the proxy; returns what to restore. Keeps `search` and `options` lines. */
export function pointResolver(path = '/etc/resolv.conf', v6 = true): ResolverBackup {
  const st = lstatSync(path, { throwIfNoEntry: false });
  const current = existsSync(path) ? readFileSync(path, 'utf8') : '';
  const kept = current.split('\n').filter((l) => /^\s*(search|domain|options)\s/.test(l));
  const text = [
    '# written by Cordon egress: every lookup goes through its proxy',
    'nameserver 127.0.0.1',
    ...(v6 ? ['nameserver ::1'] : []),
    ...kept,
    '',
  ].join('\n');
  if (st?.isSymbolicLink()) {
    const target = readlinkSync(path);
    const tmp = `${path}.cordon-tmp`;
    writeFileSync(tmp, text, { mode: 0o644 });
    renameSync(tmp, path);
    return { path, kind: 'symlink', target };
  }
  writeFileSync(path, text);
  return { path, kind: 'file', content: current };
}

/**
 * resolv.conf goes back BEFORE systemd-resolved restarts: a resolved starting while it
 * still names the proxy imports 127.0.0.1 and ::1 as its own servers, and keeps them after
 * the symlink to its stub is back (it skips re-reading its own file), so whatever listened
 * on 127.0.0.1:53 later would answer for the host (seen with a real resolved 252:
 * test/e2e/resolved-live.test.ts).
 */
export function restoreResolver(b: ResolverBackup, sd: SystemdResolved = hostResolved): void {
  try {
    if (b.kind === 'symlink' && b.target) {
      if (existsSync(b.path) || lstatSync(b.path, { throwIfNoEntry: false })) unlinkSync(b.path);
      symlinkSync(b.target, b.path);
    } else {
      writeFileSync(b.path, b.content ?? '');
    }
  } finally {
    // Even when the file could not be put back: resolved must not stay pointed at a
    // proxy that is gone, with its own stub off.
    if (b.resolvedDropIn) restoreSystemdResolved(sd, b.resolvedDropIn);
  }
}
