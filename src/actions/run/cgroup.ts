/**
 * A cgroup (v2) of the command's own: every process it starts stays in it whatever it
 * does (`setsid`, double fork, `nohup`), and `cgroup.kill` ends them all at once. Creating
 * one takes root (or a root daemon); without it `run` falls back to a process group and
 * says so.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import net from 'node:net';
import { cgroup2Mount, killCgroup } from '../../platform/cgroup2.js';
import type { CgroupReply, CgroupRequest } from '../../rootd/protocol.js';

// run.ts names the helper's socket through this module.
export { CGROUP_SOCKET } from '../../rootd/protocol.js';

export interface Containment {
  kind: 'cgroup' | 'process-group';
  /** The cgroup's path (cgroup); with `daemon`, set once the command is in it. */
  path?: string;
  /** Why the weaker containment was used (process-group). */
  reason?: string;
  /**
   * Not root: the egress daemon's root helper makes the cgroup and moves the command in
   * (its socket, and the cgroup2 mount as this process sees it).
   */
  daemon?: { socket: string; mount: string };
  /** The daemon's cgroup, once the command is in it. */
  session?: CgroupSession;
}

/** A cgroup the daemon made for this step: held by one open connection until removed. */
export interface CgroupSession {
  name: string;
  /** Asks the daemon to kill what is left and remove the cgroup. */
  remove(timeoutMs?: number): Promise<CgroupReply>;
}

/**
 * Asks the daemon's root helper to put `pid` (run's held shell) in a new cgroup. The
 * connection stays open while the command runs: if this process dies, the helper kills
 * the cgroup at once and reports it.
 */
export function joinCgroup(socket: string, pid: number, timeoutMs = 5000): Promise<CgroupSession> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    let buf = '';
    let waiting: ((r: CgroupReply) => void) | undefined;
    const fail = (e: Error): void => {
      clearTimeout(timer);
      c.destroy();
      reject(e);
    };
    const timer = setTimeout(
      () => fail(new Error(`no answer from ${socket} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    c.setEncoding('utf8');
    c.on('connect', () => c.write(JSON.stringify({ op: 'join', pid } satisfies CgroupRequest) + '\n'));
    c.on('error', (e) => fail(e));
    c.on('close', () => {
      waiting?.({ error: 'the daemon closed the connection' });
      fail(new Error('the daemon closed the connection'));
    });
    c.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      let reply: CgroupReply;
      try {
        reply = JSON.parse(buf.slice(0, nl)) as CgroupReply;
      } catch {
        return fail(new Error(`an unreadable answer from ${socket}`));
      }
      buf = buf.slice(nl + 1);
      if (waiting) {
        const w = waiting;
        waiting = undefined;
        return w(reply);
      }
      clearTimeout(timer);
      if (!reply.name) return fail(new Error(reply.error ?? 'no cgroup name in the answer'));
      // Held open, but never what keeps run alive: if run ends without removing, the daemon kills the cgroup.
      c.unref();
      resolve({
        name: reply.name,
        remove(removeTimeoutMs = 5000) {
          return new Promise<CgroupReply>((done) => {
            const t = setTimeout(() => done({ error: 'no answer to remove' }), removeTimeoutMs);
            waiting = (r) => {
              clearTimeout(t);
              done(r);
            };
            c.write(JSON.stringify({ op: 'remove' } satisfies CgroupRequest) + '\n');
          });
        },
      });
    });
  });
}

/** The cgroup this process is in, relative to the cgroup2 mount (`0::/path`). */
function ownCgroup(): string {
  try {
    const line = readFileSync('/proc/self/cgroup', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('0::'));
    return line ? line.slice(3) : '/';
  } catch {
    return '/';
  }
}

/**
 * Creates an empty cgroup for the command, beside this process's own (or at the mount's
 * root). Returns the weaker containment with the reason when it cannot.
 */
export function createCgroup(
  opts: { mount?: string; uid?: number; daemonSocket?: string } = {},
): Containment {
  const uid = opts.uid ?? process.getuid?.() ?? -1;
  const mount = opts.mount ?? cgroup2Mount();
  if (!mount) {
    return { kind: 'process-group', reason: 'no cgroup2 file system is mounted (see /proc/mounts)' };
  }
  if (uid !== 0) {
    if (opts.daemonSocket && existsSync(opts.daemonSocket))
      return { kind: 'cgroup', daemon: { socket: opts.daemonSocket, mount } };
    return {
      kind: 'process-group',
      reason:
        'run is not root and no egress daemon runs to make a cgroup for it: a process that calls setsid or double-forks leaves the process group and can outlive the step',
    };
  }
  const name = `cordon-run-${process.pid}-${randomBytes(4).toString('hex')}`;
  const errors: string[] = [];
  // The mount's root first: a child of our own cgroup may be refused when that cgroup
  // holds processes and has controllers enabled (the "no internal processes" rule).
  for (const parent of [mount, join(mount, ownCgroup())]) {
    const path = join(parent, name);
    try {
      mkdirSync(path);
      if (!existsSync(join(path, 'cgroup.procs'))) throw new Error('no cgroup.procs in the new directory');
      track(path);
      return { kind: 'cgroup', path };
    } catch (e) {
      errors.push(`${path}: ${(e as Error).message}`);
      try {
        rmdirSync(path);
      } catch {
        // Not created.
      }
    }
  }
  return { kind: 'process-group', reason: `could not create a cgroup (${errors.join('; ')})` };
}

/** Cgroups made by this process: killed and removed when it exits, unless gone by then. */
const live = new Set<string>();
let hooked = false;

function track(path: string): void {
  live.add(path);
  if (hooked) return;
  hooked = true;
  // When run fails between making the cgroup and the command's end, nothing is left behind.
  process.once('exit', () => {
    for (const p of live) if (existsSync(p)) killCgroup(p, 500);
  });
}

/** Asks the daemon to remove the cgroup it made (killing what is left); whether it is gone. */
export async function removeDaemonCgroup(c: Containment): Promise<boolean> {
  if (!c.session) return false;
  const r = await c.session.remove();
  return r.removed === true;
}
