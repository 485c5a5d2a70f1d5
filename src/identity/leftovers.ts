/**
 * What the agent's user leaves where every user may write, removed by the root-side
 * launcher once the workspace is handed back: its files, FIFOs, links and directories in
 * the shared temporary directories, and its SysV IPC objects. No file mode keeps the agent
 * out of those, and its user is gone at the end, so whatever it left there would outlive
 * it: a link or FIFO at a name a later step (the runner user's, or root's) opens, or data
 * for the next agent, whose uid may be the same.
 */
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  lstatSync,
  openSync,
  readFileSync,
  rmdirSync,
  unlinkSync,
} from 'node:fs';
import { describeError } from '../platform/errors.js';
import { DIR_FLAGS, openDirBeneath } from '../platform/dir-fd.js';
import { SAFE_PATH, type PrivilegedExec } from './user.js';

/**
 * The directories every user may write on a Debian or Ubuntu runner, where they exist:
 * the temporary ones, POSIX shared memory and message queues, lock files, crash reports
 * (apport) and PHP's sessions (GitHub's images install PHP).
 */
export const SHARED_DIRS = [
  '/tmp',
  '/var/tmp',
  '/dev/shm',
  '/dev/mqueue',
  '/run/lock',
  '/var/crash',
  '/var/lib/php/sessions',
];

export interface LeftoverLimits {
  /** How long `find` may look through one directory. */
  searchMs: number;
  /** Paths of the agent's removed at most. */
  maxPaths: number;
}

const LIMITS: LeftoverLimits = { searchMs: 20_000, maxPaths: 100_000 };

export interface Leftovers {
  removed: number;
  /** Why something of the agent's is still there (never a file's content). */
  problems: string[];
}

/**
 * Removes what `uid` made at the top of each of `dirs`, with everything of its own inside
 * (deepest first, a directory only once empty), and every SysV IPC object it owns or made. Call only once no process of `uid` is left and the
 * workspace is handed back: before that, the workspace's files may show as the agent's.
 */
export function removeLeftovers(
  exec: PrivilegedExec,
  uid: number,
  dirs: readonly string[] = SHARED_DIRS,
  limits: LeftoverLimits = LIMITS,
): Leftovers {
  const out: Leftovers = { removed: 0, problems: [] };
  // POSIX message queues live in the kernel's mqueue file system whether or not it is
  // mounted: where /dev/mqueue is not (a container, a runner without systemd), they are
  // searched through a mount made in a private mount namespace of its own (removeQueues).
  const mqMounted = dirs.includes(MQUEUE) && fsTypeAt(MQUEUE) === 'mqueue';
  if (dirs.includes(MQUEUE)) removeStaleMqueueMounts(exec, out.problems);
  removeIn(
    dirs.filter((d) => d !== MQUEUE || mqMounted),
    uid,
    limits,
    out,
  );
  if (dirs.includes(MQUEUE) && !mqMounted) removeQueues(exec, uid, out);
  out.removed += removeIpc(exec, uid, out.problems);
  return out;
}

const MQUEUE = '/dev/mqueue';

/**
 * Takes the set-uid and set-gid bits off `root/<parts>` if it is a regular file of the
 * agent's: opened through its open parent without following a link, checked and changed
 * through that descriptor, so nothing swapped in loses its bits instead.
 */
function dropSetIdBits(root: number, parts: string[], uid: number, dev: number): void {
  let dir = root;
  let fd: number | undefined;
  try {
    dir = openDirBeneath(root, parts.slice(0, -1), (d) => fstatSync(d).dev === dev);
    fd = openSync(
      `/proc/self/fd/${dir}/${parts[parts.length - 1]}`,
      constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
    );
    const st = fstatSync(fd);
    if (st.isFile() && st.uid === uid && st.mode & 0o6000) fchmodSync(fd, st.mode & 0o1777);
  } catch {
    // Gone, not a file, or swapped: nothing to clear.
  } finally {
    if (fd !== undefined) closeSync(fd);
    if (dir !== root) closeSync(dir);
  }
}

