/**
 * Cgroups for a `run` step that is not root, made by the egress daemon's root helper.
 * Moving a process into a cgroup takes write access to the cgroup both have in common
 * (the root of the hierarchy), which only root has; so `run` holds its command stopped,
 * asks here, and the helper creates `cordon-run-<pid>-<random>` at the root of the cgroup2
 * hierarchy, moves the pid in, and hands `cgroup.kill` (and `cgroup.freeze`) to the
 * process's owner, so `run` can end everything in it. The directory itself stays root's:
 * nothing inside can move out, and only the helper removes it.
 *
 * Anyone may connect (the socket is 0666): the helper refuses root's processes, processes
 * already in a cgroup of its own (so the agent cannot move itself out of its cgroup), and
 * names it did not make.
 */
import net from 'node:net';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import {
  CGROUP_SOCKET,
  cgroup2Mount,
  killCgroup,
  type CgroupReply,
  type CgroupRequest,
} from '../run/cgroup.js';

const NAME = /^cordon-run-\d+-[0-9a-f]{8}$/;

/**
 * Where the helper mounts cgroup2 when it has none: beside the state directory, never
 * inside it, so a recursive removal of that directory cannot walk into a cgroup file system.
 * Whoever removes the state directory removes this (empty, unmounted) one with `rmdir`.
 */
export function cgroupMountDir(stateDir: string): string {
  return join(dirname(stateDir), `cgroup2-${basename(stateDir)}`);
}

/**
 * Where cgroup2 is for this process: the host's mount, or, inside `ip netns exec` (which
 * mounts a fresh /sys without it), a mount of our own in the state directory. The
 * hierarchy is the same, so a name here is the same cgroup at the caller's mount.
 */
function findMount(dir: string): { mount: string; own?: boolean } | undefined {
  const found = cgroup2Mount();
  if (found) return { mount: found };
  const own = cgroupMountDir(dir);
  try {
    mkdirSync(own, { recursive: true, mode: 0o755 });
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

/** Handles one request; never throws. */
export function handleCgroupRequest(mount: string, made: Set<string>, req: CgroupRequest): CgroupReply {
  try {
    if (req.op === 'join') {
      const pid = req.pid;
      if (!Number.isInteger(pid) || pid <= 1) return { error: 'pid must be a process id above 1' };
      const owner = ownerOf(pid);
      if (!Number.isInteger(owner.uid) || owner.uid === 0) return { error: `process ${pid} is root's` };
      if (owner.cgroup.split('/').some((p) => NAME.test(p)))
        return { error: `process ${pid} is already in a cgroup made for run` };
      const name = `cordon-run-${pid}-${randomBytes(4).toString('hex')}`;
      const path = join(mount, name);
      mkdirSync(path);
      made.add(name);
      for (const f of ['cgroup.kill', 'cgroup.freeze'])
        if (existsSync(join(path, f))) chownSync(join(path, f), owner.uid, owner.gid);
      try {
        // As root, the check on the common ancestor passes.
        writeFileSync(join(path, 'cgroup.procs'), String(pid));
      } catch (e) {
        rmdirSync(path);
        made.delete(name);
        throw e;
      }
      return { name };
    }
    if (req.op === 'remove') {
      if (!NAME.test(req.name) || !made.has(req.name)) return { error: 'not a cgroup this daemon made' };
      const r = killCgroup(join(mount, req.name), 2000);
      if (r.removed) made.delete(req.name);
      return { removed: r.removed, alive: r.alive };
    }
    return { error: 'unknown op' };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

/**
 * Serves `cgroup.sock` in the daemon's state directory (as root). Returns a stop function
 * that kills and removes every cgroup still left, or undefined when there is no cgroup2.
 */
export async function serveCgroups(dir: string): Promise<(() => void) | undefined> {
  const found = findMount(dir);
  if (!found) return undefined;
  const { mount } = found;
  const made = new Set<string>();
  const server = net.createServer((c) => {
    c.on('error', () => c.destroy());
    c.setTimeout(5000, () => c.destroy());
    let buf = '';
    c.setEncoding('utf8');
    c.on('data', (d: string) => {
      buf += d;
      if (buf.length > 4096) return void c.destroy();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      let reply: CgroupReply;
      try {
        reply = handleCgroupRequest(mount, made, JSON.parse(buf.slice(0, nl)) as CgroupRequest);
      } catch {
        reply = { error: 'the request is not JSON' };
      }
      c.end(JSON.stringify(reply) + '\n');
    });
  });
  const path = join(dir, CGROUP_SOCKET);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  chmodSync(path, 0o666);
  return () => {
    server.close();
    for (const name of made) killCgroup(join(mount, name), 1000);
    made.clear();
    if (found.own) {
      try {
        execFileSync('umount', ['-l', mount]);
        rmdirSync(mount);
      } catch {
        // Left mounted in this namespace only; it goes with it.
      }
    }
  };
}

/** rmdir that minds nothing: the directory may be gone, or still a mount point elsewhere. */
export function rmdirQuiet(path: string): void {
  try {
    rmdirSync(path);
  } catch {
    // Gone already, or busy: nothing to do.
  }
}
