/**
 * What the tests and the fences they run make on the machine, by the names they give it,
 * as one sorted list: global-setup.mjs keeps it, global-teardown.mjs fails the run for
 * anything in it that was not there at the start. Only new entries count, so what the
 * machine had before (a runner's own nft tables, an earlier run's leftovers) is no error.
 * Cheap (a few reads and two short commands, well under a second): run on every test run.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** The mark an e2e file leaves in the run's directory (environment.mjs): the machine is checked then. */
export const E2E_MARK = '.e2e-ran';

const list = (dir) => {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
};

const read = (file) => {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
};

const lines = (cmd, args) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 });
  return r.status === 0 ? r.stdout.split('\n').filter(Boolean) : [];
};

/**
 * Names of the run's test users (test/harness/users.ts: a prefix, then the jest process's
 * pid modulo 100000) and of Cordon's own (`cordon-agent-*`, `cordon-dns`, ...).
 */
const ours = (pid) => {
  const suffix = String(pid % 100000);
  return (name) => name.startsWith('cordon-') || (/^c[a-z]+\d*$/.test(name) && name.endsWith(suffix));
};

/**
 * The machine's state, one `kind: name` a line. Not /tmp: each run has a TMPDIR of its
 * own, checked by global-teardown.mjs, and other tools (a bundle's `cordon-ncc-*`, another
 * checkout's unit tests) make /tmp/cordon-* there meanwhile.
 */
export function machineState(pid = process.pid) {
  const mine = ours(pid);
  const names = (file) =>
    read(file)
      .split('\n')
      .map((l) => l.split(':')[0])
      .filter((n) => n && mine(n));
  const cgroups = [];
  for (const top of list('/sys/fs/cgroup')) {
    if (top.startsWith('cordon')) cgroups.push(top);
    // One level down: cgroup2 at /sys/fs/cgroup/unified on a hybrid machine, or a slice.
    for (const sub of list(`/sys/fs/cgroup/${top}`))
      if (sub.startsWith('cordon')) cgroups.push(`${top}/${sub}`);
  }
  const state = [
    ...list('/run')
      .filter((n) => n.startsWith('cordon'))
      .map((n) => `run: /run/${n}`),
    ...list('/run/cordon').map((n) => `run: /run/cordon/${n}`),
    ...names('/etc/passwd').map((n) => `user: ${n}`),
    ...names('/etc/group').map((n) => `group: ${n}`),
    ...list('/etc/sudoers.d')
      .filter((n) => n.startsWith('cordon'))
      .map((n) => `sudoers: /etc/sudoers.d/${n}`),
    ...lines('ip', ['netns', 'list']).map((l) => `netns: ${l.split(' ')[0]}`),
    ...list('/etc/netns').map((n) => `netns: /etc/netns/${n}`),
    ...lines('nft', ['list', 'tables']).map((l) => `nft: ${l}`),
    ...cgroups.map((n) => `cgroup: /sys/fs/cgroup/${n}`),
    ...read('/proc/self/mountinfo')
      .split('\n')
      .map((l) => l.split(' ')[4])
      .filter((p) => p && p.includes('cordon'))
      .map((p) => `mount: ${p}`),
  ];
  return [...new Set(state)].sort();
}

/** What is in `after` and was not in `before`. */
export function newSince(before, after) {
  const had = new Set(before);
  return after.filter((e) => !had.has(e));
}