/**
 * Removes `uid`'s POSIX message queues where /dev/mqueue has no mqueue mount: `unshare`
 * makes a mount namespace whose mounts are all private, the mqueue file system is mounted
 * there (over /dev/mqueue, or /tmp where there is none) and searched, and the namespace goes
 * with the process: the mount is never seen by any other namespace (a peer of /run's, a
 * container's) and nothing is left, however the launcher ends. The file system holds queues
 * only (no directory, no link); the agent may make at most queues_max of them (256).
 * Writes `.` for each queue removed and `x` for each of its own still there.
 */
function removeQueues(exec: PrivilegedExec, uid: number, out: Leftovers): void {
  const at = isDir(MQUEUE) ? MQUEUE : '/tmp';
  const script = [
    'set -e',
    'mount -t mqueue -o nosuid,nodev,noexec cordon-mqueue "$1"',
    'find "$1" -xdev -mindepth 1 -maxdepth 1 -type f -uid "$2" -delete -printf .',
    'find "$1" -xdev -mindepth 1 -maxdepth 1 -uid "$2" -printf x',
  ].join('\n');
  let marks: string;
  try {
    marks = exec('unshare', [
      '--mount',
      '--propagation',
      'private',
      '--',
      'sh',
      '-c',
      script,
      'sh',
      at,
      String(uid),
    ]);
  } catch (e) {
    out.problems.push(
      `POSIX message queues were not searched (no private mqueue mount): ${describeError(e)}`,
    );
    return;
  }
  out.removed += marks.split('.').length - 1;
  const still = marks.split('x').length - 1;
  if (still) out.problems.push(`${still} POSIX message queue(s) of the agent's could not be removed`);
}

/** A launcher of an earlier version mounted mqueue at /run/cordon-mqueue-XXXXXX; a killed one left it. */
const STALE_MQUEUE = /^\/run\/cordon-mqueue-[A-Za-z0-9]{6}$/;

/**
 * Takes down what a killed launcher of an earlier version left: mqueue mounts (that type
 * only) at /run/cordon-mqueue-XXXXXX, and the directory (rmdir: only when empty and no mount).
 */
function removeStaleMqueueMounts(exec: PrivilegedExec, problems: string[]): void {
  const stale = new Map<string, string>();
  for (const l of readMountinfo()) {
    const [before, after] = l.split(' - ');
    const at = unoctal(before.split(' ')[4] ?? '');
    if (after && STALE_MQUEUE.test(at)) stale.set(at, after.split(' ')[0]);
  }
  for (const [at, type] of stale) {
    if (type !== 'mqueue') continue;
    try {
      // Every mount stacked there, if mqueue is the topmost (the last line wins).
      for (let i = 0; i < 8 && fsTypeAt(at) === 'mqueue'; i++) exec('umount', [at]);
      if (fsTypeAt(at) === undefined) rmdirSync(at);
    } catch (e) {
      problems.push(`a stale mqueue mount at ${at} could not be taken down: ${describeError(e)}`);
    }
  }
}

const isDir = (p: string): boolean => {
  try {
    return lstatSync(p).isDirectory();
  } catch {
    return false;
  }
};

const readMountinfo = (): string[] => readFileSync('/proc/self/mountinfo', 'utf8').split('\n');

/** The file system type mounted at `path`, from /proc/self/mountinfo (the last mount wins). */
function fsTypeAt(path: string): string | undefined {
  let type: string | undefined;
  for (const l of readMountinfo()) {
    const [before, after] = l.split(' - ');
    if (after && unoctal(before.split(' ')[4]) === path) type = after.split(' ')[0];
  }
  return type;
}

const unoctal = (p: string): string =>
  p.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));

