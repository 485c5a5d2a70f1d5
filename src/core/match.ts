/**
 * Multi-needle byte matcher for secret scrubbing: a Wu-Manber style scan that skips on
 * hashed 4-byte blocks and confirms candidates byte by byte. One pass over the input
 * whatever the number of needles; no allocation per byte, one small array per hit.
 */
const BLOCK = 4;
const TABLE_BITS = 16;
const TABLE_SIZE = 1 << TABLE_BITS;

function blockHash(buf: Uint8Array, end: number): number {
  // The four bytes ending at `end` (inclusive), multiplied to spread them over the table.
  const v = buf[end - 3] | (buf[end - 2] << 8) | (buf[end - 1] << 16) | (buf[end] << 24);
  return Math.imul(v, 0x9e3779b1) >>> (32 - TABLE_BITS);
}

export interface Range {
  start: number;
  end: number;
}

export class Matcher {
  readonly minLength: number;
  readonly maxLength: number;
  private readonly shift: Uint8Array;
  private readonly buckets: Map<number, Uint8Array[]>;
  readonly size: number;

  constructor(needles: Iterable<Uint8Array>) {
    const list: Uint8Array[] = [];
    const seen = new Set<string>();
    for (const n of needles) {
      if (n.length < BLOCK) throw new Error(`matcher needles need ${BLOCK}+ bytes`);
      const key = Buffer.from(n).toString('latin1');
      if (!seen.has(key)) {
        seen.add(key);
        list.push(n);
      }
    }
    this.size = list.length;
    this.minLength = list.length ? Math.min(...list.map((n) => n.length)) : 0;
    this.maxLength = list.length ? Math.max(...list.map((n) => n.length)) : 0;
    const m = this.minLength;
    const defaultShift = Math.min(255, m - BLOCK + 1);
    this.shift = new Uint8Array(TABLE_SIZE).fill(list.length ? defaultShift : 255);
    this.buckets = new Map();
    for (const n of list) {
      for (let j = BLOCK - 1; j < m; j++) {
        const h = blockHash(n, j);
        const s = m - 1 - j;
        if (s < this.shift[h]) this.shift[h] = s;
      }
      const h = blockHash(n, m - 1);
      const bucket = this.buckets.get(h);
      if (bucket) bucket.push(n);
      else this.buckets.set(h, [n]);
    }
    // Longest first, so the widest match at a position is found first.
    for (const b of this.buckets.values()) b.sort((a, c) => c.length - a.length);
  }

  /** Every occurrence, as merged, sorted, non-overlapping ranges. */
  find(buf: Uint8Array, from = 0, to = buf.length): Range[] {
    const out: Range[] = [];
    if (this.size === 0) return out;
    const m = this.minLength;
    const shift = this.shift;
    let pos = from + m - 1;
    while (pos < to) {
      const h = blockHash(buf, pos);
      const s = shift[h];
      if (s !== 0) {
        pos += s;
        continue;
      }
      const start = pos - m + 1;
      const bucket = this.buckets.get(h);
      if (bucket) {
        for (const n of bucket) {
          const end = start + n.length;
          if (end > to) continue;
          let k = 0;
          while (k < n.length && buf[start + k] === n[k]) k++;
          if (k === n.length) {
            addRange(out, start, end);
            break;
          }
        }
      }
      pos += 1;
    }
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
    if (r.start > at) parts.push(buf.subarray(at, r.start));
    parts.push(REDACTED);
    at = r.end;
  }
  if (at < to) parts.push(buf.subarray(at, to));
  return Buffer.concat(parts);
}
