/**
 * Mint and revoke a GitHub App installation token scoped to the repositories and
 * permissions asked for. GitHub's grant is checked against the ask: a token that can do
 * more than asked is revoked at once and the step fails.
 */
import { CordonError } from '../platform/errors.js';
import type { TokenRevoked } from '../ledger/events.js';
import type { SecretRegistry } from '../platform/mask.js';
import type { Env, Runner } from '../platform/runner.js';
import { GithubApi, GithubApiError, type ApiDeps } from './api.js';
import { loadAppKey, signAppJwt } from './app-jwt.js';
import { permissionInputOf, type GithubTokenInputs } from './inputs.js';
import { excessGrants, missingGrants } from './permissions.js';
import { noreplyHost } from './bot-identity.js';

export interface MintDeps {
  env: Env;
  /** Where progress lines and warnings go (a step's log, or the broker's). */
  runner: Runner;
  registry: SecretRegistry;
  api?: ApiDeps;
  /** Seconds since the epoch; the runner's clock by default. */
  now?: () => number;
}

interface AppInfo {
  id: number;
  slug: string;
  name?: string;
}

interface Installation {
  id: number;
  app_slug?: string;
  account?: { login?: string };
  permissions?: Record<string, string>;
  repository_selection?: string;
}

interface AccessToken {
  token: string;
  expires_at: string;
  permissions?: Record<string, string>;
  repository_selection?: string;
  repositories?: { name: string; full_name?: string }[];
}

export interface MintedToken {
  token: string;
  installationId: number;
  appSlug: string;
  botLogin: string;
  botId: number;
  gitUserName: string;
  gitUserEmail: string;
  expiresAt: string;
  permissions: Record<string, string>;
  repositories: string[];
}

const DOCS_JWT =
  'https://docs.github.com/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-json-web-token-jwt-for-a-github-app';

/** Signs app JWTs and corrects once for a runner clock GitHub disagrees with. */
class AppAuth {
  private offsetS = 0;
  private jwt = '';
  constructor(
    private readonly key: ReturnType<typeof loadAppKey>,
    private readonly inputs: GithubTokenInputs,
    private readonly now: () => number,
  ) {}

  get header(): string {
    return `Bearer ${this.jwt}`;
  }

  get clockOffsetS(): number {
    return this.offsetS;
  }

  async sign(): Promise<void> {
    this.jwt = await signAppJwt(this.key, this.inputs.issuer, Math.floor(this.now() + this.offsetS));
  }

  /** True when the error is GitHub refusing the JWT's times and its Date header gave a new offset. */
  correctClock(e: unknown): boolean {
    if (!(e instanceof GithubApiError) || e.status !== 401 || !isClockMessage(e.apiMessage)) return false;
    const date = e.headers?.get('date');
    const serverS = date ? Date.parse(date) / 1000 : NaN;
    if (!Number.isFinite(serverS)) return false;
    const offset = Math.round(serverS - this.now());
    if (offset === this.offsetS) return false;
    this.offsetS = offset;
    return true;
  }
}

function isClockMessage(m: string): boolean {
  return /'(iat|exp)'|Issued at|Expiration time/i.test(m);
}

