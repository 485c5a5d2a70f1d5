/** The command's output on its way to the runner's log, scrubbed of secret values as a stream. */
import { Transform, type TransformCallback, type Readable, type Writable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { holdMasks, releaseMasks, type StreamScrubber } from '../../platform/mask.js';

class ScrubTransform extends Transform {
  constructor(readonly scrubber: StreamScrubber) {
    super();
  }
  _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const out = this.scrubber.push(chunk);
    if (out.length) this.push(out);
    done();
  }
  _flush(done: TransformCallback): void {
    const out = this.scrubber.flush();
    if (out.length) this.push(out);
    done();
  }
}

/** Whether the last byte written to a stream ended a line. */
export class LineEnd {
  ended = true;
}

/**
 * Pipes `from` to `to` (scrubbed or not) and resolves when `from` has ended and all was
 * written; `line` follows whether what was written ends a line.
 */
export function forward(
  from: Readable,
  to: Writable,
  scrubber?: StreamScrubber,
  line?: LineEnd,
): Promise<void> {
  const src = scrubber ? from.pipe(new ScrubTransform(scrubber)) : from;
  if (line) src.on('data', (d: Buffer) => d.length && (line.ended = d[d.length - 1] === 0x0a));
  src.pipe(to, { end: false });
  return new Promise((res) => {
    src.once('end', res);
    src.once('error', res);
    from.once('error', res);
  });
}

/**
 * The runner reads `run`'s output, the command's included, for workflow commands: a
 * `::add-mask::`, `::add-matcher::`, `::set-env::` or annotation the command prints would
 * act on the whole job, past every check `run` makes of what the command hands back. From
 * `open` until `close` the runner takes none (`::stop-commands::` with a token the command
 * never sees), and `run`'s own masks wait.
 */
export class CommandFence {
  private readonly token = `cordon-${randomBytes(16).toString('hex')}`;
  readonly stdoutLine = new LineEnd();
  readonly stderrLine = new LineEnd();
  private up = false;

  constructor(
    private readonly stdout: Writable,
    private readonly stderr: Writable,
    /** How long the runner gets to read an ended stderr line before commands resume. */
    private readonly settleMs = 250,
  ) {}

  /** Before the command can write: from here on the runner takes no command. */
  open(): void {
    if (this.up) return;
    this.up = true;
    holdMasks();
    this.stdout.write(`::stop-commands::${this.token}\n`);
  }

  /**
   * Once the command's output has ended: a line it left open is ended first (else the
   * runner reads it with `run`'s next line: the resume token would be swallowed, or `run`'s
   * own annotation taken into the command's line). The runner reads stderr before stdout
   * within a batch, on threads of their own: an ended stderr line gets `settleMs` to be read
   * before the resume token goes out on stdout. Then the masks held meanwhile.
   */
  async close(): Promise<void> {
    if (!this.up) return;
    this.up = false;
    const openErr = !this.stderrLine.ended;
    if (openErr) this.stderr.write('\n');
    if (!this.stdoutLine.ended) this.stdout.write('\n');
    this.stderrLine.ended = this.stdoutLine.ended = true;
    if (openErr) await new Promise((r) => setTimeout(r, this.settleMs));
    this.stdout.write(`::${this.token}::\n`);
    releaseMasks();
  }
}
