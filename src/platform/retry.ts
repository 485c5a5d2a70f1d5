/** Exponential backoff with full jitter, bounded by attempts and by total time. */
export interface RetryOptions {
  maxAttempts: number;
  baseMs?: number;
  maxDelayMs?: number;
  /** Give up when the next wait would end past this many ms from the first attempt. */
  maxTotalMs?: number;
  isRetryable: (e: unknown) => boolean;
  /** A delay the server asked for (`retry-after`), in ms; overrides the backoff when larger. */
  retryAfterMs?: (e: unknown) => number | undefined;
  onRetry?: (e: unknown, attempt: number, delayMs: number) => void;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  now?: () => number;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function retry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions): Promise<T> {
  const base = opts.baseMs ?? 200;
  const cap = opts.maxDelayMs ?? 5000;
  const total = opts.maxTotalMs ?? 60000;
  const wait = opts.sleep ?? sleep;
  const random = opts.random ?? Math.random;
  const now = opts.now ?? Date.now;
  const started = now();
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      if (attempt >= opts.maxAttempts || !opts.isRetryable(e)) throw e;
      let delay = Math.floor(random() * Math.min(cap, base * 2 ** (attempt - 1)));
      const asked = opts.retryAfterMs?.(e);
      if (asked !== undefined && asked > delay) delay = asked;
      if (now() - started + delay > total) throw e;
      opts.onRetry?.(e, attempt, delay);
      await wait(delay);
    }
  }
}
