/**
 * Pointing the host's resolver at the proxy and back: resolv.conf as a file and as
 * systemd-resolved's symlink, and systemd-resolved itself. No systemd runs here, so its
 * commands go to a recorder (what would run, in order); the files are real.
 */
import { afterAll, describe, expect, test } from '@jest/globals';
import {
  existsSync,
  lstatSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import {
  detectUpstreams,
  pointResolver,
  pointSystemdResolved,
  restoreResolver,
  type SystemdResolved,
} from '../../../src/fence/resolver.js';
import { tempDir } from '../../harness/tmp.js';

const dirs: string[] = [];
function tmp(): string {
  const d = tempDir('cordon-resolver-');
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function recorder(
  dir: string,
  opts: { active?: boolean; fail?: boolean } = {},
): SystemdResolved & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    dropInDir: join(dir, 'resolved.conf.d'),
    active: () => opts.active ?? true,
    exec(cmd, args) {
      calls.push([cmd, ...args].join(' '));
      if (opts.fail) throw new Error('Job for systemd-resolved.service failed');
    },
  };
}

describe('resolver', () => {
  test('a resolv.conf file is rewritten in place (search and options kept) and restored byte for byte', () => {
    const dir = tmp();
    const path = join(dir, 'resolv.conf');
    const before = 'search corp.example\nnameserver 10.0.0.2\noptions edns0 trust-ad\n';
    writeFileSync(path, before);
    const sd = recorder(dir, { active: false });
    expect(pointSystemdResolved(sd, () => undefined)).toBeUndefined();
    const b = pointResolver(path, true);
    const now = readFileSync(path, 'utf8');
    expect(now).toMatch(/^nameserver 127\.0\.0\.1$/m);
    expect(now).toMatch(/^nameserver ::1$/m);
    expect(now).toContain('search corp.example');
    expect(now).toContain('options edns0 trust-ad');
    expect(now).not.toContain('10.0.0.2');
    expect(sd.calls).toEqual([]);
    restoreResolver(b, sd);
    expect(readFileSync(path, 'utf8')).toBe(before);
  });

  test('behind systemd-resolved: the stub symlink is replaced, resolved gets a drop-in and a restart; restore undoes both', () => {
    const dir = tmp();
    const stub = join(dir, 'stub-resolv.conf');
    writeFileSync(stub, 'nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch cloudapp.net\n');
    const path = join(dir, 'resolv.conf');
    symlinkSync(stub, path);
    const sd = recorder(dir);
    const resolvedDropIn = pointSystemdResolved(sd, () => undefined);
    const b = { ...pointResolver(path, false), resolvedDropIn };
    expect(lstatSync(path).isSymbolicLink()).toBe(false);
    expect(readFileSync(path, 'utf8')).toMatch(/^nameserver 127\.0\.0\.1$/m);
    expect(readFileSync(path, 'utf8')).not.toMatch(/::1/);
    expect(b.resolvedDropIn).toBe(join(sd.dropInDir, 'zz-cordon-egress.conf'));
    const dropIn = readFileSync(b.resolvedDropIn as string, 'utf8');
    expect(dropIn).toMatch(/^\[Resolve\]$/m);
    expect(dropIn).toMatch(/^DNS=127\.0\.0\.1$/m);
    expect(dropIn).toMatch(/^Domains=~\.$/m);
    expect(dropIn).toMatch(/^DNSStubListener=no$/m);
    expect(sd.calls).toEqual(['systemctl restart systemd-resolved']);
    restoreResolver(b, sd);
    expect(readlinkSync(path)).toBe(stub);
    expect(existsSync(b.resolvedDropIn as string)).toBe(false);
    expect(sd.calls).toEqual(['systemctl restart systemd-resolved', 'systemctl restart systemd-resolved']);
  });

  test('resolv.conf that cannot be put back still has the drop-in removed and resolved restarted, then the error', () => {
    const dir = tmp();
    const sd = recorder(dir);
    const resolvedDropIn = pointSystemdResolved(sd, () => undefined)!;
    // Its directory is gone: writing it back fails.
    const b = {
      path: join(dir, 'gone', 'resolv.conf'),
      kind: 'file' as const,
      content: 'x\n',
      resolvedDropIn,
    };
    expect(() => restoreResolver(b, sd)).toThrow(/ENOENT/);
    expect(existsSync(resolvedDropIn)).toBe(false);
    expect(sd.calls).toEqual(['systemctl restart systemd-resolved', 'systemctl restart systemd-resolved']);
  });

  test('systemd-resolved refusing the restart: a warning and no drop-in left; resolv.conf is still pointed', () => {
    const dir = tmp();
    const path = join(dir, 'resolv.conf');
    writeFileSync(path, 'nameserver 10.0.0.2\n');
    const sd = recorder(dir, { fail: true });
    const warnings: string[] = [];
    expect(pointSystemdResolved(sd, (w) => warnings.push(w))).toBeUndefined();
    expect(existsSync(join(sd.dropInDir, 'zz-cordon-egress.conf'))).toBe(false);
    expect(warnings.join('')).toContain('systemd-resolved could not be pointed at the proxy');
    pointResolver(path, true);
    expect(readFileSync(path, 'utf8')).toMatch(/^nameserver 127\.0\.0\.1$/m);
  });

  test('the upstream behind the stub is the one resolved itself uses; none at all is an error naming dns-upstream', () => {
    const dir = tmp();
    const conf = join(dir, 'resolv.conf');
    const resolved = join(dir, 'resolved-resolv.conf');
    writeFileSync(conf, 'nameserver 127.0.0.53\n');
    writeFileSync(resolved, 'nameserver 168.63.129.16\n');
    expect(detectUpstreams(conf, resolved)).toEqual(['168.63.129.16']);
    writeFileSync(conf, 'nameserver 127.0.0.1\n');
    expect(() => detectUpstreams(conf, join(dir, 'none'))).toThrow(/dns-upstream/);
  });
});
