import { describe, expect, test } from '@jest/globals';
import { Inputs, parseDuration, splitList } from '../../../src/platform/inputs.js';
import { errorOf } from '../../harness/errors.js';

const make = (vals: Record<string, string>): Inputs =>
  new Inputs(
    'test',
    Object.fromEntries(Object.entries(vals).map(([k, v]) => [`INPUT_${k.toUpperCase()}`, v])),
  );

describe('inputs', () => {
  test('required string names the input and how to give it', () => {
    const e = errorOf(() => make({}).string('role-to-assume', { required: true }));
    expect(e.input).toBe('role-to-assume');
    expect(e.message).toContain('input role-to-assume is required');
    expect(e.message).toContain('with:');
  });

  test('boolean accepts true/false forms and rejects others with the value', () => {
    expect(make({ a: 'TRUE' }).boolean('a', false)).toBe(true);
    expect(make({ a: 'no' }).boolean('a', true)).toBe(false);
    expect(make({}).boolean('a', true)).toBe(true);
    const e = errorOf(() => make({ a: 'maybe' }).boolean('a', false));
    expect(e.message).toContain('"maybe"');
    expect(e.message).toContain('Fix:');
  });

  test('integer checks form and range', () => {
    expect(make({ n: '900' }).integer('n', 1, { min: 900, max: 43200 })).toBe(900);
    expect(errorOf(() => make({ n: '12x' }).integer('n', 1)).message).toContain('whole number');
    expect(errorOf(() => make({ n: '60' }).integer('n', 900, { min: 900, max: 43200 })).message).toContain(
      '900..43200',
    );
  });

  test('enum lists the allowed values', () => {
    expect(make({ m: 'Audit' }).enumeration('m', ['block', 'audit'] as const, 'block')).toBe('audit');
    expect(make({}).enumeration('m', ['block', 'audit'] as const, 'block')).toBe('block');
    expect(
      errorOf(() => make({ m: 'allow' }).enumeration('m', ['block', 'audit'] as const, 'block')).message,
    ).toContain('block | audit');
  });

  test('list splits on newlines and commas, ignoring blanks and comments', () => {
    expect(make({ l: 'a.com, b.com\n\n  # comment\nc.com\n' }).list('l')).toEqual([
      'a.com',
      'b.com',
      'c.com',
    ]);
    expect(splitList('x y', /\s+/)).toEqual(['x', 'y']);
  });

  test('lines keeps line numbers for error messages', () => {
    expect(make({ l: 'a\n\nb' }).lines('l')).toEqual([
      { line: 1, text: 'a' },
      { line: 3, text: 'b' },
    ]);
  });

  test('duration parses seconds and units', () => {
    expect(parseDuration('900')).toBe(900);
    expect(parseDuration('15m')).toBe(900);
    expect(parseDuration('1h30m')).toBe(5400);
    expect(parseDuration('1d')).toBeUndefined();
    expect(make({ d: '2m' }).duration('d', 60)).toBe(120);
    expect(errorOf(() => make({ d: 'soon' }).duration('d', 60)).message).toContain('duration');
  });

  test('a secret input is never quoted in its error', () => {
    const e = errorOf(() =>
      make({ k: 'hunter2-secret' }).fail('k', 'hunter2-secret', 'bad', 'fix it', { secret: true }),
    );
    expect(e.message).not.toContain('hunter2');
    expect(e.message).toContain('input k');
  });
});
