/**
 * The workspace as the root-side launcher holds it: opened once, one component at a time,
 * never through a symbolic link, and from then on used through its descriptors only. The
 * launcher's caller may be a hostile runner-user process (sudo's rule lets it start the
 * launcher with sudo otherwise taken away), and that user can rename or swap any directory
 * it owns while root works on the path: every operation root does on the workspace (the
 * mount, the chown, the set-uid sweep, the o+x on directories above it) goes through the
 * descriptors opened here, so a swap after the walk changes nothing of what root touches.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, constants, fchmodSync, fstatSync, openSync, type Stats } from 'node:fs';
import { isAbsolute, normalize } from 'node:path';
import { DIR_FLAGS, openDirBeneath } from '../platform/dir-fd.js';
import { CordonError } from '../platform/errors.js';
import { SAFE_PATH } from './user.js';

/** Deeper than any checkout; bounds the descriptors one walk keeps open. */
const MAX_DEPTH = 64;

export interface PinnedDir {
  path: string;
  /** The workspace itself (the directory under any mount made on it later). */
  fd: number;
  /** The directories above it, `/` first; the last one holds the workspace. */
  above: { fd: number; st: Stats }[];
  st: Stats;
  /** Its last component, as looked up in the directory above (which sees a mount on it). */
  name: string;
}

const refuse = (path: string, why: string): CordonError =>
  new CordonError({
    what: `workspace: refusing ${JSON.stringify(path)} as the agent's workspace`,
    why,
    fix: 'give run a real directory of the runner user (GITHUB_WORKSPACE), reached through no symbolic link',
  });

/**
 * Opens `path` from `/` down, refusing a symbolic link anywhere on the way, and checks that
 * the caller owns it (`callerUid` 0: root, who may lend any directory). Close with `unpin`.
 */
export function pinWorkspace(path: string, callerUid: number): PinnedDir {
  if (!isAbsolute(path) || normalize(path) !== path || path === '/' || path.endsWith('/'))
    throw refuse(path, 'it is not an absolute, normalised path below /');
  const parts = path.split('/').slice(1);
  if (parts.length > MAX_DEPTH) throw refuse(path, `it is more than ${MAX_DEPTH} directories deep`);
  const above: PinnedDir['above'] = [];
  let fd = openSync('/', DIR_FLAGS);
  try {
    for (const name of parts) {
      above.push({ fd, st: fstatSync(fd) });
      fd = -1;
      try {
        // Through the open directory: the kernel resolves the link to it, not to a path.
        fd = openSync(`/proc/self/fd/${above[above.length - 1].fd}/${name}`, DIR_FLAGS);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ELOOP' || code === 'ENOTDIR')
          throw refuse(path, `${name} on the way is a symbolic link or not a directory`);
        throw refuse(path, `${name} on the way cannot be opened (${code})`);
      }
    }
    const st = fstatSync(fd);
    if (callerUid !== 0 && st.uid !== callerUid)
      throw refuse(path, `it belongs to uid ${st.uid}, not to the caller (uid ${callerUid})`);
    return { path, fd, above, st, name: parts[parts.length - 1] };
  } catch (e) {
    for (const a of above) closeSync(a.fd);
    if (fd >= 0) closeSync(fd);
    throw e;
  }
}

export function unpin(p: PinnedDir): void {
  for (const fd of [p.fd, ...p.above.map((a) => a.fd)]) {
    try {
      closeSync(fd);
    } catch {
      // Closed already.
    }
  }
}

/**
 * The agent must be able to walk down to the workspace: a directory above it that others
 * cannot enter (a 0750 home on the way) gets o+x for the step, and its mode back after.
 * For a caller other than root, only directories the caller owns (it could open them
 * itself); a closed one of anyone else's is refused, never opened to every user.
 */
