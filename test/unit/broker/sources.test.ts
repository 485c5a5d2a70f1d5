import { describe, expect, test } from '@jest/globals';
import { CachedCredential } from '../../../src/broker/sources.js';

function clock(start = 1_000_000): { now: () => number; advance: (s: number) => void } {
  let t = start;
  return { now: () => t, advance: (s) => (t += s) };
}

describe('CachedCredential', () => {
  test('hands out the cached value until fewer than refresh-before seconds remain', async () => {
    const c = clock();
    let n = 0;
    const cache = new CachedCredential(async () => ({ value: ++n, expiresAt: c.now() + 900 }), 300, c.now);
    expect((await cache.get()).issued).toMatchObject({ value: 1, issuance: 1, reason: 'start' });
    c.advance(599);
    expect(await cache.get()).toMatchObject({ fresh: false, issued: { value: 1 } });
    c.advance(2);
    expect(await cache.get()).toMatchObject({
      fresh: true,
      issued: { value: 2, issuance: 2, reason: 'expiring' },
    });
    expect(cache.refreshes).toBe(2);
    expect(cache.issued.map((i) => i.value)).toEqual([1, 2]);
  });

  test('concurrent callers share one exchange', async () => {
    let calls = 0;
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const cache = new CachedCredential(async () => {
      calls++;
      await gate;
      return { value: 'v', expiresAt: Date.now() / 1000 + 900 };
    }, 300);
    const all = Promise.all([cache.get(), cache.get(), cache.get()]);
    release();
    const got = await all;
    expect(calls).toBe(1);
    expect(got.filter((g) => g.fresh)).toHaveLength(1);
  });

  test('a failed refresh falls back to a still-valid value, and fails once it has expired', async () => {
    const c = clock();
    let fail = false;
    const cache = new CachedCredential(
      async () => {
        if (fail) throw new Error('sts down');
        return { value: 'first', expiresAt: c.now() + 900 };
      },
      300,
      c.now,
    );
    await cache.get();
    fail = true;
    c.advance(700);
    expect(await cache.get()).toMatchObject({ fresh: false, issued: { value: 'first' } });
    c.advance(200);
    await expect(cache.get()).rejects.toThrow('sts down');
  });
});
