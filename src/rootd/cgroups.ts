/**
 * Cgroups for a `run` step that is not root, made by the egress daemon's root helper.
 * Moving a process into a cgroup takes write access to the cgroup both have in common
 * (the root of the hierarchy), which only root has; so `run` holds its command stopped,
 * asks here, and the helper creates `cordon-run-<pid>-<random>` at the root of the cgroup2
 * hierarchy and moves the pid in. Everything in it stays root's: nothing inside can move
 * out, or lock `run` out of its files. `run` signals the processes it sees in
 * `cgroup.procs` itself (same user) and, at the end, has the helper kill what is left with
 * `cgroup.kill` and remove the cgroup.
 *
 * Only the runner user and root may connect (the socket is the runner's, 0600: access.ts).
 * The helper moves only a stopped process running exactly `run`'s held shell, owned by the
 * runner user (neither root nor the proxy's user), and in none of its cgroups; it removes
 * (kills) only the cgroup of the connection that made it, so no one can use it to kill a
 * process they could not kill themselves. If `run` dies first, the cgroup is killed at
 * once and reported (`run`'s record of the command cannot be trusted then). Each request is
 * checked for its shape before anything in it is used: a bad line gets an error and the
 * connection is closed, and the helper goes on serving.
 */
import net from 'node:net';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { cgroup2Mount, killCgroup } from '../platform/cgroup2.js';
import {
  CGROUP_SOCKET,
  cgroupMountDir,
  removeStateRoot,
  type CgroupEnd,
  type CgroupReply,
  type CgroupRequest,
} from './protocol.js';
import { socketForClient, type Client } from './access.js';

const NAME = /^cordon-run-\d+-[0-9a-f]{8}$/;

/**
 * Where cgroup2 is for this process: the host's mount, or, inside `ip netns exec` (which
 * mounts a fresh /sys without it), a mount of our own in the state directory. The
 * hierarchy is the same, so a name here is the same cgroup at the caller's mount.
 */
function findMount(dir: string): { mount: string; own?: boolean } | undefined {
  const found = cgroup2Mount();
  if (found) return { mount: found };
  // Beside the fence's state directory, never making it or the state root: a helper that
  // starts after its fence was torn down (a setup that failed) must leave nothing behind.
  if (!existsSync(dir)) return undefined;
  const own = cgroupMountDir(dir);
  try {
    if (!existsSync(own)) mkdirSync(own, { mode: 0o755 });
    if (!existsSync(join(own, 'cgroup.procs'))) execFileSync('mount', ['-t', 'cgroup2', 'cgroup2', own]);
    return { mount: own, own: true };
  } catch {
    return undefined;
  }
}

function ownerOf(pid: number): { uid: number; gid: number; cgroup: string } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
  const gid = Number(/^Gid:\s+(\d+)/m.exec(status)?.[1]);
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('0::'));
  return { uid, gid, cgroup: line ? line.slice(3) : '/' };
}

/** The held shell `run` starts (`spawn.ts`): the only process the helper moves. */
const HELD_SHELL = ['/bin/sh', '-c', 'kill -STOP $$; exec "$@"'];

/**
 * Checks that `pid` is a `run` command's held shell: stopped, running exactly the shell
 * `run` starts, owned by neither root nor the proxy's user, and in no cgroup made here
 * (the agent cannot move itself, or anyone else's process, out of its cgroup). Returns
 * its owner, or the reason it is refused.
 */
export function heldShellOwner(
  pid: number,
  proxyUid: number | undefined,
  clientUid?: number,
): { uid: number; gid: number } | { error: string } {
  if (!Number.isInteger(pid) || pid <= 1) return { error: 'pid must be a process id above 1' };
  let owner: { uid: number; gid: number; cgroup: string };
  let stat: string;
  let argv: string[];
  try {
    owner = ownerOf(pid);
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return { error: `no process ${pid}` };
  }
  if (!Number.isInteger(owner.uid) || owner.uid === 0 || owner.uid === proxyUid)
    return { error: `process ${pid} is not a runner user's` };
  if (clientUid !== undefined && owner.uid !== clientUid)
    return { error: `process ${pid} is not the runner user's (uid ${clientUid})` };
  if (stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'T') return { error: `process ${pid} is not stopped` };
  if (HELD_SHELL.some((a, i) => argv[i] !== a)) return { error: `process ${pid} is not run's held shell` };
  if (owner.cgroup.split('/').some((p) => NAME.test(p)))
    return { error: `process ${pid} is already in a cgroup made for run` };
  return { uid: owner.uid, gid: owner.gid };
}

