/**
 * The ledger's file as bytes on disk: refusing anything but a regular file in its place,
 * and reading its last line (and whether it ends with a newline) from the end, so an
 * append stays cheap however long the ledger grows.
 */
import { closeSync, fstatSync, lstatSync, openSync, readSync } from 'node:fs';
import { CordonError } from '../platform/errors.js';

/**
 * The ledger sits in a folder the runner user can write: a FIFO, a device or a link put in
 * its place would block or redirect every later step's read and append. Anything but a
 * regular file (or nothing yet) is refused, naming what it is.
 */
export function assertRegularLedger(path: string): void {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return; // Not there yet: the first append creates it.
  }
  if (st.isFile()) return;
  const kind = st.isFIFO()
    ? 'a FIFO'
    : st.isSymbolicLink()
      ? 'a symbolic link'
      : st.isDirectory()
        ? 'a directory'
        : 'not a regular file';
  throw new CordonError({
    what: `ledger: ${path} is ${kind}`,
    why: 'the run ledger is a regular file Cordon writes; something replaced it, which is tampering',
    fix: 'treat this run as compromised and review the steps that ran before this one',
  });
}

/** Whether the file's last byte is a newline (or the file is empty or missing). */
export function endsWithNewline(path: string): boolean {
  return (
    withOpenFile(path, (fd) => {
      const size = fstatSync(fd).size;
      if (size === 0) return true;
      const b = Buffer.alloc(1);
      readSync(fd, b, 0, 1, size - 1);
      return b[0] === 0x0a;
    }) ?? true
  );
}

/** Runs `fn` on the file opened for reading; undefined when it cannot be opened. */
export function withOpenFile<T>(path: string, fn: (fd: number) => T): T | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * The last non-empty line of the file, read from its end (an append stays cheap however
 * long the ledger grows); undefined when there is none.
 */
export function lastLine(path: string): string | undefined {
  return readTail(path)?.line;
}

/** The last non-empty line, and whether the file ends with a newline; one open. */
export function readTail(path: string): { line: string | undefined; newline: boolean } | undefined {
  return withOpenFile(path, (fd) => {
    const size = fstatSync(fd).size;
    if (size === 0) return { line: undefined, newline: true };
    let chunk = 4 * 1024;
    for (;;) {
      const start = Math.max(0, size - chunk);
      const buf = Buffer.allocUnsafe(size - start);
      readSync(fd, buf, 0, buf.length, start);
      const newline = buf[buf.length - 1] === 0x0a;
      let end = buf.length;
      while (end > 0 && buf[end - 1] === 0x0a) end--;
      const nl = buf.lastIndexOf(0x0a, end - 1);
      if (nl >= 0 && end > 0) return { line: buf.toString('utf8', nl + 1, end), newline };
      if (start === 0) return { line: end === 0 ? undefined : buf.toString('utf8', 0, end), newline };
      chunk *= 4;
    }
  });
}
