import { describe, expect, test } from '@jest/globals';
import { retry } from '../../../src/platform/retry.js';

describe('retry', () => {
  test('retries retryable errors with capped full-jitter backoff, then succeeds', async () => {
    const delays: number[] = [];
    let calls = 0;
    const v = await retry(
      async () => {
        calls++;
        if (calls < 4) throw new Error('transient');
        return 'ok';
      },
      {
        maxAttempts: 5,
        baseMs: 100,
        maxDelayMs: 250,
        isRetryable: () => true,
        random: () => 0.999,
        sleep: async (ms) => void delays.push(ms),
      },
    );
    expect(v).toBe('ok');
    expect(calls).toBe(4);
    expect(delays).toEqual([99, 199, 249]);
  });

  test('does not retry what the predicate refuses', async () => {
    let calls = 0;
    await expect(
      retry(
        async () => {
          calls++;
          throw new Error('AccessDenied');
        },
        {
          maxAttempts: 5,
          isRetryable: (e) => !(e as Error).message.includes('AccessDenied'),
          sleep: async () => {},
        },
      ),
    ).rejects.toThrow('AccessDenied');
    expect(calls).toBe(1);
  });

  test('stops at maxAttempts and at the total time budget', async () => {
    let calls = 0;
    await expect(
      retry(
        async () => {
          calls++;
          throw new Error('x');
        },
        { maxAttempts: 3, isRetryable: () => true, sleep: async () => {} },
      ),
    ).rejects.toThrow('x');
    expect(calls).toBe(3);
    let t = 0;
    calls = 0;
    await expect(
      retry(
        async () => {
          calls++;
          throw new Error('y');
        },
        {
          maxAttempts: 100,
          maxTotalMs: 1000,
          baseMs: 400,
          random: () => 0.999,
          isRetryable: () => true,
          now: () => t,
          sleep: async (ms) => void (t += ms),
        },
      ),
    ).rejects.toThrow('y');
    expect(calls).toBeLessThan(5);
  });

  test('honours a server-requested delay', async () => {
    const delays: number[] = [];
    let calls = 0;
    await retry(
      async () => {
        if (++calls < 2) throw new Error('slow down');
      },
      {
        maxAttempts: 3,
        isRetryable: () => true,
        retryAfterMs: () => 1500,
        random: () => 0,
        sleep: async (ms) => void delays.push(ms),
      },
    );
    expect(delays).toEqual([1500]);
  });
});