export async function mintToken(inputs: GithubTokenInputs, deps: MintDeps): Promise<MintedToken> {
  const { runner } = deps;
  const now = deps.now ?? (() => Date.now() / 1000);
  const names = inputs.names;
  const key = loadAppKey(inputs.privateKey, names);
  deps.registry.register(inputs.privateKey, { name: names.input['private-key'] });
  const api = new GithubApi(inputs.apiUrl, {
    env: deps.env,
    ...deps.api,
    onRetry: (what, ms) => {
      runner.info(`${names.action}: ${what}; retrying in ${(ms / 1000).toFixed(1)}s`);
      deps.api?.onRetry?.(what, ms);
    },
  });
  const auth = new AppAuth(key, inputs, now);
  await auth.sign();
  const withJwt = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    try {
      return (await api.request<T>(method, path, () => auth.header, body)).body;
    } catch (e) {
      if (!auth.correctClock(e)) throw e;
      runner.warning(
        `${names.action}: GitHub's clock is ${auth.clockOffsetS}s from this runner's; signed a new app JWT on GitHub's time`,
      );
      await auth.sign();
      return (await api.request<T>(method, path, () => auth.header, body)).body;
    }
  };

  const app = await withJwt<AppInfo>('GET', '/app').catch((e: unknown) => {
    throw appError(e, inputs);
  });
  runner.info(`${names.action}: app ${app.slug} (id ${app.id})`);

  const installation = await findInstallation(inputs, app, withJwt);
  const body: Record<string, unknown> = { permissions: inputs.permissions };
  if (inputs.repositories.length) body.repositories = inputs.repositories;
  const issued = await withJwt<AccessToken>(
    'POST',
    `/app/installations/${installation.id}/access_tokens`,
    body,
  ).catch((e: unknown) => {
    throw tokenError(e, inputs, app, installation);
  });
  if (typeof issued?.token !== 'string' || issued.token.length < 8) {
    throw new CordonError({
      what: `${names.action}: GitHub answered the token request for installation ${installation.id} without a token`,
    });
  }
  // Masked before anything else is done with it.
  deps.registry.register(issued.token, { name: 'GitHub App installation token' });
  const token = issued.token;
  const granted = issued.permissions ?? {};
  const grantedRepos = (issued.repositories ?? []).map((r) => r.name);
  const excess = excessGrants(inputs.permissions, granted);
  if (inputs.repositories.length) {
    const asked = new Set(inputs.repositories.map((r) => r.toLowerCase()));
    if (issued.repository_selection === 'all')
      excess.push('every repository of the installation (asked for a list)');
    for (const r of grantedRepos) if (!asked.has(r.toLowerCase())) excess.push(`repository ${r} (not asked)`);
  }
  if (excess.length) {
    const revoked = await revokeAndConfirm(api, token);
    throw new CordonError({
      what: `${names.action}: GitHub granted more than was asked: ${excess.join(', ')}`,
      why: `the token was ${revoked.status === 'revoked' ? 'revoked at once' : `not revoked (${revoked.detail ?? 'unknown'}); it expires at ${issued.expires_at}`}, because a token wider than asked defeats the fence`,
      fix: `compare the app's installation permissions with ${permissionsText(inputs)}; report this if GitHub ignored the ask`,
    });
  }

  const botLogin = `${app.slug}[bot]`;
  const bot = await api
    .request<{ id: number; login: string }>(
      'GET',
      `/users/${encodeURIComponent(botLogin)}`,
      () => `token ${token}`,
    )
    .then((r) => r.body)
    .catch((e: unknown) => {
      throw new CordonError({
        what: `${names.action}: could not look up the app's bot user ${botLogin}`,
        why: e instanceof Error ? e.message : String(e),
        fix: `retry the job; on GitHub Enterprise Server check ${apiUrlText(inputs)}`,
      });
    });
  return {
    token,
    installationId: installation.id,
    appSlug: app.slug,
    botLogin: bot.login,
    botId: bot.id,
    gitUserName: bot.login,
    gitUserEmail: `${bot.id}+${bot.login}@users.noreply.${noreplyHost(inputs.apiUrl)}`,
    expiresAt: issued.expires_at,
    permissions: granted,
    repositories:
      issued.repository_selection === 'all' && grantedRepos.length === 0
        ? ['*']
        : grantedRepos.map((r) => `${inputs.owner}/${r}`),
  };
}

async function findInstallation(
  inputs: GithubTokenInputs,
  app: AppInfo,
  withJwt: <T>(method: string, path: string) => Promise<T>,
): Promise<Installation> {
  const n = inputs.names.input;
  const owner = encodeURIComponent(inputs.owner);
  const installUrl = `https://github.com/apps/${app.slug}/installations/new`;
  if (inputs.repositories.length) {
    const repo = inputs.repositories[0];
    return withJwt<Installation>('GET', `/repos/${owner}/${encodeURIComponent(repo)}/installation`).catch(
      (e: unknown) => {
        if (e instanceof GithubApiError && e.status === 404) {
          throw new CordonError({
            what: `${inputs.names.action}: app ${app.slug} is not installed on ${inputs.owner}/${repo}`,
            why: `GitHub answered 404 (${e.apiMessage || 'Not Found'}): the app has no installation that reaches this repository, or the repository does not exist`,
            fix: `install the app on ${inputs.owner} and give it access to ${repo} (${installUrl}), or fix ${n.owner}/${n.repositories}`,
            input: n.repositories,
          });
        }
        throw apiFailure(e, 'find the installation', inputs);
      },
    );
  }
  try {
    return await withJwt<Installation>('GET', `/orgs/${owner}/installation`);
  } catch (e) {
    if (!(e instanceof GithubApiError && e.status === 404))
      throw apiFailure(e, 'find the installation', inputs);
  }
  return withJwt<Installation>('GET', `/users/${owner}/installation`).catch((e: unknown) => {
    if (e instanceof GithubApiError && e.status === 404) {
      throw new CordonError({
        what: `${inputs.names.action}: app ${app.slug} is not installed on ${inputs.owner}`,
        why: 'GitHub has no installation of the app on that organization or user',
        fix: `install the app (${installUrl}), or fix ${n.owner}`,
        input: n.owner,
      });
    }
    throw apiFailure(e, 'find the installation', inputs);
  });
}

