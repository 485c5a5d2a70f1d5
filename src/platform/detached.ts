/**
 * Starting a detached child that outlives this process (the egress daemon, the credential
 * broker) and waiting, bounded, for the one status line it prints on stdout: `READY {json}`
 * once it serves, or `ERROR {"message", "input"?, "fix"?}` when it could not start.
 */
import { spawn } from 'node:child_process';
import { Socket } from 'node:net';

export interface DetachedOptions {
  /** What the child is, for error messages: `the daemon`, `the broker`. */
  name: string;
  argv: string[];
  /** The child's environment (default: this process's). */
  env?: Record<string, string>;
  /**
   * Written to the child's stdin, which then closes: a secret sent this way is never in
   * its argv, environment or a file. Without it stdin is /dev/null.
   */
  input?: string;
  /** A file descriptor for the child's stderr; without it the end of stderr goes into the error. */
  stderrFd?: number;
  timeoutMs: number;
  /** Kill the child when it gives no status in time (default: leave it). */
  killOnTimeout?: boolean;
  /**
   * Every other stdout line, before and after READY (stdout stays open, not keeping this
   * process alive, while `keepReading`). Without it, any other first line is an error.
   */
  onLine?: (line: string) => void;
  keepReading?: boolean;
}

/**
 * The child's ERROR: its message, and the input its error named and that error's fix when
 * it gave them. Those two are taken only as plain strings of bounded length (an input name,
 * a fixed sentence); anything else is dropped, so a child cannot pass more through them.
 */
export class DetachedError extends Error {
  readonly input?: string;
  readonly fix?: string;
  constructor(message: string, input?: string, fix?: string) {
    super(message);
    this.name = 'DetachedError';
    if (input !== undefined) this.input = input;
    if (fix !== undefined) this.fix = fix;
  }
}

export const MAX_ERROR_INPUT = 64;
export const MAX_ERROR_FIX = 600;

/** An input name: lower-case letters, digits and dashes, at most MAX_ERROR_INPUT long. */
function inputName(v: unknown): string | undefined {
  return typeof v === 'string' && v.length <= MAX_ERROR_INPUT && /^[a-z][a-z0-9-]*$/.test(v) ? v : undefined;
}

/** Control characters (C0, DEL, C1) and the Unicode line breaks: a fix is one printable line. */
// eslint-disable-next-line no-control-regex
const NOT_ONE_LINE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/** A fix: printable text on one line, at most MAX_ERROR_FIX long. */
function fixText(v: unknown): string | undefined {
  const ok = typeof v === 'string' && v.length > 0 && v.length <= MAX_ERROR_FIX && !NOT_ONE_LINE.test(v);
  return ok ? v : undefined;
}

/** Reads an `ERROR {json}` line's payload. */
export function parseErrorLine(payload: string, name: string): DetachedError {
  let data: unknown;
  try {
    data = JSON.parse(payload);
  } catch {
    return new DetachedError(`${name} reported an error that is not JSON: ${payload.slice(0, 200)}`);
  }
  const o = (data && typeof data === 'object' ? data : {}) as Record<string, unknown>;
  const message = typeof o.message === 'string' ? o.message : `${name} reported an error without a message`;
  return new DetachedError(message, inputName(o.input), fixText(o.fix));
}

/** Starts the child and resolves with its READY data; rejects with its ERROR (a DetachedError) or why it gave none. */
export function startDetached<Ready>(o: DetachedOptions): Promise<Ready> {
  return new Promise((resolve, reject) => {
    const child = spawn(o.argv[0], o.argv.slice(1), {
      detached: true,
      env: o.env,
      stdio: [o.input === undefined ? 'ignore' : 'pipe', 'pipe', o.stderrFd ?? 'pipe'],
    });
    let buf = '';
    let err = '';
    let done = false;
    const finish = (ready: boolean, fn: () => void): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      // On a pipe, stdout is a socket: unref'd, it is read while this process lives.
      if (ready && o.keepReading && child.stdout instanceof Socket) child.stdout.unref();
      else child.stdout?.destroy();
      child.stderr?.destroy();
      child.unref();
      fn();
    };
    const timer = setTimeout(() => {
      if (o.killOnTimeout) child.kill('SIGKILL');
      finish(false, () => reject(new Error(`${o.name} gave no status within ${o.timeoutMs} ms`)));
    }, o.timeoutMs);
    child.stderr?.on('data', (d: Buffer) => {
      err = (err + d.toString('utf8')).slice(-2000);
    });
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (done) o.onLine?.(line);
        else if (line.startsWith('READY ')) {
          const ready = JSON.parse(line.slice(6)) as Ready;
          finish(true, () => resolve(ready));
        } else if (line.startsWith('ERROR ')) {
          const error = parseErrorLine(line.slice(6), o.name);
          finish(false, () => reject(error));
        } else if (o.onLine) o.onLine(line);
        else
          finish(false, () => reject(new Error(`unexpected output from ${o.name}: ${line.slice(0, 200)}`)));
      }
    });
    child.on('error', (e) => finish(false, () => reject(e)));
    child.on('exit', (code) => {
      const why = o.stderrFd === undefined ? `: ${err.trim() || 'no output'}` : '';
      finish(false, () => reject(new Error(`${o.name} exited (${code}) before it was ready${why}`)));
    });
    if (child.stdin) {
      child.stdin.on('error', () => undefined);
      child.stdin.end(o.input);
    }
  });
}