export function openAncestors(p: PinnedDir, callerUid: number): () => string[] {
  const changed: { fd: number; mode: number }[] = [];
  for (const a of p.above) {
    if (a.st.mode & 0o001) continue;
    if (callerUid !== 0 && a.st.uid !== callerUid) {
      for (const c of changed) fchmodSync(c.fd, c.mode);
      throw refuse(
        p.path,
        `a directory above it (uid ${a.st.uid}, not the caller's) is closed to other users`,
      );
    }
    changed.push({ fd: a.fd, mode: a.st.mode & 0o7777 });
    fchmodSync(a.fd, (a.st.mode & 0o7777) | 0o001);
  }
  return () => {
    const problems: string[] = [];
    for (const c of changed.reverse()) {
      try {
        fchmodSync(c.fd, c.mode);
      } catch (e) {
        problems.push(`a mode above the workspace could not be put back: ${(e as Error).message}`);
      }
    }
    return problems;
  };
}

/**
 * Opens `rel` below the directory `dirFd`, one component at a time, each inside the one
 * opened before it and none through a link: the caller can still rename its directories
 * (it owns them), and a path resolved in one go would follow a directory swapped for a
 * link to anywhere, with root opening whatever is there (a device included). Throws when
 * a component is a link, is missing or is not a directory.
 */
export function openBeneath(dirFd: number, rel: string, flags: number): number {
  const parts = rel.split('/');
  if (parts.some((c) => c === '' || c === '.' || c === '..'))
    throw new Error(`not a plain relative path: ${rel}`);
  const dir = openDirBeneath(dirFd, parts.slice(0, -1));
  try {
    return openSync(`/proc/self/fd/${dir}/${parts[parts.length - 1]}`, flags | constants.O_NOFOLLOW);
  } finally {
    if (dir !== dirFd) closeSync(dir);
  }
}

/**
 * A file the agent made set-uid or set-gid through the mount is stored as the workspace
 * owner's: the mount's nosuid holds only while it is up. Every such bit on a file whose
 * inode changed since the loan is cleared (one walk of the tree, from the pinned
 * descriptor). Each file is opened from the pinned descriptor down, no link followed on the
 * way (openBeneath: the caller may swap a directory for a link between the walk and the
 * open), and checked on its descriptor:
 * only a regular file of the workspace's owner is changed, whatever was swapped in.
 */
/** How find names what it finds under the pinned directory. */
const TOP = '/proc/self/fd/3/./';

export function clearSetId(p: PinnedDir, since: number): string[] {
  const r = spawnSync(
    'find',
    [
      '/proc/self/fd/3/.',
      '-xdev',
      '-type',
      'f',
      '-newerct',
      `@${since}`,
      '(',
      '-perm',
      '-4000',
      '-o',
      '-perm',
      '-2000',
      ')',
      '-print0',
    ],
    { encoding: 'buffer', timeout: 60000, env: { PATH: SAFE_PATH }, stdio: ['ignore', 'pipe', 'pipe', p.fd] },
  );
  if (r.error || r.status === null)
    return [`set-uid files could not be looked for: ${r.error?.message ?? `find ended by ${r.signal}`}`];
  // find exits 1 when a directory goes away under it (the caller swapping one for a link):
  // what it did find is still cleared, or the caller could have the whole sweep skipped.
  // Its message is not kept: it names paths in the workspace, which are the agent's to choose.
  const incomplete =
    r.status !== 0
      ? ['set-uid files could not all be looked for: a directory changed while find walked the workspace']
      : [];
  const found = r.stdout
    .toString('utf8')
    .split('\0')
    .filter((f) => f.startsWith(TOP));
  let cleared = 0;
  for (const f of found) {
    let fd = -1;
    try {
      fd = openBeneath(
        p.fd,
        f.slice(TOP.length),
        constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY,
      );
      const st = fstatSync(fd);
      if (st.isFile() && st.uid === p.st.uid && st.mode & 0o6000) {
        fchmodSync(fd, st.mode & 0o1777);
        cleared++;
      }
    } catch {
      // Gone or swapped for a link: nothing of root's was touched.
    } finally {
      if (fd >= 0) closeSync(fd);
    }
  }
  return [
    ...incomplete,
    ...(cleared ? [`set-uid/set-gid bits cleared on ${cleared} file(s) the agent made`] : []),
  ];
}
