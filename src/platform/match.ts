/**
 * Multi-needle byte matcher for secret scrubbing: a Wu-Manber style scan that skips on
 * hashed 4-byte blocks and confirms candidates byte by byte. One pass over the input
 * whatever the number of needles; no allocation per byte, one small object per hit.
 */
const BLOCK = 4;
const MIN_TABLE_BITS = 16;
const MAX_TABLE_BITS = 19;
/**
 * Only the last few blocks of each needle's shortest-length prefix feed the shift table:
 * with thousands of needles, entering every block saturates the table and every shift
 * drops to zero, while a window of this many bytes still allows skips of up to it.
 */
const SHIFT_WINDOW = 16;

function blockHash(buf: Uint8Array, end: number, bits: number): number {
  // The four bytes ending at `end` (inclusive), multiplied to spread them over the table.
  const v = buf[end - 3] | (buf[end - 2] << 8) | (buf[end - 1] << 16) | (buf[end] << 24);
  return Math.imul(v, 0x9e3779b1) >>> (32 - bits);
}

export interface Range {
  start: number;
  end: number;
}

/** Needles stored back to back: needle i is data[starts[i], starts[i + 1]). */
export interface PackedNeedles {
  data: Uint8Array;
  starts: Int32Array;
}

export class Matcher {
  readonly minLength: number;
  readonly maxLength: number;
  readonly size: number;
  /** Every needle's bytes, back to back; needle i is data[starts[i], starts[i + 1]). */
  private readonly data: Uint8Array;
  private readonly starts: Int32Array;
  private readonly bits: number;
  private readonly shift: Uint8Array;
  /** First needle index (+1, 0 = none) whose prefix block hashes to a slot; `next` chains the rest. */
  private readonly head: Int32Array;
  private readonly next: Int32Array;

  constructor(needles: Iterable<Uint8Array> | PackedNeedles) {
    let data: Uint8Array;
    let starts: Int32Array;
    if ('starts' in needles) {
      ({ data, starts } = needles);
    } else {
      const list = [...needles];
      starts = new Int32Array(list.length + 1);
      for (let i = 0; i < list.length; i++) starts[i + 1] = starts[i] + list[i].length;
      data = new Uint8Array(starts[list.length]);
      for (let i = 0; i < list.length; i++) data.set(list[i], starts[i]);
    }
    this.data = data;
    this.starts = starts;
    this.size = starts.length - 1;
    let min = Infinity;
    let max = 0;
    for (let i = 0; i < this.size; i++) {
      const len = starts[i + 1] - starts[i];
      if (len < BLOCK) throw new Error(`matcher needles need ${BLOCK}+ bytes`);
      if (len < min) min = len;
      if (len > max) max = len;
    }
    this.minLength = this.size ? min : 0;
    this.maxLength = max;
    const m = this.minLength;
    const window = Math.min(m, SHIFT_WINDOW);
    const entries = this.size * Math.max(1, window - BLOCK + 1);
    this.bits = Math.max(MIN_TABLE_BITS, Math.min(MAX_TABLE_BITS, Math.ceil(Math.log2(entries * 4 + 1))));
    const tableSize = 1 << this.bits;
    this.shift = new Uint8Array(tableSize).fill(this.size ? Math.min(255, window - BLOCK + 1) : 255);
    this.head = new Int32Array(tableSize);
    this.next = new Int32Array(this.size);
    const shift = this.shift;
    const head = this.head;
    const next = this.next;
    const drop = 32 - this.bits;
    const first = m - window + BLOCK - 1;
    // The last block's hash of each needle, for the candidate chains: filled in a second
    // pass, which costs less than touching both tables needle by needle.
    const last = new Int32Array(this.size);
    for (let i = 0; i < this.size; i++) {
      const base = starts[i];
      // blockHash of each block in the window, rolling one byte at a time; the first
      // iteration shifts out a byte that is not part of any block.
      const p = base + first - 3;
      let v = (data[p] << 8) | (data[p + 1] << 16) | (data[p + 2] << 24);
      let h = 0;
      for (let j = first; j < m; j++) {
        v = (v >>> 8) | (data[base + j] << 24);
        h = Math.imul(v, 0x9e3779b1) >>> drop;
        const s = m - 1 - j;
        if (s < shift[h]) shift[h] = s;
      }
      // The last block of the window is the one the scan looks up candidates by.
      last[i] = h;
    }
    for (let i = 0; i < this.size; i++) {
      const lh = last[i];
      next[i] = head[lh];
      head[lh] = i + 1;
    }
  }

  /** A matcher for strings, encoded as UTF-8 in one pass (faster than a Buffer per string). */
  static fromStrings(strings: string[]): Matcher {
    const joined = strings.join('');
    const data = Buffer.from(joined, 'utf8');
    const ascii = data.length === joined.length;
    const starts = new Int32Array(strings.length + 1);
    for (let i = 0; i < strings.length; i++) {
      starts[i + 1] = starts[i] + (ascii ? strings[i].length : Buffer.byteLength(strings[i], 'utf8'));
    }
    return new Matcher({ data, starts });
  }

