/**
 * The state root, /run/cordon (src/rootd/protocol.ts): made by the first fence that needs
 * it, with a mark (the sticky bit), and removed by whichever fence, or root helper, leaves it
 * empty. An empty /run/cordon was left on the machine after test runs: the fence that made
 * it ended first while another's state was there (a test's two fences), or a fence was
 * stopped without its teardown (the demo, `World.destroy`), and only the maker, by its
 * state.json, could remove it. Each case runs in a private mount namespace of its own with
 * a fresh /run (unshare, a tmpfs), never on the host's /run/cordon.
 */
import { expect, test } from '@jest/globals';
import { join } from 'node:path';
import { printed, runOnFreshRun } from '../../harness/fresh-run.js';

const root = process.getuid?.() === 0;
if (!root && process.env.CI === 'true') throw new Error('state-root.test.ts needs root in CI');
const maybe = root ? test : test.skip;

/**
 * Runs `body` (a module's text, with `p`: src/rootd/protocol.ts, `c`: src/rootd/cgroups.ts,
 * `fs`: node:fs, and `root()`: what /run/cordon is now) on a fresh /run in a private mount
 * namespace, also without cgroup2 (as inside `ip netns exec`); returns what it printed.
 */
function onFreshRun(body: string): unknown {
  const src = (f: string): string => JSON.stringify(join(process.cwd(), 'src/rootd', f));
  const script = `const p = await import(${src('protocol.ts')});
    const c = await import(${src('cgroups.ts')});
    const fs = await import('node:fs');
    const root = () => (fs.existsSync('/run/cordon') ? (fs.readdirSync('/run/cordon').sort().join(',') || 'empty') : 'gone');
    ${body}
    process.exit(0);`;
  return printed(runOnFreshRun(script, { timeoutMs: 30000, withoutCgroup2: true }));
}

maybe(
  'two fences overlap and the one that made /run/cordon ends first: the other removes it when it ends',
  () => {
    expect(
      onFreshRun(`p.makeStateDir('a');
        p.makeStateDir('b');
        p.removeState('a');
        const between = root();
        p.removeState('b');
        console.log(JSON.stringify([between, root()]));`),
    ).toEqual(['egress-b', 'gone']);
  },
  40000,
);

maybe(
  'a fence stopped without its teardown, its state removed by its id alone (the demo, World.destroy), leaves no /run/cordon',
  () => {
    expect(
      onFreshRun(`p.makeStateDir('a');
        const made = fs.statSync('/run/cordon').mode & 0o7777;
        p.removeState('a');
        console.log(JSON.stringify([made.toString(8), root()]));`),
    ).toEqual(['1755', 'gone']);
  },
  40000,
);

maybe(
  'a /run/cordon no fence made stays when the fences in it are done, empty and as it was',
  () => {
    expect(
      onFreshRun(`fs.mkdirSync('/run/cordon', { mode: 0o755 });
        p.makeStateDir('a');
        p.makeStateDir('b');
        p.removeState('b');
        p.removeState('a');
        console.log(JSON.stringify([(fs.statSync('/run/cordon').mode & 0o7777).toString(8), root()]));`),
    ).toEqual(['755', 'empty']);
  },
  40000,
);

maybe(
  'the root helper whose cgroup2 mount point is the last thing in /run/cordon removes it once it unmounts',
  () => {
    // Its fence's state gone first (a failed setup, or teardown from a mount namespace where
    // the helper's mount is one, so its mount point stays busy there).
    expect(
      onFreshRun(`p.makeStateDir('a');
        const stop = await c.serveCgroups(p.stateDir('a'), { client: { uid: 0, gid: 0 } });
        fs.rmSync(p.stateDir('a'), { recursive: true, force: true });
        p.removeStateRoot();
        const before = root();
        stop?.();
        console.log(JSON.stringify([typeof stop, before, root()]));`),
    ).toEqual(['function', 'cgroup2-egress-a', 'gone']);
  },
  40000,
);
