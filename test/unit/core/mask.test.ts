import { describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { SecretRegistry, StreamScrubber, scrubStrings } from '../../../src/platform/mask.js';
import { secretForms, shellQuote } from '../../../src/platform/secret-forms.js';

const S = 'hunter2-Pa$$w0rd&<x>"q\'/+=';

function registry(...values: string[]): { reg: SecretRegistry; masks: string[] } {
  const masks: string[] = [];
  const reg = new SecretRegistry((v) => masks.push(v));
  values.forEach((v, i) => reg.register(v, { name: `SECRET_${i}` }));
  return { reg, masks };
}

function scrubStream(reg: SecretRegistry, chunks: (string | Buffer)[]): string {
  const s = new StreamScrubber(reg.matcher());
  const out = chunks.map((c) => s.push(Buffer.isBuffer(c) ? c : Buffer.from(c)));
  out.push(s.flush());
  return Buffer.concat(out).toString('utf8');
}

function bash(script: string, env: Record<string, string>): string {
  return execFileSync('bash', ['-c', script], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
  }).toString('utf8');
}

describe('secret forms are scrubbed', () => {
  const { reg } = registry(S);
  const cases: [string, string][] = [
    ['plain', S],
    ['base64', Buffer.from(S).toString('base64')],
    ['base64 of echo "$S" (trailing newline)', bash('echo "$S" | base64 -w0', { S })],
    ['base64url', Buffer.from(S).toString('base64url')],
    ['unpadded base64', Buffer.from(S).toString('base64').replace(/=+$/, '')],
    ['hex', Buffer.from(S).toString('hex')],
    ['HEX', Buffer.from(S).toString('hex').toUpperCase()],
    ['URL encoding', encodeURIComponent(S)],
    ['form encoding', new URLSearchParams({ k: S }).toString().slice(2)],
    ['JSON escape', JSON.stringify(S).slice(1, -1)],
    [
      'Go-style \\u0026 escapes',
      JSON.stringify(S)
        .slice(1, -1)
        .replace(/&/g, '\\u0026')
        .replace(/</g, '\\u003c')
        .replace(/>/g, '\\u003e'),
    ],
    ['printf %q', bash('printf %q "$S"', { S })],
  ];
  it.each(cases)('%s', (_label, form) => {
    const out = reg.scrub(`before ${form} after`);
    expect(out).toBe('before *** after');
    expect(scrubStream(reg, [`x ${form} y\n`])).toBe('x *** y\n');
  });

  it('finds the value inside a larger base64 blob at each of the three offsets', () => {
    for (const prefix of ['', 'a', 'ab', 'abc', 'some longer prefix text: ']) {
      const blob = Buffer.from(`${prefix}${S} and a suffix`).toString('base64');
      const out = reg.scrub(blob);
      expect(out).toContain('***');
      // What is left of the blob cannot be decoded back to the value.
      expect(Buffer.from(out.replace(/\*\*\*/g, ''), 'base64').toString('latin1')).not.toContain(
        S.slice(3, -3),
      );
    }
  });

  it('names the secret found, never the value', () => {
    expect(reg.findIn(`x ${Buffer.from(S).toString('hex')} y`)).toBe('SECRET_0');
    expect(reg.findIn('nothing here')).toBeUndefined();
    const hits = reg.findAll(Buffer.from(`a ${S} b ${encodeURIComponent(S)}`));
    expect(hits.map((h) => h.name)).toEqual(['SECRET_0', 'SECRET_0']);
  });

  it('printf %q matches bash for control characters', () => {
    const v = "line1\nline2\tx'y";
    expect(shellQuote(v)).toBe(bash('printf %q "$V"', { V: v }));
  });
});

describe('wrapped base64', () => {
  const { reg } = registry(S);
  const core = Buffer.from(S).toString('base64').slice(0, 32);
  it.each([76, 64])('finds the value in base64 wrapped at %i columns wherever the line breaks', (width) => {
    for (let pad = 0; pad < 80; pad += 3) {
      const blob = bash(`printf '%s' "$T" | base64 -w ${width}`, {
        T: `${'x'.repeat(pad)}${S}${' and more text after it'.repeat(4)}`,
      });
      expect(blob.split('\n')[0].length).toBe(width);
      for (const out of [
        reg.scrub(blob),
        scrubStream(reg, [blob.slice(0, 50), blob.slice(50, 90), blob.slice(90)]),
      ]) {
        expect(out).toContain('***');
        expect(out.replace(/\n/g, '')).not.toContain(core.slice(8, 24));
      }
      const crlf = blob.replace(/\n/g, '\r\n');
      expect(reg.scrub(crlf).replace(/\r\n/g, '')).not.toContain(core.slice(8, 24));
    }
  });

  it('leaves other text with newlines alone, and names the secret in a wrapped file', () => {
    const plain = `${'a'.repeat(76)}\n${'b'.repeat(76)}\nshort line\n`;
    expect(reg.scrub(plain)).toBe(plain);
    const blob = bash(`printf '%s' "$T" | base64 -w 76`, { T: `${'y'.repeat(40)}${S}` });
    expect(reg.findAll(Buffer.from(blob)).map((h) => h.name)).toContain('SECRET_0');
  });
});

