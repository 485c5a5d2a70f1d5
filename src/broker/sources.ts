/**
 * The two credential sources the broker serves: each keeps its current credential in
 * memory, hands it out while more than `refreshBeforeSeconds` remain, and otherwise gets a
 * new one (one exchange at a time however many callers wait on it).
 */
import { assumeRoleWithWebIdentity, type AwsCredentials } from '../aws/sts.js';
import { getIdToken } from '../platform/oidc.js';
import type { SecretRegistry } from '../platform/mask.js';
import { Runner, type Env } from '../platform/runner.js';
import { GithubApi } from '../github/api.js';
import { mintToken, revokeAndConfirm, type MintedToken } from '../github/token.js';
import type { TokenRevoked } from '../ledger/events.js';
import type { BrokerAwsConfig, BrokerGithubConfig } from './config.js';

export interface Issued<T> {
  value: T;
  /** Seconds since the epoch. */
  expiresAt: number;
  /** 1 for the first, then counting. */
  issuance: number;
  reason: 'start' | 'expiring';
}

/** A cached credential with single-flight refresh. */
export class CachedCredential<T> {
  private current: Issued<T> | undefined;
  private pending: Promise<Issued<T>> | undefined;
  private count = 0;
  private closed = false;
  /** Every value issued, oldest first (the GitHub source revokes them all at stop). */
  readonly issued: Issued<T>[] = [];

  constructor(
    private readonly fetchNew: () => Promise<{ value: T; expiresAt: number }>,
    private readonly refreshBeforeSeconds: number,
    private readonly now: () => number = () => Date.now() / 1000,
  ) {}

  get refreshes(): number {
    return this.count;
  }

  /** The latest expiry of anything handed out (seconds), or undefined. */
  get latestExpiry(): number | undefined {
    return this.issued.length ? Math.max(...this.issued.map((i) => i.expiresAt)) : undefined;
  }

  /** Whether an exchange is on its way (a value may exist that is not in `issued` yet). */
  get inFlight(): boolean {
    return this.pending !== undefined;
  }

  /**
   * No exchange starts after this (the broker is stopping): `get` throws unless one is
   * already on its way, whose value still lands in `issued` to be revoked.
   */
  close(): void {
    this.closed = true;
  }

  /** Resolves once no exchange is on its way, or after `ms`; true when none is. */
  async settled(ms: number): Promise<boolean> {
    const pending = this.pending;
    if (!pending) return true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      pending.then(
        () => undefined,
        () => undefined,
      ),
      new Promise<void>((r) => (timer = setTimeout(r, ms))),
    ]);
    clearTimeout(timer);
    return this.pending === undefined;
  }

  /** The current credential when it has more than `refreshBeforeSeconds` left, without waiting. */
  fresh(): Issued<T> | undefined {
    const c = this.current;
    return c && c.expiresAt - this.now() > this.refreshBeforeSeconds ? c : undefined;
  }

  /**
   * The current credential, or a new one. `started` is set when this call began a refresh
   * (the caller records it once it settles). With `waitMs`, a caller whose current
   * credential still has over a minute left waits at most that long for the refresh and is
   * otherwise answered with the current one while the refresh goes on: the SDKs give the
   * endpoint 1-2 s. When a refresh fails while the old one is still valid, the old one is
   * returned.
   */
  async get(waitMs?: number): Promise<{ issued: Issued<T>; started?: Promise<Issued<T>> }> {
    const c = this.fresh();
    if (c) return { issued: c };
    let started: Promise<Issued<T>> | undefined;
    if (!this.pending) {
      if (this.closed) throw new Error('the broker is stopping: no new credentials are fetched');
      started = this.pending = this.fetchNew()
        .then(({ value, expiresAt }) => {
          this.count++;
          const issued: Issued<T> = {
            value,
            expiresAt,
            issuance: this.count,
            reason: this.count === 1 ? 'start' : 'expiring',
          };
          this.current = issued;
          this.issued.push(issued);
          return issued;
        })
        .finally(() => {
          this.pending = undefined;
        });
    }
    const pending = this.pending as Promise<Issued<T>>;
    const old = this.current;
    if (waitMs !== undefined && old && old.expiresAt - this.now() > 60) {
      let timer: NodeJS.Timeout | undefined;
      const winner = await Promise.race([
        pending.then(
          (i) => i,
          () => undefined,
        ),
        new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), waitMs))),
      ]);
      clearTimeout(timer);
      return { issued: winner ?? old, started };
    }
    try {
      return { issued: await pending, started };
    } catch (e) {
      if (old && old.expiresAt - this.now() > 5) return { issued: old, started };
      throw e;
    }
  }
}

