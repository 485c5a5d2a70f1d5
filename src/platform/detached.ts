/**
 * Starting a detached child that outlives this process (the egress daemon, the credential
 * broker) and waiting, bounded, for the one status line it prints on stdout: `READY {json}`
 * once it serves, or `ERROR {"message"}` when it could not start.
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

/** Starts the child and resolves with its READY data; rejects with its ERROR message or why it gave none. */
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
          const { message } = JSON.parse(line.slice(6)) as { message: string };
          finish(false, () => reject(new Error(message)));
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
