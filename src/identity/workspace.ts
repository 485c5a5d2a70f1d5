/**
 * Lends the workspace to the agent's user for its step and takes it back after, so the agent
 * works in the checkout as its owner and later steps find every file the runner user's again
 * (git then reports no "dubious ownership").
 *
 * Two ways, measured in bench/RESULTS-identity.md:
 * - `idmap`: an idmapped bind mount over the workspace maps the owner's uid/gid on disk to the
 *   agent's through that mount. Nothing on disk changes, so setup and hand-back cost the same
 *   for 10 files or 100k, and what the agent creates is stored as the owner's from the start.
 * - `chown`: `chown -R` to the agent and back; cost grows with the tree. The fallback where
 *   the kernel, the file system or python3 cannot do the mount.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, constants, fstatSync, openSync } from 'node:fs';
import { CordonError, describeError } from '../platform/errors.js';
import type { PinnedDir } from './pinned.js';
import { SAFE_PATH } from './user.js';

export type HandOverStrategy = 'idmap' | 'chown';

export interface Ids {
  uid: number;
  gid: number;
}

export interface WorkspaceLoan {
  strategy: HandOverStrategy;
  /** Why `idmap` was not used, when `auto` fell back to `chown`. */
  fallbackReason?: string;
  /** Hands the workspace back to its owner. Call after every process of the agent is gone. */
  giveBack(): void;
}

export interface LendOptions {
  /** The workspace, opened by `pinWorkspace`: every step here goes through its descriptors. */
  dir: PinnedDir;
  agent: Ids;
  strategy: HandOverStrategy | 'auto';
}

/**
 * Runs a root tool with the pinned directory as its fd 3 (`/proc/self/fd/3`), so what it
 * changes is the directory that was checked, whatever path now leads where. Root only.
 */
function withFd(file: string, args: string[], fd: number): void {
  const r = spawnSync(file, args, {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe', fd],
    timeout: 600_000,
    env: { PATH: SAFE_PATH, LC_ALL: 'C' },
  });
  if (r.status !== 0)
    throw Object.assign(new Error(`${file} exited with ${r.status ?? r.signal}`), { stderr: r.stderr });
}

/** Lends the workspace to the agent; `auto` tries the idmapped mount and falls back to `chown -R`. */
export function lendWorkspace(opts: LendOptions): WorkspaceLoan {
  const owner = { uid: opts.dir.st.uid, gid: opts.dir.st.gid };
  if (opts.strategy !== 'chown') {
    try {
      return lendByIdmap(opts.dir, owner, opts.agent);
    } catch (e) {
      if (opts.strategy === 'idmap') throw e;
      return { ...lendByChown(opts.dir, owner, opts.agent), fallbackReason: describeError(e) };
    }
  }
  return lendByChown(opts.dir, owner, opts.agent);
}

function lendByChown(dir: PinnedDir, owner: Ids, agent: Ids): WorkspaceLoan {
  // -P --no-dereference: a link in the tree is never followed (a link to /etc/shadow
  // does not hand its target to anyone); the top is the pinned directory itself (`/.`). --from: only files of the
  // one it is lent from (there) and of the agent (back) change owner, so even a tree
  // swapped under the descriptor loses nothing of anyone else's.
  const chown = (from: Ids, to: Ids) =>
    withFd(
      'chown',
      [
        '-R',
        '-P',
        '--no-dereference',
        `--from=${from.uid}`,
        `${to.uid}:${to.gid}`,
        '--',
        '/proc/self/fd/3/.',
      ],
      dir.fd,
    );
  attempt('chown', dir.path, () => chown(owner, agent));
  return { strategy: 'chown', giveBack: () => attempt('chown', dir.path, () => chown(agent, owner)) };
}

/**
 * open_tree(OPEN_TREE_CLONE) + mount_setattr(MOUNT_ATTR_IDMAP) + move_mount, from python3's
 * ctypes: util-linux `mount` learned X-mount.idmap only in 2.39 (older ones ignore the option
 * and make a plain bind mount), and Node has no syscall(2). The user namespace that carries
 * the mapping lives only as long as it takes to open its fd. The syscall numbers are the
 * same on every architecture (all three are above 424, where the tables were unified).
 * The mount is nosuid and nodev: a set-uid file the agent makes is stored as the owner's.
 * It is made from, and onto, the pinned directory (fd 3, AT_EMPTY_PATH), never a path.
 */
