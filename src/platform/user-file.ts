/**
 * Reads a file that a less privileged user can write, for a process that must not be led
 * by it: root reading `$RUNNER_TEMP/cordon/agent.pid` or its own config there. The path is
 * walked from `/` one component at a time, each opened inside the directory opened before
 * it (through `/proc/self/fd/<fd>/<name>`: Node has no `openat`, and the kernel resolves
 * that link to the open directory itself, not to a path someone can change). The last
 * component is never followed if it is a link; a link above it is followed only when the
 * directory holding it is root's and no one else may write it, so the user cannot have put
 * it there nor swap it (a link the user made in a folder of theirs would send root into
 * folders only root can read). The file is opened non-blocking (a FIFO there does not hold
 * the reader until someone writes), read only as a regular file (checked on the open
 * descriptor, so a swap after the check changes nothing), and at most `maxBytes` of it.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readlinkSync, readSync } from 'node:fs';
import { resolve } from 'node:path';
import { DIR_FLAGS } from './dir-fd.js';

/** Why a user-writable file was not read. */
export class UserFileRefused extends Error {}

/**
 * The file's first bytes as UTF-8; throws `UserFileRefused` when it is a link, not a
 * regular file, or longer than `maxBytes`, and the open's own error when it is missing.
 */
export function readUserFile(path: string, maxBytes: number): string {
  let fd: number;
  try {
    fd = openWalked(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP')
      throw new UserFileRefused(`${path} is a symbolic link`);
    throw e;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new UserFileRefused(`${path} is not a regular file`);
    if (st.size > maxBytes) throw new UserFileRefused(`${path} is larger than ${maxBytes} bytes`);
    // One byte more than allowed: a file that grew after the fstat is refused as well.
    const buf = Buffer.alloc(maxBytes + 1);
    let n = 0;
    for (let r = 1; r > 0 && n < buf.length; n += r) r = readSync(fd, buf, n, buf.length - n, null);
    if (n > maxBytes) throw new UserFileRefused(`${path} is larger than ${maxBytes} bytes`);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** Links followed in one walk, as the kernel's own limit. */
const MAX_LINKS = 40;

function partsOf(path: string): string[] {
  return path.split('/').filter((p) => p !== '' && p !== '.');
}

/** Opens `path` with `flags` (and `O_NOFOLLOW`), walked as the file's comment says. */
function openWalked(path: string, flags: number): number {
  const queue = partsOf(resolve(path));
  let dir = openSync('/', DIR_FLAGS);
  let links = 0;
  try {
    for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
      const at = `/proc/self/fd/${dir}/${name}`;
      if (queue.length === 0) return openSync(at, flags | constants.O_NOFOLLOW);
      let next: number;
      try {
        next = openSync(at, DIR_FLAGS);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if ((code !== 'ELOOP' && code !== 'ENOTDIR') || !lstatSync(at).isSymbolicLink()) throw e;
        const holder = fstatSync(dir);
        if (holder.uid !== 0 || (holder.mode & 0o022) !== 0)
          throw new UserFileRefused(
            `${path}: ${name} is a symbolic link in a directory another user than root can write`,
          );
        if (++links > MAX_LINKS) throw new UserFileRefused(`${path}: more than ${MAX_LINKS} symbolic links`);
        const target = readlinkSync(at);
        queue.unshift(...partsOf(target));
        if (target.startsWith('/')) {
          closeSync(dir);
          dir = -1;
          dir = openSync('/', DIR_FLAGS);
        }
        continue;
      }
      closeSync(dir);
      dir = next;
    }
    // An empty path, or `/`: never a file to read.
    throw new UserFileRefused(`${path} names no file`);
  } finally {
    if (dir >= 0) closeSync(dir);
  }
}
