/**
 * Reads a file that a less privileged user can write, for a process that must not be led
 * by it: root reading `$RUNNER_TEMP/cordon/agent.pid` or its own config there. The last
 * component is opened without following a link, non-blocking (a FIFO there does not hold
 * the reader until someone writes), only as a regular file (checked on the open
 * descriptor, so a swap after the check changes nothing), and at most `maxBytes` are read.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';

/** Why a user-writable file was not read. */
export class UserFileRefused extends Error {}

/**
 * The file's first bytes as UTF-8; throws `UserFileRefused` when it is a link, not a
 * regular file, or longer than `maxBytes`, and the open's own error when it is missing.
 */
export function readUserFile(path: string, maxBytes: number): string {
  let fd: number;
  try {
    fd = openSync(
      path,
      constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY,
    );
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