describe('stream scrubbing', () => {
  it('scrubs a value split across two writes at every split point', () => {
    const { reg } = registry(S);
    for (let cut = 1; cut < S.length; cut++) {
      const out = scrubStream(reg, [`start ${S.slice(0, cut)}`, `${S.slice(cut)} end`]);
      expect(out).toBe('start *** end');
    }
  });

  it('scrubs a value split byte by byte', () => {
    const { reg } = registry(S);
    const bytes = Buffer.from(`[${S}]`);
    const out = scrubStream(
      reg,
      [...bytes].map((b) => Buffer.from([b])),
    );
    expect(out).toBe('[***]');
  });

  it('scrubs a multi-line value across lines and writes, and each line alone', () => {
    const pem =
      '-----BEGIN RSA PRIVATE KEY-----\r\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\r\n4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onL\r\n-----END RSA PRIVATE KEY-----\r\n';
    const { reg, masks } = registry(pem);
    // Every line is masked with the runner on its own, without its CR; armor lines are not secret.
    expect(masks).toEqual(
      expect.arrayContaining([
        'MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo',
        '4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onL',
      ]),
    );
    expect(masks).not.toContain('-----BEGIN RSA PRIVATE KEY-----');
    expect(scrubStream(reg, [pem.slice(0, 50), pem.slice(50)])).toBe('***');
    expect(reg.scrub(pem.replace(/\r\n/g, '\n'))).not.toMatch(/MIIE|4lgO/);
    expect(reg.scrub('key line: 4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onL\n')).toBe('key line: ***\n');
  });

  it('counts the bytes scrubbed and passes other bytes through untouched', () => {
    const { reg } = registry(S);
    const bin = Buffer.from([0, 255, 128, 10, 13, 0xe2, 0x82]);
    const s = new StreamScrubber(reg.matcher());
    const out = Buffer.concat([s.push(bin), s.push(Buffer.from(S)), s.push(bin), s.flush()]);
    expect(out).toEqual(Buffer.concat([bin, Buffer.from('***'), bin]));
    expect(s.scrubbed).toBe(Buffer.byteLength(S));
  });

  it('finds a form that overlaps the end of another across a chunk boundary', () => {
    const { reg } = registry('AAAABBBBCCCC', 'CCCCDDDDEEEE');
    expect(scrubStream(reg, ['x AAAABBBBCCCCDD', 'DDEEEE y'])).toBe('x *** y');
    expect(reg.scrub('x AAAABBBBCCCCDDDDEEEE y')).toBe('x *** y');
  });
});

describe('stream scrubbing matches scrubbing the whole', () => {
  test('for random values, texts and chunk sizes', () => {
    let seed = 7;
    const r = (): number => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed / 2 ** 32;
    };
    const word = (n: number): string => Array.from({ length: n }, () => 'abc'[Math.floor(r() * 3)]).join('');
    for (let round = 0; round < 150; round++) {
      const reg = new SecretRegistry(() => undefined);
      const values = Array.from({ length: 1 + Math.floor(r() * 4) }, () => word(4 + Math.floor(r() * 10)));
      values.forEach((v, i) => reg.register(v, { name: `V${i}` }));
      const text = Buffer.from(word(Math.floor(r() * 400)));
      const chunks: Buffer[] = [];
      for (let at = 0; at < text.length;) {
        const n = 1 + Math.floor(r() * 40);
        chunks.push(text.subarray(at, at + n));
        at += n;
      }
      expect(scrubStream(reg, chunks)).toBe(reg.scrub(text.toString()));
    }
  });
});