const IDMAP_MOUNT = String.raw`
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
L = ctypes.c_long
def fail(what):
    e = ctypes.get_errno()
    sys.stderr.write(what + ": " + os.strerror(e) + "\n")
    sys.exit(2)
uidmap, gidmap = sys.argv[1:3]
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    if libc.unshare(0x10000000) != 0:
        os._exit(1)
    os.write(w, b"x")
    while True:
        signal.pause()
os.close(w)
try:
    if os.read(r, 1) != b"x":
        fail("unshare(CLONE_NEWUSER)")
    with open("/proc/%d/uid_map" % pid, "w") as f: f.write(uidmap)
    with open("/proc/%d/gid_map" % pid, "w") as f: f.write(gidmap)
    ns = os.open("/proc/%d/ns/user" % pid, os.O_RDONLY | os.O_CLOEXEC)
finally:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
tree = libc.syscall(L(428), L(3), ctypes.c_char_p(b""), L(0x1000 | 1 | os.O_CLOEXEC))
if tree < 0:
    fail("open_tree")
class Attr(ctypes.Structure):
    _fields_ = [("set", ctypes.c_uint64), ("clr", ctypes.c_uint64), ("prop", ctypes.c_uint64), ("userns", ctypes.c_uint64)]
attr = Attr(0x00100000 | 0x2 | 0x4, 0, 0, ns)
if libc.syscall(L(442), L(tree), ctypes.c_char_p(b""), L(0x1000), ctypes.byref(attr), L(ctypes.sizeof(attr))) < 0:
    fail("mount_setattr(MOUNT_ATTR_IDMAP)")
if libc.syscall(L(429), L(tree), ctypes.c_char_p(b""), L(3), ctypes.c_char_p(b""), L(0x4 | 0x40)) < 0:
    fail("move_mount")
`;

/**
 * Detaches the mount whose root is fd 3 (MNT_DETACH: the launcher's own descriptor on it
 * keeps it busy), through the descriptor: a path the caller can swap could name any mount.
 */
const UNMOUNT = String.raw`
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.umount2(b"/proc/self/fd/3", 2) != 0:
    sys.stderr.write("umount2: " + os.strerror(ctypes.get_errno()) + "\n")
    sys.exit(2)
`;

/**
 * By absolute path, isolated (-I: no PYTHON* variables, no user site; -S: no site module):
 * it runs as root with the runner's environment, where PATH or PYTHONPATH could name code
 * of the runner user's. -S also saves most of its start-up time.
 */
const PYTHON = '/usr/bin/python3';

function lendByIdmap(dir: PinnedDir, owner: Ids, agent: Ids): WorkspaceLoan {
  // A mapping line is "<id on disk> <id seen through the mount> 1": only the owner's ids
  // are mapped, so files of anyone else show as nobody and stay out of the agent's reach.
  const mapping = [`${owner.uid} ${agent.uid} 1`, `${owner.gid} ${agent.gid} 1`];
  attempt(
    'idmapped mount',
    dir.path,
    () => withFd(PYTHON, ['-I', '-S', '-c', IDMAP_MOUNT, ...mapping], dir.fd),
    IDMAP_FIX,
  );
  // The mount's root, looked up in the pinned directory above: the same inode, seen
  // through the mapping. Held open until the hand-back, which unmounts through it.
  const holder = dir.above[dir.above.length - 1].fd;
  const mounted = openSync(
    `/proc/self/fd/${holder}/${dir.name}`,
    constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW,
  );
  const giveBack = () => {
    try {
      attempt('umount', dir.path, () => withFd(PYTHON, ['-I', '-S', '-c', UNMOUNT], mounted));
    } finally {
      closeSync(mounted);
    }
  };
  const seen = fstatSync(mounted);
  if (seen.ino !== dir.st.ino || seen.uid !== agent.uid || seen.gid !== agent.gid) {
    try {
      giveBack();
    } catch {
      // No mount there to take away; the error below says why.
    }
    throw new CordonError({
      what: `workspace: the idmapped mount on ${dir.path} shows ${seen.uid}:${seen.gid}, not the agent's ${agent.uid}:${agent.gid}`,
      why: 'the mount was made without its id mapping',
      fix: IDMAP_FIX,
    });
  }
  return { strategy: 'idmap', giveBack };
}

const IDMAP_FIX =
  'idmapped mounts need Linux 5.12+ (5.19+ on overlayfs), a file system that supports them, and /usr/bin/python3; the chown hand-over works without';

function attempt(
  step: string,
  dir: string,
  fn: () => unknown,
  fix = 'check that the workspace is on a local file system root can change',
): void {
  try {
    fn();
  } catch (e) {
    const stderr = (e as { stderr?: string }).stderr?.trim();
    throw new CordonError({
      what: `workspace: ${step} on ${dir} failed`,
      why: stderr || describeError(e),
      fix,
    });
  }
}
