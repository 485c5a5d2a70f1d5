/**
 * A small GitHub REST client: JSON in and out, GitHub's error bodies kept, retries on 5xx
 * and on rate limits (403/429 with `retry-after` or a rate-limit message), honouring the
 * wait GitHub asks for.
 */
import { retry, sleep as realSleep } from '../platform/retry.js';
import { proxiedFetch } from '../platform/proxy.js';
import type { Env } from '../platform/runner.js';

export interface ApiDeps {
  fetch?: typeof fetch;
  /** Its HTTPS_PROXY / NO_PROXY decide the way out when `fetch` is not given (Node's fetch ignores them). */
  env?: Env;
  sleep?: (ms: number) => Promise<void>;
  /** Called before each retry: what failed and how long we wait. */
  onRetry?: (what: string, delayMs: number) => void;
  maxAttempts?: number;
  /** Longest total wait across retries. */
  maxTotalMs?: number;
}

export class GithubApiError extends Error {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    /** GitHub's `message`, or a short note when the body was not JSON. */
    readonly apiMessage: string,
    readonly headers: Headers | undefined,
    readonly documentationUrl?: string,
  ) {
    super(`${method} ${path} answered HTTP ${status}${apiMessage ? `: ${apiMessage}` : ''}`);
  }

  /** The wait GitHub asked for, in ms. */
  get retryAfterMs(): number | undefined {
    const h = this.headers;
    if (!h) return undefined;
    const after = h.get('retry-after');
    if (after && /^\d+$/.test(after.trim())) return Number(after.trim()) * 1000;
    if (h.get('x-ratelimit-remaining') === '0') {
      const reset = Number(h.get('x-ratelimit-reset'));
      if (reset > 0) return Math.max(0, reset * 1000 - Date.now());
    }
    // GitHub: after a secondary rate limit with no retry-after, wait at least a minute.
    if (this.rateLimited) return 60000;
    return undefined;
  }

  get rateLimited(): boolean {
    if (this.status === 429) return true;
    if (this.status !== 403) return false;
    return (
      this.headers?.get('retry-after') != null ||
      this.headers?.get('x-ratelimit-remaining') === '0' ||
      /rate limit/i.test(this.apiMessage)
    );
  }
}

export interface ApiResponse<T> {
  status: number;
  body: T;
  headers: Headers;
}

export class GithubApi {
  private readonly doFetch: typeof fetch;

  constructor(
    readonly baseUrl: string,
    private readonly deps: ApiDeps = {},
  ) {
    this.doFetch = deps.fetch ?? (deps.env && proxiedFetch(deps.env)) ?? fetch;
  }

  /** One request, no retries; a non-2xx answer throws GithubApiError. */
  async once<T>(method: string, path: string, auth: string, body?: unknown): Promise<ApiResponse<T>> {
    let res: Response;
    try {
      res = await this.doFetch(`${this.baseUrl}${path}`, {
        method,
        headers: {
          Accept: 'application/vnd.github+json',
          'X-GitHub-Api-Version': '2022-11-28',
          'User-Agent': 'cordon-github-token',
          Authorization: auth,
          ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(15000),
      });
    } catch (e) {
      // No HTTP answer at all: status 0 marks it retryable. Only the cause's message is kept.
      const why = e instanceof Error ? ((e.cause as Error | undefined)?.message ?? e.message) : String(e);
      throw new GithubApiError(method, path, 0, `no answer (${why})`, undefined);
    }
    const text = await res.text();
    let parsed: unknown = undefined;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
    }
    if (!res.ok) {
      const b = (parsed ?? {}) as { message?: unknown; documentation_url?: unknown };
      const message = typeof b.message === 'string' ? b.message : text ? 'the answer was not JSON' : '';
      const doc = typeof b.documentation_url === 'string' ? b.documentation_url : undefined;
      throw new GithubApiError(method, path, res.status, message, res.headers, doc);
    }
    return { status: res.status, body: parsed as T, headers: res.headers };
  }

  /** A request retried on no answer, 5xx and rate limits. */
  async request<T>(
    method: string,
    path: string,
    auth: () => string,
    body?: unknown,
  ): Promise<ApiResponse<T>> {
    return retry(() => this.once<T>(method, path, auth(), body), {
      maxAttempts: this.deps.maxAttempts ?? 5,
      baseMs: 500,
      maxDelayMs: 8000,
      maxTotalMs: this.deps.maxTotalMs ?? 90000,
      sleep: this.deps.sleep ?? realSleep,
      isRetryable: (e) => e instanceof GithubApiError && (e.status === 0 || e.status >= 500 || e.rateLimited),
      retryAfterMs: (e) => (e instanceof GithubApiError ? e.retryAfterMs : undefined),
      onRetry: (e, _attempt, delay) => this.deps.onRetry?.(e instanceof Error ? e.message : String(e), delay),
    });
  }
}
