/**
 * The ledger's file as bytes on disk: refusing anything but a regular file in its place,
 * and reading its last line (and whether it ends with a newline) from the end, so an
 * append stays cheap however long the ledger grows.
 */
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  openSync,
  readSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { CordonError } from '../platform/errors.js';
import { kindOf as fileKind } from '../platform/regular-file.js';

/** What stands in the ledger's place (an lstat sees links too). */
function kindOf(st: Stats): string {
  return st.isSymbolicLink() ? 'a symbolic link' : fileKind(st);
}

function replaced(path: string, kind: string): CordonError {
  return new CordonError({
    what: `ledger: ${path} is ${kind}`,
    why: 'the run ledger is a regular file Cordon writes; something replaced it, which is tampering',
    fix: 'treat this run as compromised and review the steps that ran before this one',
  });
}

/**
 * The ledger sits in a folder the runner user can write: a FIFO, a device or a link put in
 * its place would block or redirect every later step's read and append. Anything but a
 * regular file (or nothing yet) is refused, naming what it is. This is the early, clear
 * refusal; every read and append also opens the file without following a link and checks
 * the open descriptor (`openLedger`), so a swap after this check changes nothing.
 */
export function assertRegularLedger(path: string): void {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return; // Not there yet: the first append creates it.
  }
  if (!st.isFile()) throw replaced(path, kindOf(st));
}

/**
 * Opens the ledger without following a link and without blocking on a FIFO, and checks
 * what was opened (not the path, which can change between a check and the open).
 * Undefined when it does not exist (and `flags` do not create it).
 */
function openLedger(path: string, flags: number): number | undefined {
  let fd: number;
  try {
    fd = openSync(path, flags | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw replaced(path, 'a symbolic link');
    // A FIFO opened to write, non-blocking, with nobody reading it; or a socket.
    if (code === 'ENXIO') throw replaced(path, 'a FIFO or a socket');
    throw e;
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw replaced(path, kindOf(st));
  }
  return fd;
}

/** Appends `text` to the ledger (created 0600 when absent), refusing anything but a regular file. */
export function appendLedger(path: string, text: string): void {
  const fd = openLedger(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT)!;
  try {
    const b = Buffer.from(text, 'utf8');
    for (let off = 0; off < b.length;) off += writeSync(fd, b, off, b.length - off);
  } finally {
    closeSync(fd);
  }
}

/** The whole ledger as text; undefined when there is none. */
export function readLedgerText(path: string): string | undefined {
  return withOpenFile(path, (fd) => {
    const size = fstatSync(fd).size;
    const b = Buffer.allocUnsafe(size);
    let n = 0;
    while (n < size) {
      const r = readSync(fd, b, n, size - n, n);
      if (r === 0) break;
      n += r;
    }
    return b.toString('utf8', 0, n);
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

/**
 * Runs `fn` on the ledger opened for reading; undefined when there is none. Anything but a
 * regular file in its place is refused (see `openLedger`).
 */
export function withOpenFile<T>(path: string, fn: (fd: number) => T): T | undefined {
  const fd = openLedger(path, constants.O_RDONLY);
  if (fd === undefined) return undefined;
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
