/**
 * Golden test for the forms of a secret: the exact list `secretForms` gives, the exact
 * `::add-mask::` values the runner is handed, and what the registry scrubs and finds, for a
 * corpus of tricky values (no real secrets). The fixture was captured from the
 * implementation before the registration fast paths (bench: register 10k secrets), so any
 * form added, dropped, reordered or changed by a later optimisation fails here.
 *
 * Recapture (only when a form is changed on purpose, and say so in the commit):
 *   CAPTURE_MASK_FORMS=1 NODE_OPTIONS=--experimental-vm-modules npx jest test/unit/core/mask-forms
 */
import { describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SecretRegistry } from '../../../src/platform/mask.js';
import { secretForms } from '../../../src/platform/secret-forms.js';

const FIXTURE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'fixtures', 'mask-forms.json');
const capture = process.env.CAPTURE_MASK_FORMS === '1';

const pem = [
  '-----BEGIN RSA PRIVATE KEY-----',
  'MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu',
  'KUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQJAIJLixBy2qpFoS4DSmoEm',
  '',
  '-----END RSA PRIVATE KEY-----',
].join('\r\n');

/** Values that take every branch of `secretForms`: none of them is a real secret. */
const NAMED: [string, string][] = [
  ['4 chars', 'abcd'],
  ['5 chars', 'abcde'],
  ['6 chars', 'abcdef'],
  ['7 chars', 'abcdefg'],
  ['8 chars', 'abcdefgh'],
  ['digits only (hex has no letters)', '1234567890'],
  ['token-like', 'tok1_Zm9vYmFyYmF6cXV4LWFiYy1kZWY'],
  ['token with base64 + and /', 'tok2+abc/def+ghi/jkl?'],
  ['password-like', 'p@ss&<7>/"dGhpcyBpcyBub3Q+YQ==\''],
  ['hunter2', 'hunter2-Pa$$w0rd&<x>"q\'/+='],
  ['space', 'correct horse battery staple'],
  ["!'()* only", "ab!c'd(e)f*g"],
  ['tilde', 'abc~def~ghi'],
  ['percent %0A', 'val%0Aue-with-percent'],
  ['::add-mask::', 'x::add-mask::zzzz'],
  ['newline EVIL=1', 'value-one\nEVIL=1'],
  ['heredoc delimiter', 'ghadelimiter_1234\nEOF\nx=y'],
  ['CRLF PEM', pem],
  ['LF lines with blanks and spaces', '  first line here  \n\n\tsecond-line-x\t\nabc\n'],
  ['CR only', 'abc\rdef\rghi'],
  ['tab and controls', 'a\tb\u0001c\u001bd\u007fe'],
  ['backslash and quotes', 'C:\\path\\"x"\\\'y\''],
  ['html specials', '<a href="x">&amp;</a>'],
  ['apostrophes only', "it's o'clock"],
  ['unicode BMP', 'pässwörd-日本語-x'],
  ['unicode astral', 'key-🔑-🗝️-end'],
  ['line/paragraph separators', 'a\u2028b\u2029c-d'],
  ['latin1 binary', '\u0080\u0081\u00fe\u00ff\u00a0bin'],
  ['NUL bytes', 'a\u0000b\u0000c\u0000d'],
  ['shell safe punctuation', 'a/b.c:d=e@f%g+h,i-j_k'],
  ['shell unsafe punctuation', 'a$b`c|d;e&f(g)h{i}j[k]l?m*n#o'],
  ['equals padding', 'YWJj=='],
  ['long', 'L'.repeat(100) + '&<>"\'' + 'M'.repeat(57)],
];

/** A small deterministic PRNG so the random corpus is the same on every run. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const POOLS = [
  'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-',
  ' !"#$%&\'()*+,/:;<=>?@[\\]^`{|}~',
  '\t\r\n\u0000\u0001\u001b\u007f',
  '\u0080\u00a0\u00e9\u00ff',
  'é日本語\u2028\u2029\uffff',
  '🔑🗝️',
];

/** Values mixing the pools above in random proportions (some plain, some with every class). */
function randomCorpus(count: number): string[] {
  const r = rng(20261125);
  const out: string[] = [];
  for (let n = 0; n < count; n++) {
    const weights = POOLS.map((_, i) => (i === 0 ? 1 : r() < 0.5 ? 0 : r() * 0.3));
    const total = weights.reduce((a, b) => a + b, 0);
    const len = 4 + Math.floor(r() * 60);
    let v = '';
    while (v.length < len) {
      let pick = r() * total;
      let p = 0;
      while (pick >= weights[p] && p < POOLS.length - 1) pick -= weights[p++];
      const pool = [...POOLS[p]];
      v += pool[Math.floor(r() * pool.length)];
    }
    out.push(v);
  }
  return out;
}

/**
 * Values shaped like the three cases of bench/secrets-mask.ts (token-like, password-like,
 * non-ASCII password-like), seeded, and values with lone surrogates where a form's bytes
 * could pair with the next form's (the registry then measures each form on its own).
 */