describe('registration', () => {
  it('refuses 1-3 character values unless marked not secret', () => {
    const reg = new SecretRegistry(() => undefined);
    for (const v of ['', 'a', 'ab', 'abc']) {
      expect(() => reg.register(v, { name: 'SHORT' })).toThrow(/secret SHORT is (empty|only \d character)/);
      expect(reg.register(v, { name: 'SHORT', notSecret: true })).toEqual([]);
    }
    expect(reg.size).toBe(0);
    try {
      reg.register('abc', { name: 'SHORT' });
    } catch (e) {
      expect(String(e)).not.toContain('abc');
    }
  });

  it.each([
    ['%0A', 'val%0Aue-with-percent'],
    ['::add-mask::', 'x::add-mask::zzzz'],
    ['newline EVIL=1', 'value-one\nEVIL=1'],
  ])('masks values containing %s with the runner, escaped', (_label, value) => {
    const lines: string[] = [];
    const write = process.stdout.write;
    const reg = new SecretRegistry((v) => lines.push(v));
    reg.register(value, { name: 'TRICKY' });
    expect(reg.scrub(`a ${value} b`)).toBe('a *** b');
    // Every runner mask is one line: a newline in the value never starts a new command.
    for (const l of lines) expect(l).not.toMatch(/[\r\n]/);
    expect(process.stdout.write).toBe(write);
  });

  it('keeps unicode values and their JSON \\u escapes', () => {
    const v = 'pässwörd-日本語-🔑';
    const { reg } = registry(v);
    expect(reg.scrub(`"${v}"`)).toBe('"***"');
    expect(reg.scrub(JSON.stringify(v).slice(1, -1))).toBe('***');
    const escaped = v.replace(
      /[\u0080-\uffff]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
    );
    expect(reg.scrub(escaped)).toBe('***');
  });

  it('gives each form at least 4 characters and dedupes', () => {
    const forms = secretForms('abcd');
    expect(new Set(forms).size).toBe(forms.length);
    for (const f of forms) expect(f.length).toBeGreaterThanOrEqual(4);
  });

  it('handles tens of thousands of forms', () => {
    const reg = new SecretRegistry(() => undefined);
    for (let i = 0; i < 20000; i++) reg.register(`secret-value-number-${i}-xyz`, { name: `S${i}` });
    expect(reg.scrub('x secret-value-number-19999-xyz y')).toBe('x *** y');
    expect(reg.findIn('secret-value-number-123-xyz')).toBe('S123');
  });
});

describe('registry storage (forms kept as packed bytes)', () => {
  it('grows past its first buffers and names every secret right', () => {
    const reg = new SecretRegistry(() => undefined);
    // 3000 secrets x ~18 forms: past the first 4096 form slots and 64 KiB of bytes several times.
    const values = Array.from({ length: 3000 }, (_, i) => `pw&<${i}>"x'-${'y'.repeat(i % 50)}`);
    values.forEach((v, i) => reg.register(v, { name: `P${i}` }));
    expect(reg.size).toBe(values.reduce((n, v) => n + secretForms(v).length, 0));
    for (const i of [0, 1, 1234, 2999]) {
      const v = values[i];
      expect(reg.findIn(`a ${encodeURIComponent(v)} b`)).toBe(`P${i}`);
      expect(reg.findIn(`a ${Buffer.from(v).toString('hex').toUpperCase()} b`)).toBe(`P${i}`);
      expect(reg.scrub(`<${v}>`)).toBe('<***>');
    }
  });

  it('keeps byte offsets right for unicode values between ASCII ones', () => {
    const reg = new SecretRegistry(() => undefined);
    const vals = ['ascii-one-1234', 'пароль-日本-🔑-x', 'ascii-two-5678', 'ça-été-\u00ff\u0080'];
    vals.forEach((v, i) => reg.register(v, { name: `U${i}` }));
    vals.forEach((v, i) => {
      const text = `pre ${v} mid ${JSON.stringify(v)} post`;
      expect(reg.scrub(text)).toBe('pre *** mid "***" post');
      expect(reg.findAll(Buffer.from(text)).map((h) => h.name)).toEqual([`U${i}`, `U${i}`]);
    });
  });

  it('a matcher handed out before a later register still finds what it was built on', () => {
    const reg = new SecretRegistry(() => undefined);
    reg.register('first-secret-value', { name: 'A' });
    const before = reg.matcher();
    // Enough to move the bytes to a bigger buffer.
    for (let i = 0; i < 2000; i++) reg.register(`later-secret-${i}-with-some-length`, { name: `L${i}` });
    expect(before.find(Buffer.from('x first-secret-value y'))).toEqual([{ start: 2, end: 20 }]);
    expect(before.find(Buffer.from('later-secret-5-with-some-length'))).toEqual([]);
    expect(reg.matcher()).not.toBe(before);
    expect(reg.scrub('later-secret-5-with-some-length first-secret-value')).toBe('*** ***');
  });

  it('a value with a lone surrogate registers (its URL form as written: U+FFFD) and is scrubbed', () => {
    const reg = new SecretRegistry(() => undefined);
    const v = JSON.parse('"x\\ud800y-secret-z"') as string;
    const forms = reg.register(v, { name: 'LONE' });
    expect(forms[0]).toBe(v);
    expect(forms).toContain(encodeURIComponent('x\ufffdy-secret-z'));
    // Written out as UTF-8 the lone surrogate becomes EF BF BD.
    expect(reg.scrubBuffer(Buffer.from(`a ${v} b`)).toString()).toBe('a *** b');
    expect(reg.findIn(`a ${Buffer.from(v).toString('base64')} b`)).toBe('LONE');
  });

  it('text forms are built only for the characters a value holds', () => {
    // Plain: no text encoding changes it, so only the value, base64 and hex forms.
    expect(secretForms('plain_value-123.x')).toEqual([
      'plain_value-123.x',
      Buffer.from('plain_value-123.x').toString('base64'),
      Buffer.from('plain_value-123.x').toString('base64').replace(/=+$/, ''),
      ...secretForms('plain_value-123.x').slice(3),
    ]);
    for (const f of secretForms('plain_value-123.x')) expect(f).not.toMatch(/[%\\&]/);
    // A space alone: URL, form and shell forms; JSON and HTML leave it.
    const sp = secretForms('with space here');
    expect(sp).toEqual(
      expect.arrayContaining(['with%20space%20here', 'with+space+here', 'with\\ space\\ here']),
    );
    // CRLF: JSON escapes both, bash quotes with $'...', each line on its own.
    const crlf = secretForms('line-one-x\r\nline-two-y');
    expect(crlf).toEqual(
      expect.arrayContaining([
        'line-one-x',
        'line-two-y',
        'line-one-x\\r\\nline-two-y',
        "$'line-one-x\\r\\nline-two-y'",
      ]),
    );
  });
});

