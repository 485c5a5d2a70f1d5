/**
 * Reads a file the user named, refusing anything but a regular file and anything over a
 * size cap. A plain readFileSync follows a link to /dev/zero and grows until the process is
 * killed, and blocks forever on a FIFO that nobody writes to: here the file is opened
 * non-blocking, checked with fstat on the open descriptor (so it cannot be swapped between
 * the check and the read), and read no further than the cap.
 */
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { CordonError } from './errors.js';

/** What `cordon check` and `cordon plan` read of one workflow file: far above any real workflow. */
export const MAX_WORKFLOW_BYTES = 1024 * 1024;

export interface ReadRegularOptions {
  /** Message prefix: the command or action reading (`cordon check`). */
  reader: string;
  /** The largest file accepted, in bytes. */
  maxBytes: number;
  /** Refuse a symbolic link as the last path component instead of following it. */
  noFollow?: boolean;
  /** What a right file would be, for the fix (`the workflow file, e.g. .github/workflows/ci.yml`). */
  expected: string;
}

/** What a file that is not a regular one is, for an error message (`a FIFO (named pipe)`). */
export function kindOf(st: Stats): string {
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isDirectory()) return 'a directory';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

function sizeText(bytes: number): string {
  return bytes % (1024 * 1024) === 0 ? `${bytes / (1024 * 1024)} MiB` : `${bytes} bytes`;
}

/** The file's text (UTF-8), or a CordonError naming the path and what is wrong with it. */
export function readRegularFile(path: string, opts: ReadRegularOptions): string {
  let fd: number;
  try {
    fd = openSync(
      path,
      constants.O_RDONLY | constants.O_NONBLOCK | (opts.noFollow ? constants.O_NOFOLLOW : 0),
    );
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CordonError({
      what: `${opts.reader}: cannot read ${path}`,
      why:
        code === 'ELOOP' && opts.noFollow
          ? 'it is a symbolic link, and links are not followed here'
          : (e as Error).message,
      fix: `give the path of ${opts.expected}`,
    });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) {
      throw new CordonError({
        what: `${opts.reader}: ${path} is ${kindOf(st)}`,
        why: 'only a regular file is read: a device or a pipe could block or never end',
        fix: `give the path of ${opts.expected}`,
      });
    }
    const tooBig = (): never => {
      throw new CordonError({
        what: `${opts.reader}: ${path} is larger than ${sizeText(opts.maxBytes)}`,
        why: `at most ${sizeText(opts.maxBytes)} is read of one file`,
        fix: `give the path of ${opts.expected}`,
      });
    };
    if (st.size > opts.maxBytes) tooBig();
    // Read to the cap, not to st.size: a file in /proc says 0, and a file may grow meanwhile.
    const buf = Buffer.alloc(opts.maxBytes + 1);
    let got = 0;
    for (;;) {
      const n = readSync(fd, buf, got, buf.length - got, null);
      if (n === 0) break;
      got += n;
      if (got > opts.maxBytes) tooBig();
    }
    return buf.subarray(0, got).toString('utf8');
  } finally {
    closeSync(fd);
  }
}
