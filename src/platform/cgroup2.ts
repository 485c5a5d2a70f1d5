/**
 * The cgroup2 file system, as both ends of a `run` cgroup use it: `run` (its own cgroup when
 * root) and the egress daemon's root helper (one made for a `run` that is not root).
 */
import { existsSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The cgroup2 mount point, from /proc/mounts (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a hybrid layout). */
export function cgroup2Mount(mounts = '/proc/mounts'): string | undefined {
  let text: string;
  try {
    text = readFileSync(mounts, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f[2] === 'cgroup2' && f[1]) return f[1].replace(/\\040/g, ' ');
  }
  return undefined;
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Pids in the cgroup now. */
export function cgroupPids(path: string): number[] {
  try {
    return readFileSync(join(path, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function populated(path: string): boolean {
  try {
    return /^populated 1$/m.test(readFileSync(join(path, 'cgroup.events'), 'utf8'));
  } catch {
    return false;
  }
}

/** Sends `signal` to every process in the cgroup; returns how many there were. */
export function signalCgroup(path: string, signal: NodeJS.Signals): number {
  const pids = cgroupPids(path);
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // Gone already.
    }
  }
  return pids.length;
}

/**
 * Kills every process in the cgroup (`cgroup.kill`, or SIGKILL to each pid on kernels
 * before 5.14 after freezing the cgroup), waits until it is empty (bounded) and removes it.
 * Returns how many processes were alive when it started, and whether the cgroup is gone.
 */
export function killCgroup(path: string, waitMs = 3000): { alive: number; removed: boolean; left: number } {
  const alive = cgroupPids(path).length;
  const deadline = Date.now() + waitMs;
  let killFile = existsSync(join(path, 'cgroup.kill'));
  if (!killFile) {
    try {
      writeFileSync(join(path, 'cgroup.freeze'), '1');
    } catch {
      // No freezer: kill in rounds.
    }
  }
  for (let round = 0; populated(path) && Date.now() < deadline; round++) {
    if (killFile) {
      try {
        writeFileSync(join(path, 'cgroup.kill'), '1');
      } catch {
        killFile = false;
      }
    }
    if (!killFile) signalCgroup(path, 'SIGKILL');
    Atomics.wait(sleeper, 0, 0, Math.min(50, 2 + round * 5));
  }
  const left = cgroupPids(path).length;
  let removed = false;
  try {
    rmdirSync(path);
    removed = true;
  } catch {
    // Still populated (a process in uninterruptible sleep): left for the runner to clean.
  }
  return { alive, removed, left };
}