/** Makes the cgroup and moves `pid` in; on any failure nothing is left. Returns its name. */
function makeCgroup(mount: string, pid: number): string {
  const name = `cordon-run-${pid}-${randomBytes(4).toString('hex')}`;
  const path = join(mount, name);
  mkdirSync(path);
  try {
    // As root, the check on the common ancestor passes.
    writeFileSync(join(path, 'cgroup.procs'), String(pid));
  } catch (e) {
    rmdirSync(path);
    throw e;
  }
  return name;
}

/** Live sessions at most: one per running `run` step. */
const MAX_SESSIONS = 16;
/** Connections at once, with or without a session: past this the kernel's queue waits. */
const MAX_CONNECTIONS = MAX_SESSIONS + 8;
/** A request line's bytes at most (one is a few dozen). */
const MAX_REQUEST = 4096;

/** A request line as `CgroupRequest`, or why it is not one. Nothing else in it is read. */
export function parseCgroupRequest(line: string): CgroupRequest | { error: string } {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return { error: 'the request is not JSON' };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    return { error: 'the request is not an object' };
  const { op, pid } = v as Record<string, unknown>;
  if (op === 'remove') return { op };
  if (op !== 'join') return { error: 'op must be join or remove' };
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 1)
    return { error: 'join needs pid, a process id above 1' };
  return { op, pid };
}

/**
 * Serves `cgroup.sock` in the daemon's state directory (as root). One connection is one
 * cgroup: `{"op":"join","pid":N}` makes it and answers `{"name"}`; the connection stays
 * open while the command runs; `{"op":"remove"}` kills what is left, removes it and
 * answers `{"removed","alive"}`. A connection that closes before that (run was killed,
 * say by the agent it runs) has its cgroup killed at once, and `ended` is told it was
 * orphaned. Returns a stop function that kills and removes every cgroup still left, or
 * undefined when there is no cgroup2.
 */
export async function serveCgroups(
  dir: string,
  opts: { proxyUid?: number; client: Client; ended?: (e: CgroupEnd) => void },
): Promise<(() => void) | undefined> {
  const found = findMount(dir);
  if (!found) return undefined;
  const { mount } = found;
  const live = new Map<net.Socket, { name: string; pid: number }>();
  const finish = (c: net.Socket, end: CgroupEnd['end']): { removed: boolean; alive: number } => {
    const s = live.get(c);
    if (!s) return { removed: false, alive: 0 };
    live.delete(c);
    const r = killCgroup(join(mount, s.name), 2000);
    opts.ended?.({ name: s.name, pid: s.pid, end, alive: r.alive });
    return { removed: r.removed, alive: r.alive };
  };
  const server = net.createServer((c) => {
    c.on('error', () => c.destroy());
    c.on('close', () => finish(c, 'orphaned'));
    // Until it has a cgroup a connection has 5 s; after that it lives as long as the command.
    c.setTimeout(5000, () => {
      if (!live.has(c)) c.destroy();
    });
    let buf = '';
    c.setEncoding('utf8');
    const refuse = (error: string): void => void c.end(JSON.stringify({ error }) + '\n');
    c.on('data', (d: string) => {
      if (c.writableEnded) return;
      buf += d;
      if (Buffer.byteLength(buf) > MAX_REQUEST) return refuse('the request is too long');
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        // Whatever goes wrong with one request ends its connection, never the helper.
        try {
          const req = parseCgroupRequest(line);
          if ('error' in req) return refuse(req.error);
          if (req.op === 'join' && !live.has(c)) {
            const owner =
              live.size >= MAX_SESSIONS
                ? { error: 'too many cgroups at once' }
                : heldShellOwner(req.pid, opts.proxyUid, opts.client.uid);
            if ('error' in owner) return refuse(owner.error);
            const name = makeCgroup(mount, req.pid);
            live.set(c, { name, pid: req.pid });
            const reply: CgroupReply = { name };
            c.write(JSON.stringify(reply) + '\n');
          } else if (req.op === 'remove' && live.has(c)) {
            return void c.end(JSON.stringify(finish(c, 'removed')) + '\n');
          } else {
            return refuse('one join, then one remove, per connection');
          }
        } catch (e) {
          return refuse(e instanceof Error ? e.message : String(e));
        }
      }
    });
  });
  server.maxConnections = MAX_CONNECTIONS;
  const path = join(dir, CGROUP_SOCKET);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  socketForClient(path, opts.client);
  return () => {
    server.close();
    for (const c of [...live.keys()]) finish(c, 'orphaned');
    if (found.own) {
      try {
        execFileSync('umount', ['-l', mount]);
        rmdirSync(mount);
      } catch {
        // Left mounted in this namespace only; it goes with it.
      }
      // The mount point may have been the last thing there (teardown or a failed setup
      // ran first): the state root then goes too, as teardown would have removed it.
      removeStateRoot(dirname(mount));
    }
  };
}