describe('findFolded (names that arrive lower-cased, as DNS names do)', () => {
  it('finds a value and its base64 whatever their case, registered later too, and only them', () => {
    const { reg } = registry('Zq8xWpLmKtRv');
    expect(reg.findFolded('zq8xwplmktrv.evil.test')).toBe('SECRET_0');
    expect(reg.findFolded(`${Buffer.from('Zq8xWpLmKtRv').toString('base64').toLowerCase()}.evil.test`)).toBe(
      'SECRET_0',
    );
    // The exact-case finder misses what DNS lower-cased.
    expect(reg.findIn('zq8xwplmktrv.evil.test')).toBeUndefined();
    expect(reg.findFolded('zq8xwplmktr.evil.test')).toBeUndefined();
    expect(reg.findFolded('innocent.evil.test')).toBeUndefined();
    reg.register('Second-Value-77', { name: 'LATER' });
    expect(reg.findFolded('x.second-value-77.test')).toBe('LATER');
    expect(new SecretRegistry(() => undefined).findFolded('anything')).toBeUndefined();
  });
});

describe('scrubStrings (records that carry names the command chose)', () => {
  test('scrubs every string at any depth, keeps numbers, booleans, keys and absent values', () => {
    const registry = new SecretRegistry(() => {});
    const value = 'deep-secret-value-91c3';
    registry.register(value, { name: 'API_KEY' });
    const hex = Buffer.from(value).toString('hex');
    const record = {
      outputs: ['fine', value, `x${hex}`],
      agentUser: { problems: [`left /tmp/${value}`], removed: true, leftoversRemoved: 3 },
      gitRestored: [`.git/hooks/${value}`],
      exitCode: 0,
      signal: undefined,
      none: null,
    };
    const out = scrubStrings(record, registry);
    expect(out).toEqual({
      outputs: ['fine', '***', 'x***'],
      agentUser: { problems: ['left /tmp/***'], removed: true, leftoversRemoved: 3 },
      gitRestored: ['.git/hooks/***'],
      exitCode: 0,
      signal: undefined,
      none: null,
    });
    expect(registry.findIn(JSON.stringify(out))).toBeUndefined();
    // The input is left as it was.
    expect(record.outputs[1]).toBe(value);
  });

  test('an empty registry hands back the same object', () => {
    const record = { a: ['b'] };
    expect(scrubStrings(record, new SecretRegistry(() => {}))).toBe(record);
  });
});