function removeIn(dirs: readonly string[], uid: number, limits: LeftoverLimits, out: Leftovers): void {
  const mounts = mountPoints();
  for (const dir of dirs) {
    let root: number;
    try {
      root = openSync(dir, DIR_FLAGS);
    } catch {
      continue;
    }
    try {
      const st = fstatSync(root);
      // A shared directory someone swapped or made their own is not searched as root.
      if (st.uid !== 0) continue;
      const all = search(dir, uid, limits, out.problems);
      // What the agent made at the top of the shared directory, and what is inside that. A
      // file of its own deeper, in a folder someone else made and opened to others, is left:
      // that folder's owner asked for what is put there (a scratch folder a later step reads).
      const tops = new Set(all.filter((p) => !p.slice(dir.length + 1).includes('/')));
      const found = all.filter((p) => tops.has(`${dir}/${p.slice(dir.length + 1).split('/')[0]}`));
      // Another mount below it (an idmapped workspace shows the runner's files as the agent's).
      const inside = mounts.filter((m) => m.startsWith(`${dir}/`));
      const here = (p: string): boolean => !inside.some((m) => p === m || p.startsWith(`${m}/`));
      const mine = found.filter(here);
      // Children before their directory.
      mine.sort((a, b) => b.split('/').length - a.split('/').length);
      for (const p of mine)
        if (removeOne(root, p.slice(dir.length + 1).split('/'), uid, st.dev)) out.removed++;
      // What is left of its own (in someone else's folder) keeps no set-uid or set-gid bit: run
      // by a later step, it would take the agent's uid, which the next agent may be given.
      const gone = new Set(mine);
      for (const p of all.filter((q) => !gone.has(q) && here(q)))
        dropSetIdBits(root, p.slice(dir.length + 1).split('/'), uid, st.dev);
      const still = mine.filter((p) => ownedBy(p, uid)).length;
      if (still) out.problems.push(`${still} path(s) of the agent's under ${dir} could not be removed`);
    } finally {
      closeSync(root);
    }
  }
}

function search(dir: string, uid: number, limits: LeftoverLimits, problems: string[]): string[] {
  const r = spawnSync('find', [dir, '-xdev', '-uid', String(uid), '-print0'], {
    encoding: 'utf8',
    timeout: limits.searchMs,
    maxBuffer: 64 * 1024 * 1024,
    env: { PATH: SAFE_PATH, LC_ALL: 'C' },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  if (r.error) problems.push(`${dir} was not searched to the end (${describeError(r.error)})`);
  const found = (r.stdout ?? '').split('\0').filter((p) => p.startsWith(`${dir}/`));
  if (found.length > limits.maxPaths)
    problems.push(`${found.length} paths of the agent's under ${dir}: the first ${limits.maxPaths} removed`);
  return found.slice(0, limits.maxPaths);
}

/**
 * Removes `root/<parts>` if it is still the agent's. Each directory on the way is opened
 * through the one before it without following a link, and the last name is looked up and
 * removed in that open directory: a directory on the way swapped for a link (by the runner
 * user, in a folder of its own) sends root nowhere else.
 */
function removeOne(root: number, parts: string[], uid: number, dev: number): boolean {
  let fd = root;
  try {
    fd = openDirBeneath(root, parts.slice(0, -1), (d) => fstatSync(d).dev === dev);
    const target = `/proc/self/fd/${fd}/${parts[parts.length - 1]}`;
    const st = lstatSync(target);
    if (st.uid !== uid) return false;
    if (st.isDirectory()) rmdirSync(target);
    else unlinkSync(target);
    return true;
  } catch {
    // Gone, not empty (something of someone else's in it), or swapped: left as it is.
    return false;
  } finally {
    if (fd !== root) closeSync(fd);
  }
}

/** Mount points, as /proc/self/mountinfo writes them (octal escapes undone). */
function mountPoints(): string[] {
  return readMountinfo()
    .filter(Boolean)
    .map((l) => unoctal(l.split(' ')[4]));
}

const IPC = [
  { kind: 'shm', flag: '-m' },
  { kind: 'msg', flag: '-q' },
  { kind: 'sem', flag: '-s' },
];

/** SysV shared memory, queues and semaphores the agent owns or made: they outlive every process. */
function removeIpc(exec: PrivilegedExec, uid: number, problems: string[]): number {
  let removed = 0;
  for (const { kind, flag } of IPC) {
    let rows: string[][];
    try {
      rows = readFileSync(`/proc/sysvipc/${kind}`, 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.trim().split(/\s+/));
    } catch {
      continue;
    }
    const [head, ...body] = rows;
    const [id, owner, creator] = [1, head.indexOf('uid'), head.indexOf('cuid')];
    for (const row of body) {
      if (Number(row[owner]) !== uid && Number(row[creator]) !== uid) continue;
      try {
        exec('ipcrm', [flag, row[id]]);
        removed++;
      } catch (e) {
        problems.push(`SysV ${kind} ${row[id]} of the agent's could not be removed: ${describeError(e)}`);
      }
    }
  }
  return removed;
}

function ownedBy(p: string, uid: number): boolean {
  try {
    return lstatSync(p).uid === uid;
  } catch {
    return false;
  }
}
