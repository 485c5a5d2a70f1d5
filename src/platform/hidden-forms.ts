/**
 * Secrets hidden from the scrubber by what a log viewer does not show: terminal escape
 * sequences (`S\e[0mECRET`: colour codes the job log renders as nothing) and zero-width
 * characters between the value's characters. No list of forms can hold every such
 * interleaving, and what the command wrote has reached the log by the time it is seen, so
 * this detects instead of scrubbing: it reads the scrubbed output (a value written plainly is
 * `***` there already), drops escape sequences and zero-width characters as a stream, and
 * looks for every registered form in what is left. `run` says which secrets it found.
 */
import type { Matcher } from './match.js';

const ESC = 0x1b;
/** Past this many bytes an operating-system command (`ESC ]`) is taken to have ended. */
const MAX_OSC = 4096;

type State = 'text' | 'esc' | 'csi' | 'osc' | 'osc-esc';

/**
 * UTF-8 of the invisible characters dropped: zero-width space, non-joiner, joiner (U+200B-D),
 * word joiner (U+2060), zero-width no-break space / BOM (U+FEFF), soft hyphen (U+00AD).
 */
const INVISIBLE = [
  [0xe2, 0x80, 0x8b],
  [0xe2, 0x80, 0x8c],
  [0xe2, 0x80, 0x8d],
  [0xe2, 0x81, 0xa0],
  [0xef, 0xbb, 0xbf],
  [0xc2, 0xad],
];

/** Whether `p` begins one of the invisible characters (and is not all of it). */
function isPrefix(p: number[]): boolean {
  return INVISIBLE.some((seq) => seq.length > p.length && p.every((b, k) => b === seq[k]));
}

export class HiddenFormDetector {
  private state: State = 'text';
  private oscBytes = 0;
  /** Leading bytes of a multi-byte character that may be an invisible one. */
  private pending: number[] = [];
  /** The last bytes of what was left, for a form split across chunks. */
  private tail: Buffer = Buffer.alloc(0);
  /** Names of the secrets found, in the order first found. */
  readonly found: string[] = [];

  constructor(
    /** The registry's matcher as it is now (a credential refreshed meanwhile is in it). */
    private readonly matcherOf: () => Matcher,
    /** The secret's name for a form's index (the registry's owner table). */
    private readonly nameOf: (form: number) => string,
  ) {}

  /** Reads the next chunk of (scrubbed) output. */
  push(chunk: Buffer): void {
    const kept = this.strip(chunk);
    if (!kept.length && !this.tail.length) return;
    const buf = this.tail.length ? Buffer.concat([this.tail, kept]) : kept;
    const matcher = this.matcherOf();
    matcher.scan(buf, (_s, _e, i) => {
      const name = this.nameOf(i);
      if (!this.found.includes(name)) this.found.push(name);
    });
    const keep = Math.max(0, matcher.maxLength - 1);
    this.tail = Buffer.from(buf.subarray(Math.max(0, buf.length - keep)));
  }

  /** `chunk` without escape sequences and invisible characters, carrying state across chunks. */
  private strip(chunk: Buffer): Buffer {
    // Most output holds none of the bytes that start one: handed on as it is.
    if (
      this.state === 'text' &&
      !this.pending.length &&
      chunk.indexOf(ESC) < 0 &&
      chunk.indexOf(0xe2) < 0 &&
      chunk.indexOf(0xef) < 0 &&
      chunk.indexOf(0xc2) < 0
    )
      return chunk;
    const out: number[] = [];
    for (const c of chunk) {
      switch (this.state) {
        case 'esc':
          // CSI (`ESC [`) and OSC (`ESC ]`) run on; any other escape is two bytes.
          this.state = c === 0x5b ? 'csi' : c === 0x5d ? 'osc' : 'text';
          this.oscBytes = 0;
          continue;
        case 'csi':
          // Parameters and intermediates (0x20-0x3f) until a final byte (0x40-0x7e); any
          // other byte ends it and is text.
          if (c >= 0x20 && c <= 0x3f) continue;
          this.state = 'text';
          if (c >= 0x40 && c <= 0x7e) continue;
          break;
        case 'osc':
        case 'osc-esc':
          // Ended by BEL or `ESC \`; bounded, so an open one cannot blind the rest.
          if (c === 0x07 || (this.state === 'osc-esc' && c === 0x5c) || ++this.oscBytes > MAX_OSC)
            this.state = 'text';
          else this.state = c === ESC ? 'osc-esc' : 'osc';
          continue;
      }
      if (c === ESC) {
        this.flushPending(out);
        this.state = 'esc';
        continue;
      }
      this.pending.push(c);
      const p = this.pending;
      const whole = INVISIBLE.some((seq) => seq.length === p.length && seq.every((b, k) => b === p[k]));
      if (whole) {
        this.pending = [];
        continue;
      }
      if (isPrefix(p)) continue;
      // Not one: what came before goes out, and this byte may start one of its own.
      p.pop();
      this.flushPending(out);
      if (isPrefix([c])) this.pending.push(c);
      else out.push(c);
    }
    return Buffer.from(out);
  }

  private flushPending(out: number[]): void {
    out.push(...this.pending);
    this.pending = [];
  }
}
