import { describe, expect, test } from '@jest/globals';
import { Matcher, redact, type Range } from '../../../src/platform/match.js';

/** A small deterministic PRNG so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function randomBytes(r: () => number, n: number, alphabet: number): Buffer {
  return Buffer.from(Array.from({ length: n }, () => 97 + Math.floor(r() * alphabet)));
}

/** Merged ranges of every occurrence, the slow and obvious way. */
function naive(hay: Buffer, needles: Buffer[]): Range[] {
  const starts: [number, number][] = [];
  for (const n of needles) {
    for (let i = hay.indexOf(n); i !== -1; i = hay.indexOf(n, i + 1)) starts.push([i, i + n.length]);
  }
  starts.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const out: Range[] = [];
  for (const [s, e] of starts) {
    const last = out[out.length - 1];
    if (last && s <= last.end) last.end = Math.max(last.end, e);
    else out.push({ start: s, end: e });
  }
  return out;
}

describe('Matcher', () => {
  test('agrees with a naive search on random inputs with many overlaps', () => {
    const r = rng(42);
    for (let round = 0; round < 200; round++) {
      const alphabet = 2 + Math.floor(r() * 4);
      const needles = Array.from({ length: 1 + Math.floor(r() * 30) }, () =>
        randomBytes(r, 4 + Math.floor(r() * 20), alphabet),
      );
      const hay = randomBytes(r, Math.floor(r() * 2000), alphabet);
      expect(new Matcher(needles).find(hay)).toEqual(naive(hay, needles));
    }
  });

  test('reports every occurrence with its needle index, overlapping ones too', () => {
    const m = new Matcher([Buffer.from('abcd'), Buffer.from('bcdefg'), Buffer.from('abcdxyz')]);
    const hits: [number, number, number][] = [];
    m.scan(Buffer.from('..abcdefg..abcdxyz'), (s, e, i) => hits.push([s, e, i]));
    expect(hits.sort((a, b) => a[0] - b[0] || a[2] - b[2])).toEqual([
      [2, 6, 0],
      [3, 9, 1],
      [11, 15, 0],
      [11, 18, 2],
    ]);
    expect(m.find(Buffer.from('..abcdefg..abcdxyz'))).toEqual([
      { start: 2, end: 9 },
      { start: 11, end: 18 },
    ]);
  });

  test('finds needles at the very start and end, and respects from/to', () => {
    const m = new Matcher([Buffer.from('secret')]);
    expect(m.find(Buffer.from('secret'))).toEqual([{ start: 0, end: 6 }]);
    expect(m.find(Buffer.from('xsecretsecret'))).toEqual([{ start: 1, end: 13 }]);
    expect(m.find(Buffer.from('secret secret'), 1)).toEqual([{ start: 7, end: 13 }]);
    expect(m.find(Buffer.from('secret secret'), 0, 12)).toEqual([{ start: 0, end: 6 }]);
  });

  test('handles an empty set, short needles refused, and arbitrary bytes', () => {
    expect(new Matcher([]).find(Buffer.from('anything'))).toEqual([]);
    expect(() => new Matcher([Buffer.from('abc')])).toThrow('4+ bytes');
    const bin = Buffer.from([0, 255, 0, 255, 10, 13]);
    expect(new Matcher([bin]).find(Buffer.concat([Buffer.from('x'), bin]))).toEqual([{ start: 1, end: 7 }]);
  });

  test('fromStrings encodes UTF-8 needles', () => {
    const m = Matcher.fromStrings(['日本語の秘密', 'plain-one']);
    const hay = Buffer.from('a 日本語の秘密 b plain-one');
    expect(redact(hay, m.find(hay)).toString()).toBe('a *** b ***');
  });

  test('keeps finding needles among tens of thousands', () => {
    const needles = Array.from({ length: 50000 }, (_, i) => Buffer.from(`needle-${i}-${i * 7919}`));
    const m = new Matcher(needles);
    const hay = Buffer.from(`x needle-49999-${49999 * 7919} y needle-0-0 z`);
    expect(m.find(hay).length).toBe(2);
  });
});

describe('redact', () => {
  test('replaces ranges and clips to from/to', () => {
    const b = Buffer.from('0123456789');
    expect(redact(b, [{ start: 2, end: 4 }]).toString()).toBe('01***456789');
    expect(redact(b, [{ start: 2, end: 4 }], 3, 8).toString()).toBe('***4567');
    expect(redact(b, []).toString()).toBe('0123456789');
  });
});
