/**
 * The root helper's own cgroup2 mount (src/rootd/cgroups.ts): inside `ip netns exec` there is
 * no cgroup2 in /sys, so the helper mounts one beside the fence's state directory. A helper that
 * starts after its fence was torn down (a setup that failed before it loaded) must not make
 * the state root again: an empty /run/cordon was left on the machine after test runs. The test
 * takes cgroup2 away in a private mount namespace of its own (unshare), never the host's.
 */
import { expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { inPrivateMounts } from '../../harness/mounts.js';

const root = process.getuid?.() === 0;
if (!root && process.env.CI === 'true') throw new Error('cgroups-mount.test.ts needs root in CI');
const maybe = root ? test : test.skip;

/** serveCgroups(dir) where cgroup2 is not mounted; prints whether it served. */
function serveWithoutCgroup2(dir: string): string {
  const mod = join(process.cwd(), 'src/rootd/cgroups.ts');
  const script = `const { serveCgroups } = await import(${JSON.stringify(mod)});
    const stop = await serveCgroups(${JSON.stringify(dir)}, { client: { uid: 0, gid: 0 } }).catch((e) => 'error ' + e.message);
    console.log(typeof stop === 'function' ? 'served' : String(stop ?? 'none'));
    if (typeof stop === 'function') stop();
    process.exit(0);`;
  const [unshare, ...args] = inPrivateMounts(
    'umount -l /sys/fs/cgroup 2>/dev/null; exec "$0" --import tsx --input-type=module -e "$1"',
    [process.execPath, script],
  );
  const r = spawnSync(unshare, args, { encoding: 'utf8', timeout: 30000 });
  return `${r.stdout}`.trim() || `status ${r.status}: ${r.stderr}`;
}

maybe(
  'a helper whose fence directory is gone makes no state root and no mount point',
  () => {
    const base = `/run/cordon-test-cg${process.pid}`;
    rmSync(base, { recursive: true, force: true });
    try {
      expect(serveWithoutCgroup2(join(base, 'egress-gone'))).toBe('none');
      expect(existsSync(base)).toBe(false);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  },
  40000,
);

maybe(
  'the control: with its fence directory there, it mounts cgroup2 beside it and serves',
  () => {
    const base = `/run/cordon-test-cg${process.pid}`;
    const dir = join(base, 'egress-here');
    mkdirSync(dir, { recursive: true });
    try {
      expect(serveWithoutCgroup2(dir)).toBe('served');
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  },
  40000,
);