function appError(e: unknown, inputs: GithubTokenInputs): Error {
  if (!(e instanceof GithubApiError)) return apiFailure(e, 'authenticate as the app', inputs);
  const { action, input: n } = inputs.names;
  const issuerInput = n[inputs.issuerInput];
  const who = `${issuerInput} ${inputs.issuer}`;
  if (e.status === 401 && isClockMessage(e.apiMessage)) {
    return new CordonError({
      what: `${action}: GitHub refused the app JWT's times (${e.apiMessage})`,
      why: "the runner's clock is too far from GitHub's, and GitHub's answer carried no time to correct by",
      fix: `sync the runner's clock (NTP: \`timedatectl set-ntp true\` on self-hosted runners); see ${DOCS_JWT}`,
    });
  }
  if (e.status === 404 || e.status === 401) {
    return new CordonError({
      what: `${action}: GitHub does not accept the app JWT for ${who} (HTTP ${e.status}: ${e.apiMessage})`,
      why:
        e.status === 404
          ? `no GitHub App has ${who}`
          : `${n['private-key']} is not a key of the app with ${who}: the id is wrong, or the key belongs to another app or was deleted`,
      fix: `copy the ${inputs.issuerInput === 'app-id' ? 'App ID' : 'Client ID'} into ${issuerInput} and generate a private key for ${n['private-key']} on the same app's settings page`,
      input: issuerInput,
    });
  }
  return apiFailure(e, 'authenticate as the app', inputs);
}

function tokenError(e: unknown, inputs: GithubTokenInputs, app: AppInfo, inst: Installation): Error {
  if (!(e instanceof GithubApiError) || e.status !== 422)
    return apiFailure(e, 'create the installation token', inputs);
  const { action, input: n } = inputs.names;
  if (/repositor/i.test(e.apiMessage)) {
    return new CordonError({
      what: `${action}: installation ${inst.id} of app ${app.slug} cannot reach every repository asked for (${inputs.repositories.join(', ')})`,
      why: `GitHub answered 422: ${e.apiMessage}`,
      fix: `give the installation access to those repositories (https://github.com/apps/${app.slug}/installations/new), or remove them from ${n.repositories}`,
      input: n.repositories,
    });
  }
  const missing = missingGrants(inputs.permissions, inst.permissions ?? {});
  const first = missing[0]?.split(':')[0];
  const one = inputs.names.permissionsInput;
  return new CordonError({
    what: `${action}: app ${app.slug} was never granted ${missing.length ? missing.join(', ') : 'a permission asked for'}`,
    why: `GitHub answered 422: ${e.apiMessage}`,
    fix: `lower ${one ? `the level in ${one}` : `the permission-* input${missing.length > 1 ? 's' : ''}`}, or add the permission in the app's settings and have an owner of ${inputs.owner} accept it`,
    input: first ? permissionInputOf(inputs.names, first.replace(/_/g, '-')) : undefined,
  });
}

/** Where the permissions were asked for: run's one input, or github-token's `permission-*` inputs. */
function permissionsText(inputs: GithubTokenInputs): string {
  return inputs.names.permissionsInput ?? 'the permission-* inputs';
}

/** Where the API URL was set: github-token's `github-api-url`, or the runner's GITHUB_API_URL. */
function apiUrlText(inputs: GithubTokenInputs): string {
  return inputs.names.apiUrlInput ?? "GITHUB_API_URL (the runner's)";
}

function apiFailure(e: unknown, doing: string, inputs: GithubTokenInputs): Error {
  if (e instanceof CordonError) return e;
  const why = e instanceof Error ? e.message : String(e);
  return new CordonError({
    what: `${inputs.names.action}: could not ${doing}`,
    why,
    fix: `check ${apiUrlText(inputs)} and GitHub status; retry the job`,
  });
}

/** DELETE /installation/token, then a call with the token that must now answer 401. */
export async function revokeAndConfirm(api: GithubApi, token: string): Promise<TokenRevoked> {
  const auth = (): string => `token ${token}`;
  let detail: string | undefined;
  try {
    await api.request('DELETE', '/installation/token', auth);
  } catch (e) {
    // 401 here means the token already stopped working (expired or revoked before).
    if (!(e instanceof GithubApiError && e.status === 401))
      detail = `revoke failed: ${e instanceof Error ? e.message : String(e)}`;
  }
  try {
    await api.request('GET', '/installation/repositories?per_page=1', auth);
    return {
      status: 'failed',
      confirmStatus: 200,
      detail: `${detail ? `${detail}; ` : ''}the token still works after revocation`,
    };
  } catch (e) {
    const status = e instanceof GithubApiError ? e.status : 0;
    if (status === 401) return { status: 'revoked', confirmStatus: 401 };
    return {
      status: 'failed',
      confirmStatus: status || undefined,
      detail: detail ?? `could not confirm: ${e instanceof Error ? e.message : String(e)}`,
    };
  }
}