function benchCorpus(): string[] {
  const r = rng(20261203);
  const b64 = (len: number): string =>
    Buffer.from(Array.from({ length: len }, () => Math.floor(r() * 256))).toString('base64');
  const out: string[] = [];
  for (let i = 0; i < 300; i++) {
    out.push(`tok${i}_${b64(24).replace(/\+/g, '-').replace(/\//g, '_').slice(0, 24)}`);
    out.push(`p@ss&<${i}>/"${b64(12)}'`);
    out.push(`pässwörd ${i}/漢字-🔑'"&<${b64(9)}`);
  }
  const lone = ['\ud800', '\udc00', '\udbff', '\udfff'];
  for (let i = 0; i < 40; i++) {
    const a = lone[i % 4];
    const b = lone[(i >> 2) % 4];
    out.push(`${a}x${b64(6)}${b}`, `sec-${i}-${b}`, `${a}\nline-${i}-é\n${b}`, `é-${i}\n${a}${b64(3)}${b}`);
  }
  // More forms than the registry's first tables hold: a value of 100 lines, one with a lone surrogate.
  const lines = Array.from({ length: 100 }, (_, i) => `line ${i} ${b64(6)}${i % 3 ? 'é' : ''}`);
  out.push(lines.join('\n'), `${lines.join('\r\n')}\ud800`);
  return out;
}

interface Captured {
  forms: string[];
  masks: string[];
}

function captureOne(value: string): Captured {
  const masks: string[] = [];
  const reg = new SecretRegistry((m) => masks.push(m));
  const forms = reg.register(value, { name: 'X' });
  return { forms, masks };
}

/** Text holding each value's forms whole, cut short, and inside base64 blobs at each offset. */
function scrubText(values: string[]): string {
  const parts: string[] = [];
  values.forEach((v, i) => {
    const forms = secretForms(v);
    const f = forms[i % forms.length];
    parts.push(`[${f}]`, f.slice(0, -1), Buffer.from(`${'xyz'.slice(0, i % 4)}${v}!`).toString('base64'));
    if (i % 7 === 0)
      parts.push(
        Buffer.from(`pad${v}`)
          .toString('base64')
          .replace(/(.{64})/g, '$1\n'),
      );
  });
  return parts.join(' ');
}

function digest(x: unknown): string {
  return createHash('sha256').update(JSON.stringify(x)).digest('hex');
}

interface Fixture {
  named: Record<string, Captured>;
  random: { count: number; forms: string; scrub: string; hits: string };
  bench: { count: number; forms: string; sorted: string; scrub: string };
}

function build(): Fixture {
  const named: Record<string, Captured> = {};
  for (const [label, v] of NAMED) named[label] = captureOne(v);
  const values = randomCorpus(1500);
  const reg = new SecretRegistry(() => undefined);
  values.forEach((v, i) => reg.register(v, { name: `R${i}` }));
  const text = scrubText(values);
  return {
    named,
    random: {
      count: values.length,
      forms: digest(values.map((v) => captureOne(v))),
      scrub: digest(reg.scrub(text)),
      hits: digest(reg.findAll(Buffer.from(text))),
    },
    bench: benchDigests(),
  };
}

function benchDigests(): Fixture['bench'] {
  const values = benchCorpus();
  const reg = new SecretRegistry(() => undefined);
  const all = values.map((v, i) => reg.register(v, { name: `B${i}` }));
  return {
    count: values.length,
    forms: digest(values.map((v) => captureOne(v))),
    sorted: digest(all.flat().sort()),
    scrub: digest(reg.scrub(scrubText(values))),
  };
}

describe('secret forms stay what they were', () => {
  const now = build();
  if (capture) writeFileSync(FIXTURE, `${JSON.stringify(now, null, 1)}\n`);
  const golden = JSON.parse(readFileSync(FIXTURE, 'utf8')) as Fixture;

  it('covers every named value', () => {
    expect(Object.keys(golden.named)).toEqual(NAMED.map(([label]) => label));
  });

  it('register returns the forms secretForms gives', () => {
    for (const [, v] of NAMED)
      expect(now.named[NAMED.find((n) => n[1] === v)![0]].forms).toEqual(secretForms(v));
  });

  it.each(NAMED)('%s: the same forms and runner masks, in the same order', (label) => {
    expect(now.named[label]).toEqual(golden.named[label]);
  });

  it('a seeded corpus of 1500 mixed values: same forms, masks, scrub output and hits', () => {
    expect(now.random).toEqual(golden.random);
  });

  it('values shaped like the benchmark and lone surrogates: same forms, masks and scrub output', () => {
    expect(now.bench).toEqual(golden.bench);
  });

  it('every form registered is found whole, from its own bytes, among the others', () => {
    const values = benchCorpus();
    const reg = new SecretRegistry(() => undefined);
    values.forEach((v, i) => reg.register(v, { name: `B${i}` }));
    const missed = values.flatMap((v) => secretForms(v).filter((f) => reg.scrub(f) !== '***'));
    expect(missed).toEqual([]);
  });
});