  /** Calls `hit` for every needle occurrence (overlapping ones too) with the needle's index. */
  scan(
    buf: Uint8Array,
    hit: (start: number, end: number, needle: number) => void,
    from = 0,
    to = buf.length,
  ): void {
    if (this.size === 0) return;
    const m = this.minLength;
    const shift = this.shift;
    const head = this.head;
    const next = this.next;
    const data = this.data;
    const starts = this.starts;
    const bits = this.bits;
    let pos = from + m - 1;
    while (pos < to) {
      const h = blockHash(buf, pos, bits);
      const s = shift[h];
      if (s !== 0) {
        pos += s;
        continue;
      }
      const start = pos - m + 1;
      for (let i = head[h]; i !== 0; i = next[i - 1]) {
        const a = starts[i - 1];
        const len = starts[i] - a;
        if (start + len > to) continue;
        let k = 0;
        while (k < len && buf[start + k] === data[a + k]) k++;
        if (k === len) hit(start, start + len, i - 1);
      }
      pos += 1;
    }
  }

  /** Every occurrence, as merged, sorted, non-overlapping ranges. */
  find(buf: Uint8Array, from = 0, to = buf.length): Range[] {
    const out: Range[] = [];
    this.scan(buf, (start, end) => addRange(out, start, end), from, to);
    return out;
  }
}

function addRange(out: Range[], start: number, end: number): void {
  const last = out[out.length - 1];
  if (last && start <= last.end) {
    if (end > last.end) last.end = end;
  } else {
    out.push({ start, end });
  }
}

export const REDACTED = Buffer.from('***');

/** Replaces each range with `***`. */
export function redact(buf: Buffer, ranges: Range[], from = 0, to = buf.length): Buffer {
  if (ranges.length === 0) return from === 0 && to === buf.length ? buf : buf.subarray(from, to);
  const parts: Buffer[] = [];
  let at = from;
  for (const r of ranges) {
    if (r.end <= from || r.start >= to) continue;
    if (r.start > at) parts.push(buf.subarray(at, r.start));
    parts.push(REDACTED);
    at = Math.min(r.end, to);
  }
  if (at < to) parts.push(buf.subarray(at, to));
  return Buffer.concat(parts);
}

/**
 * Base64 wrapped at a fixed width (`base64` wraps at 76 columns, `openssl base64` and PEM
 * at 64) cuts an encoded value with newlines wherever the line ends. A newline that ends a
 * line of exactly one of these widths made only of base64 characters is "soft": matching
 * also runs over the text with the soft newlines taken out.
 */
export const WRAP_WIDTHS = [64, 76];

/** The line a buffer starts in: its length so far and whether it is all base64 characters. */
export interface LineState {
  col: number;
  base64: boolean;
}

export const LINE_START: LineState = { col: 0, base64: true };

function isBase64Byte(c: number): boolean {
  return (
    (c >= 65 && c <= 90) ||
    (c >= 97 && c <= 122) ||
    (c >= 48 && c <= 57) ||
    c === 43 ||
    c === 47 ||
    c === 61 ||
    c === 45 ||
    c === 95
  );
}

function allBase64(buf: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (!isBase64Byte(buf[i])) return false;
  return true;
}

/** The line state at `pos` of `buf`, given the state at its start. */
export function lineStateAt(buf: Uint8Array, pos: number, start: LineState): LineState {
  if (pos === 0) return start;
  const nl = Buffer.from(buf.buffer, buf.byteOffset, buf.length).lastIndexOf(10, pos - 1);
  if (nl === -1) return { col: start.col + pos, base64: start.base64 && allBase64(buf, 0, pos) };
  return { col: pos - nl - 1, base64: allBase64(buf, nl + 1, pos) };
}

/**
 * Calls `hit` (in `buf`'s own positions) for needles found only once soft newlines are
 * taken out; nothing when `buf` holds no soft newline, which is the common case.
 */
export function scanWrapped(
  matcher: Matcher,
  buf: Uint8Array,
  start: LineState,
  hit: (start: number, end: number, needle: number) => void,
): void {
  if (matcher.size === 0) return;
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  const drop: number[] = [];
  let lineStart = 0;
  let col0 = start.col;
  let ok0 = start.base64;
  for (let p = b.indexOf(10); p !== -1; p = b.indexOf(10, p + 1)) {
    const cr = p > lineStart && b[p - 1] === 13;
    const end = cr ? p - 1 : p;
    const len = col0 + end - lineStart;
    if (ok0 && WRAP_WIDTHS.includes(len) && allBase64(b, lineStart, end)) {
      if (cr) drop.push(p - 1);
      drop.push(p);
    }
    lineStart = p + 1;
    col0 = 0;
    ok0 = true;
  }
  if (drop.length === 0) return;
  const compact = Buffer.allocUnsafe(b.length - drop.length);
  const origin = new Int32Array(compact.length);
  let at = 0;
  let from = 0;
  for (const d of [...drop, b.length]) {
    b.copy(compact, at, from, d);
    for (let i = from; i < d; i++) origin[at++] = i;
    from = d + 1;
  }
  matcher.scan(compact, (s, e, i) => {
    const os = origin[s];
    const oe = origin[e - 1] + 1;
    // Matches that span no soft newline are found by the plain scan already.
    if (oe - os !== e - s) hit(os, oe, i);
  });
}

/** Merges two sorted range lists into one of non-overlapping ranges. */
export function mergeRanges(a: Range[], b: Range[]): Range[] {
  if (b.length === 0) return a;
  const all = [...a, ...b].sort((x, y) => x.start - y.start);
  const out: Range[] = [];
  for (const r of all) addRange(out, r.start, r.end);
  return out;
}