export interface SourceDeps {
  registry: SecretRegistry;
  log: (line: string) => void;
  fetch?: typeof fetch;
  /** HTTPS_PROXY, NO_PROXY, ...: the way out for STS, the ID token and GitHub. */
  proxyEnv: Env;
  /** The action the user wrote (`run`, `aws`): the prefix of the errors the sources raise. */
  action?: string;
}

/** ID token, then AssumeRoleWithWebIdentity with the same role, session policy and name each time. */
export function awsSource(
  cfg: BrokerAwsConfig,
  deps: SourceDeps,
): () => Promise<{ value: AwsCredentials; expiresAt: number }> {
  const env: Env = {
    ...deps.proxyEnv,
    ...cfg.stsEnv,
    ACTIONS_ID_TOKEN_REQUEST_URL: cfg.idTokenRequestUrl,
    ACTIONS_ID_TOKEN_REQUEST_TOKEN: cfg.idTokenRequestToken,
  };
  return async () => {
    const token = await getIdToken(cfg.audience, {
      env,
      fetch: deps.fetch,
      registry: deps.registry,
      // Named as the user wrote it: run's aws-audience (from the config), or actions/aws's audience.
      action: deps.action ?? 'broker',
      audienceInput: cfg.inputNames?.audience || 'audience',
    });
    const creds = await assumeRoleWithWebIdentity(
      {
        roleArn: cfg.roleArn,
        sessionName: cfg.sessionName,
        durationSeconds: cfg.durationSeconds,
        webIdentityToken: token,
        region: cfg.region,
        policy: cfg.policy,
        managedPolicyArns: cfg.managedPolicyArns,
      },
      {
        env,
        registry: deps.registry,
        // Named as the user wrote them: run's aws-* (from the config), or actions/aws's own.
        action: deps.action ?? 'broker',
        // The broker tries STS its own number of times: no retry-max-attempts to raise.
        inputNames: { ...cfg.inputNames, retryMaxAttempts: '' },
        onRetry: (reason, attempt, delay) =>
          deps.log(`aws: STS call ${attempt} failed (${reason}); retrying in ${delay} ms`),
      },
    );
    return { value: creds, expiresAt: creds.expiration.getTime() / 1000 };
  };
}

/** Sends mintToken's progress lines to the broker's log instead of a step's stdout. */
class LogRunner extends Runner {
  constructor(private readonly log: (line: string) => void) {
    super({});
  }
  override info(message: string): void {
    this.log(message);
  }
  override warning(message: string): void {
    this.log(`warning: ${message}`);
  }
}

/** Mints installation tokens with the same repositories and permissions each time. */
export function githubSource(
  cfg: BrokerGithubConfig,
  deps: SourceDeps,
): () => Promise<{ value: MintedToken; expiresAt: number }> {
  const runner = new LogRunner(deps.log);
  return async () => {
    const t = await mintToken(
      { ...cfg, skipTokenRevoke: false, configureGit: false },
      { env: deps.proxyEnv, runner, registry: deps.registry, api: { fetch: deps.fetch, env: deps.proxyEnv } },
    );
    return { value: t, expiresAt: Date.parse(t.expiresAt) / 1000 };
  };
}

/** Revokes every token still unexpired; counts the outcomes. */
export async function revokeAll(
  apiUrl: string,
  tokens: Issued<MintedToken>[],
  deps: { fetch?: typeof fetch; env: Env; now?: () => number },
): Promise<{ revoked: number; failed: number; skipped: number; results: TokenRevoked[] }> {
  const api = new GithubApi(apiUrl, { fetch: deps.fetch, env: deps.env, maxAttempts: 3, maxTotalMs: 20000 });
  const now = (deps.now ?? (() => Date.now() / 1000))();
  const results = await Promise.all(
    tokens.map((t): Promise<TokenRevoked> =>
      t.expiresAt <= now
        ? Promise.resolve({
            status: 'skipped',
            detail: 'already expired',
            installationId: t.value.installationId,
          })
        : revokeAndConfirm(api, t.value.token).then((r) => ({
            installationId: t.value.installationId,
            ...r,
          })),
    ),
  );
  const n = (s: TokenRevoked['status']): number => results.filter((r) => r.status === s).length;
  return { revoked: n('revoked'), failed: n('failed'), skipped: n('skipped'), results };
}
