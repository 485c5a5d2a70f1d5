/**
 * The agent's way to hand results back: `$CORDON_OUTPUT`, a file it writes in the runner's
 * file-command format (`name=value` lines, or `name<<DELIM` ... `DELIM` for several lines).
 * `run` validates it and publishes the entries as its own step outputs; the agent never
 * writes GITHUB_OUTPUT, GITHUB_ENV or GITHUB_PATH itself.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { CordonError } from '../platform/errors.js';

export interface OutputLimits {
  maxBytes: number;
  maxEntries: number;
}

export const OUTPUT_LIMITS: OutputLimits = { maxBytes: 1024 * 1024, maxEntries: 1000 };

const NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** One `name=value` or `name<<DELIM` entry, or a line that is neither. */
export type FileCommandItem =
  | { kind: 'entry'; line: number; name: string; value: string }
  | { kind: 'unterminated'; line: number; name: string }
  | { kind: 'malformed'; line: number };

/**
 * Splits file-command text the way the runner reads it: whichever of `=` and `<<` comes
 * first on a line decides its form. Names are returned as written, unvalidated.
 */
export function scanFileCommands(text: string): FileCommandItem[] {
  const lines = text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  if (lines.at(-1) === '') lines.pop();
  const items: FileCommandItem[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line === '') continue;
    const eq = line.indexOf('=');
    const heredoc = line.indexOf('<<');
    if (eq >= 0 && (heredoc < 0 || eq < heredoc)) {
      items.push({ kind: 'entry', line: i + 1, name: line.slice(0, eq), value: line.slice(eq + 1) });
    } else if (heredoc >= 0) {
      const name = line.slice(0, heredoc);
      const delimiter = line.slice(heredoc + 2);
      const end = delimiter ? lines.indexOf(delimiter, i + 1) : -1;
      if (end < 0) {
        items.push({ kind: 'unterminated', line: i + 1, name });
        break;
      }
      items.push({ kind: 'entry', line: i + 1, name, value: lines.slice(i + 1, end).join('\n') });
      i = end;
    } else {
      items.push({ kind: 'malformed', line: i + 1 });
    }
  }
  return items;
}

/**
 * Reads and validates the hand-back file. A missing file is no outputs. The file is opened
 * without following a link and must be a regular file (a FIFO would block `run`, a link
 * would read whatever the agent points it at). With `owner`, a file of anyone else's is
 * refused: root reads it, and a directory of the agent's on the way can be swapped for a
 * link to one of root's. Errors name the line, never a value.
 */
export function readAgentOutput(
  path: string,
  limits: OutputLimits = OUTPUT_LIMITS,
  owner?: number,
): Map<string, string> {
  const text = readBounded(path, limits.maxBytes, owner);
  const out = new Map<string, string>();
  if (text === undefined) return out;
  const fail = (line: number, why: string) =>
    new CordonError({
      what: `run: CORDON_OUTPUT line ${line} is not valid`,
      why,
      fix: 'write `name=value` lines, or `name<<EOF` then the lines of the value then `EOF`',
    });
  for (const item of scanFileCommands(text)) {
    if (item.kind === 'malformed') throw fail(item.line, 'it has neither `=` nor `<<`');
    if (item.kind === 'unterminated') {
      throw fail(item.line, 'its `<<` delimiter is empty or never appears on a line of its own');
    }
    if (!NAME.test(item.name)) {
      throw fail(item.line, 'a name starts with a letter or _ and holds only letters, digits, _ and -');
    }
    out.set(item.name, item.value);
    if (out.size > limits.maxEntries) {
      throw fail(item.line, `more than ${limits.maxEntries} outputs`);
    }
  }
  return out;
}

function readBounded(path: string, maxBytes: number, owner: number | undefined): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw new CordonError({
      what: `run: CORDON_OUTPUT (${path}) cannot be opened`,
      why: code === 'ELOOP' ? 'it is a symbolic link' : String(code),
      fix: 'write the outputs to the file itself',
    });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) {
      throw new CordonError({
        what: `run: CORDON_OUTPUT (${path}) is not a regular file`,
        fix: 'write the outputs to a plain file',
      });
    }
    if (owner !== undefined && st.uid !== owner) {
      throw new CordonError({
        what: `run: CORDON_OUTPUT (${path}) belongs to uid ${st.uid}, not to the agent`,
        why: 'a directory on the way to it was replaced by a link to somewhere else',
        fix: 'write the outputs to $CORDON_OUTPUT itself',
      });
    }
    if (st.size > maxBytes) {
      throw new CordonError({
        what: `run: CORDON_OUTPUT is ${st.size} bytes`,
        why: `the limit is ${maxBytes} bytes`,
        fix: 'hand back large results as a file in the workspace and its path as the output',
      });
    }
    // Read one byte past the limit: the file can grow between fstat and read.
    const buf = Buffer.alloc(maxBytes + 1);
    let n = 0;
    for (let r = 1; r > 0 && n < buf.length; n += r) r = readSync(fd, buf, n, buf.length - n, null);
    if (n > maxBytes) {
      throw new CordonError({
        what: 'run: CORDON_OUTPUT grew past its limit while being read',
        why: `the limit is ${maxBytes} bytes`,
        fix: 'hand back large results as a file in the workspace and its path as the output',
      });
    }
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}
