/**
 * The host's resolver configuration: which upstream it uses today, and pointing it at
 * the proxy. `/etc/resolv.conf` is written in place when it is a file (inside `ip netns
 * exec` it is a bind mount that cannot be replaced), and replaced when it is a symlink
 * (systemd-resolved's stub), with what was there kept to restore.
 */
import {
  existsSync,
  lstatSync,
  readFileSync,
  readlinkSync,
  renameSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { isIP } from 'node:net';
import { CordonError } from '../core/errors.js';

export interface ResolverBackup {
  path: string;
  kind: 'file' | 'symlink';
  content?: string;
  target?: string;
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

export function restoreResolver(b: ResolverBackup): void {
  if (b.kind === 'symlink' && b.target) {
    if (existsSync(b.path) || lstatSync(b.path, { throwIfNoEntry: false })) unlinkSync(b.path);
    symlinkSync(b.target, b.path);
  } else {
    writeFileSync(b.path, b.content ?? '');
  }
}
