import { describe, expect, test } from '@jest/globals';
import { BearerCheck } from '../../../src/broker/auth.js';

describe('BearerCheck', () => {
  const token = 'ab'.repeat(32);
  const check = new BearerCheck(token);

  test('accepts the token as the whole header (AWS SDKs) or after Bearer (helper)', () => {
    expect(check.accepts(token)).toBe(true);
    expect(check.accepts(`Bearer ${token}`)).toBe(true);
  });

  test('refuses a missing, empty, shorter, longer or altered token', () => {
    for (const h of [
      undefined,
      '',
      'Bearer ',
      token.slice(0, -1),
      `${token}0`,
      `bearer ${token}`,
      token.replace(/^a/, 'c'),
    ])
      expect(check.accepts(h)).toBe(false);
  });
});
