/**
 * The command's output on its way to the runner's log: scrubbed of secret values as a
 * stream, and with every workflow command in it defanged, so the runner reads none of the
 * command's lines as one (`::add-mask::` would hide a word, Cordon's findings among them, in
 * every later line of the log and in the job summary; `::stop-commands::` would silence
 * every command after it, for the rest of the job; `::error::` could pass for Cordon's).
 */
import { Transform, type TransformCallback, type Readable, type Writable } from 'node:stream';
import { stdoutLine, type LineEnd, type SecretRegistry, type StreamScrubber } from '../../platform/mask.js';
import { HiddenFormDetector } from '../../platform/hidden-forms.js';

/** A zero-width space: not whitespace to the runner, so a line starting with it is no command. */
const ZWSP = Buffer.from('\u200b', 'utf8');

/**
 * Breaks every workflow command the runner would read in a stream of bytes: the runner reads
 * a line (ended by CR, LF or CR LF) as a command when, with leading whitespace trimmed, it
 * starts with `::`, or when it holds `##[` anywhere (the old form). A zero-width space goes
 * between the two colons and between `##` and `[`; nothing else changes. Leading bytes that
 * are controls, spaces or not ASCII (any of them may be Unicode whitespace) count as the
 * line's start. Holds nothing back: each byte's fate is known when it is read.
 */
export class CommandDefang {
  /** Only controls, spaces or non-ASCII bytes since the line began. */
  private atStart = true;
  /** The byte before was a `:` at the line's start. */
  private colonAtStart = false;
  /** `#` bytes just before. */
  private hashes = 0;

  /** Another writer ended the line (run's mask, between two of the command's chunks). */
  lineEnded(): void {
    this.atStart = true;
    this.colonAtStart = false;
    this.hashes = 0;
  }

  push(chunk: Buffer): Buffer {
    const out: Buffer[] = [];
    let from = 0;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i];
      let mark = false;
      if (c === 0x3a) {
        mark = this.colonAtStart;
        this.colonAtStart = !mark && this.atStart;
        this.atStart = false;
        this.hashes = 0;
      } else {
        this.colonAtStart = false;
        mark = c === 0x5b && this.hashes >= 2;
        this.hashes = c === 0x23 ? this.hashes + 1 : 0;
        if (c === 0x0a || c === 0x0d) this.atStart = true;
        else if (c > 0x20 && c < 0x80) this.atStart = false;
      }
      if (mark) {
        out.push(chunk.subarray(from, i), ZWSP);
        from = i;
      }
    }
    if (!out.length) return chunk;
    out.push(chunk.subarray(from));
    return Buffer.concat(out);
  }
}

class ScrubTransform extends Transform {
  constructor(
    readonly scrubber?: StreamScrubber,
    readonly detector?: HiddenFormDetector,
  ) {
    super();
  }
  _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const out = this.scrubber ? this.scrubber.push(chunk) : chunk;
    if (out.length) {
      // What goes to the log, as scrubbed: a value still in it behind escapes is named.
      this.detector?.push(out);
      this.push(out);
    }
    done();
  }
  _flush(done: TransformCallback): void {
    const out = this.scrubber?.flush();
    if (out?.length) {
      this.detector?.push(out);
      this.push(out);
    }
    done();
  }
}

/**
 * Pipes `from` to `to`, scrubbed (when given a scrubber) and defanged, and resolves when
 * `from` has ended and all was written; `line` follows whether what was written ends a line.
 * The defang runs as each chunk is written, not before: a line another writer ended on `to`
 * in between (run's mask, `stdoutMaskSink`) is a line the runner starts afresh, so the
 * command's next byte is at a line's start to the defang too.
 */
export function forward(
  from: Readable,
  to: Writable,
  scrubber?: StreamScrubber,
  line?: LineEnd,
  detector?: HiddenFormDetector,
): Promise<void> {
  const src = from.pipe(new ScrubTransform(scrubber, detector));
  const defang = new CommandDefang();
  src.on('data', (d: Buffer) => {
    if (!d.length) return;
    if (line?.ended) defang.lineEnded();
    const out = defang.push(d);
    if (line) line.ended = out[out.length - 1] === 0x0a;
    if (!to.write(out)) {
      src.pause();
      to.once('drain', () => src.resume());
    }
  });
  return new Promise((res) => {
    src.once('end', res);
    src.once('error', res);
    from.once('error', res);
  });
}

/**
 * Ends a line the command left open on `to`: else the runner reads it with the next bytes
 * written there, and run's own annotation after the command (a warning on stdout) would be
 * taken into the command's line, not read as a command.
 */
export function endOpenLine(to: Writable, line: LineEnd): void {
  if (line.ended) return;
  to.write('\n');
  line.ended = true;
}

/**
 * The command's stdout and stderr on their way to the step's: each scrubbed and read for
 * values the scrubber let through behind escapes (when scrubbing is on), defanged, with
 * whether its last byte ended a line, so run's own lines after it (its masks on the step's
 * stdout, its warnings) start lines of their own.
 */
export class CommandOutput {
  private readonly streams: {
    to: Writable;
    line: LineEnd;
    scrubber?: StreamScrubber;
    detector?: HiddenFormDetector;
  }[];

  constructor(
    stdout: Writable,
    stderr: Writable,
    registry: SecretRegistry,
    /** Scrubbing on: a scrubber a stream (each also read for values hidden behind escapes). */
    scrubber?: () => StreamScrubber,
  ) {
    this.streams = [stdout, stderr].map((to) => ({
      to,
      // The mask sink writes to process.stdout: it must see the same line state.
      line: to === process.stdout ? stdoutLine : { ended: true },
      scrubber: scrubber?.(),
      detector: scrubber
        ? new HiddenFormDetector(
            () => registry.matcher(),
            (i) => registry.nameOfForm(i),
          )
        : undefined,
    }));
  }

  /** Forwards the command's two streams; resolves when both have ended and all was written. */
  forward(from: { stdout: Readable; stderr: Readable }): Promise<void> {
    const [out, err] = this.streams;
    return Promise.all([
      forward(from.stdout, out.to, out.scrubber, out.line, out.detector),
      forward(from.stderr, err.to, err.scrubber, err.line, err.detector),
    ]).then(() => undefined);
  }

  /** Ends a line the command left open on either stream (once; nothing when none is). */
  endLines(): void {
    for (const s of this.streams) endOpenLine(s.to, s.line);
  }

  /** Bytes of secrets scrubbed from both streams. */
  get scrubbed(): number {
    return this.streams.reduce((n, s) => n + (s.scrubber?.scrubbed ?? 0), 0);
  }

  /** Names of the secrets found hidden in either stream, each once. */
  get hidden(): string[] {
    return [...new Set(this.streams.flatMap((s) => s.detector?.found ?? []))];
  }
}
