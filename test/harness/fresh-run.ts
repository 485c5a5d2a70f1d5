/**
 * Runs a module's text as root on a fresh /run (a tmpfs) in a private mount namespace of its
 * own (unshare), so a test of what is made and removed under /run never touches the host's.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';

/**
 * Runs `script` (an ES module's text, run by node with tsx) on a fresh /run; with
 * `withoutCgroup2`, /sys/fs/cgroup unmounted too (as inside `ip netns exec`). Bounded by
 * `timeoutMs`; returns the finished process.
 */
export function runOnFreshRun(
  script: string,
  opts: { timeoutMs: number; withoutCgroup2?: boolean },
): SpawnSyncReturns<string> {
  const unmount = opts.withoutCgroup2 ? ' && umount -l /sys/fs/cgroup 2>/dev/null;' : ' &&';
  return spawnSync(
    'unshare',
    [
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      `mount -t tmpfs -o mode=0755 cordon-test /run${unmount} exec "$0" --import tsx --input-type=module -e "$1"`,
      process.execPath,
      script,
    ],
    { encoding: 'utf8', timeout: opts.timeoutMs },
  );
}

/** What a `runOnFreshRun` script printed (one JSON value), or its status and output when it printed none. */
export function printed(r: SpawnSyncReturns<string>): unknown {
  try {
    return JSON.parse(r.stdout);
  } catch {
    return `status ${r.status}: ${r.stdout} ${r.stderr}`;
  }
}
