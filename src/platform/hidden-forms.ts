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
 * The invisible characters dropped (a browser draws each as nothing): zero-width space,
 * non-joiner, joiner (U+200B-D), left-to-right and right-to-left marks (U+200E-F), bidi
 * embeddings and overrides (U+202A-E), word joiner and invisible operators (U+2060-4), bidi
 * isolates (U+2066-9), zero-width no-break space / BOM (U+FEFF), soft hyphen (U+00AD),
 * combining grapheme joiner (U+034F), Mongolian vowel separator (U+180E), variation
 * selectors (U+FE00-F) and tags (U+E0001, U+E0020-7F).
 */
const INVISIBLE: number[] = [
  0xad,
  0x34f,
  0x180e,
  ...range(0x200b, 0x200f),
  ...range(0x202a, 0x202e),
  ...range(0x2060, 0x2064),
  ...range(0x2066, 0x2069),
  ...range(0xfe00, 0xfe0f),
  0xfeff,
  0xe0001,
  ...range(0xe0020, 0xe007f),
];

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, k) => from + k);
}

/**
 * Their UTF-8 as a trie: `TRIE[node * 256 + byte]` is the next node (0: none), and a node
 * past the last byte of one is `WHOLE`.
 */
const WHOLE = -1;
const TRIE: Int32Array = (() => {
  const rows: number[][] = [new Array<number>(256).fill(0)];
  for (const cp of INVISIBLE) {
    const bytes = Buffer.from(String.fromCodePoint(cp), 'utf8');
    let node = 0;
    bytes.forEach((b, k) => {
      if (k === bytes.length - 1) rows[node][b] = WHOLE;
      else {
        if (rows[node][b] <= 0) {
          rows.push(new Array<number>(256).fill(0));
          rows[node][b] = rows.length - 1;
        }
        node = rows[node][b];
      }
    });
  }
  return Int32Array.from(rows.flat());
})();
/** Bytes that start one (or an escape): a chunk with none of them is handed on as it is. */
const STARTS = [0x1b, ...range(0, 255).filter((b) => TRIE[b] !== 0)];

/** Line ends: the runner splits the log there, so no escape left open runs past one. */
const isLineEnd = (c: number): boolean => c === 0x0a || c === 0x0d;

export class HiddenFormDetector {
  private state: State = 'text';
  private oscBytes = 0;
  /** Leading bytes of a multi-byte character that may be an invisible one. */
  private pending: number[] = [];
  /** Where `pending` is in the trie (0: nothing pending). */
  private node = 0;
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
    if (this.state === 'text' && !this.pending.length && STARTS.every((b) => chunk.indexOf(b) < 0))
      return chunk;
    const out = Buffer.allocUnsafe(chunk.length + this.pending.length);
    let n = 0;
    for (const c of chunk) {
      switch (this.state) {
        case 'esc':
          // CSI (`ESC [`) and OSC (`ESC ]`) run on; intermediates (0x20-0x2f: `ESC ( B`, which
          // `tput sgr0` writes) run to a final byte; any other escape is two bytes. A line
          // end is text: the log viewer reads each line on its own.
          if (c >= 0x20 && c <= 0x2f) continue;
          this.state = c === 0x5b ? 'csi' : c === 0x5d ? 'osc' : 'text';
          this.oscBytes = 0;
          if (!isLineEnd(c)) continue;
          break;
        case 'csi':
          // Parameters and intermediates (0x20-0x3f) until a final byte (0x40-0x7e); any
          // other byte ends it and is text.
          if (c >= 0x20 && c <= 0x3f) continue;
          this.state = 'text';
          if (c >= 0x40 && c <= 0x7e) continue;
          break;
        case 'osc':
        case 'osc-esc':
          // Ended by BEL or `ESC \`, or by a line end (text); bounded, so an open one cannot
          // blind the rest.
          if (isLineEnd(c)) {
            this.state = 'text';
            break;
          }
          if (c === 0x07 || (this.state === 'osc-esc' && c === 0x5c) || ++this.oscBytes > MAX_OSC)
            this.state = 'text';
          else this.state = c === ESC ? 'osc-esc' : 'osc';
          continue;
      }
      if (c === ESC) {
        n = this.flushPending(out, n);
        this.state = 'esc';
        continue;
      }
      let next = TRIE[this.node * 256 + c];
      if (next === 0 && this.node !== 0) {
        // Not one: what came before goes out, and this byte may start one of its own.
        n = this.flushPending(out, n);
        next = TRIE[c];
      }
      if (next === WHOLE) {
        this.pending = [];
        this.node = 0;
      } else if (next > 0) {
        this.pending.push(c);
        this.node = next;
      } else out[n++] = c;
    }
    return out.subarray(0, n);
  }

  private flushPending(out: Buffer, n: number): number {
    for (const b of this.pending) out[n++] = b;
    this.pending = [];
    this.node = 0;
    return n;
  }
}
