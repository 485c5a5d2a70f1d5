/**
 * The github-token action's part: main mints a token (src/github/token.ts), masks it, sets
 * the outputs, saves what post needs, sets the git identity and records `token.issued`;
 * post revokes it, confirms it is dead and records `token.revoked`.
 */
import { homedir } from 'node:os';
import type { TokenIssued, TokenRevoked } from '../../ledger/events.js';
import { Ledger } from '../../ledger/ledger.js';
import { git as hardenedGit } from '../../platform/git.js';
import type { Env } from '../../platform/runner.js';
import { GithubApi } from '../../github/api.js';
import type { GithubTokenInputs } from '../../github/inputs.js';
import { mintToken, revokeAndConfirm, type MintDeps, type MintedToken } from '../../github/token.js';

export interface TokenDeps extends MintDeps {
  /** Runs git; the real binary by default. */
  git?: (args: string[], env: Env) => void;
}

/**
 * Writes the runner user's global git configuration through the hardened runner: this step
 * may run after an agent had the workspace, and its environment holds the App's private key
 * (an input). So git starts outside the workspace (no repository's configuration is read),
 * with the neutral settings and none of the step's variables: only HOME, and the global file
 * the step's `GIT_CONFIG_GLOBAL` names (where the user's later git reads the identity).
 */
export function realGit(args: string[], env: Env): void {
  hardenedGit(args, {
    cwd: '/',
    home: env.HOME || homedir(),
    globalConfig: env.GIT_CONFIG_GLOBAL || undefined,
  });
}

/** main: mint, mask, set outputs and git identity, record. */
export async function issueToken(inputs: GithubTokenInputs, deps: TokenDeps): Promise<MintedToken> {
  const { runner, env } = deps;
  const t = await mintToken(inputs, deps);
  runner.saveState('token', t.token);
  runner.saveState('installation-id', String(t.installationId));
  runner.saveState('expires-at', t.expiresAt);
  runner.saveState('api-url', inputs.apiUrl);
  runner.saveState('skip-token-revoke', String(inputs.skipTokenRevoke));
  runner.setOutput('token', t.token);
  runner.setOutput('installation-id', String(t.installationId));
  runner.setOutput('app-slug', t.appSlug);
  runner.setOutput('bot-login', t.botLogin);
  runner.setOutput('bot-id', String(t.botId));
  runner.setOutput('git-user-name', t.gitUserName);
  runner.setOutput('git-user-email', t.gitUserEmail);
  runner.setOutput('expires-at', t.expiresAt);
  runner.setOutput('permissions', JSON.stringify(t.permissions));
  if (inputs.configureGit) {
    const git = deps.git ?? realGit;
    try {
      git(['config', '--global', 'user.name', t.gitUserName], env);
      git(['config', '--global', 'user.email', t.gitUserEmail], env);
      runner.info(`github-token: git identity set to ${t.gitUserName} <${t.gitUserEmail}>`);
    } catch (e) {
      runner.warning(
        `github-token: could not set the git identity (${e instanceof Error ? e.message : String(e)}); commits will not carry the bot's name`,
      );
    }
  }
  const event: TokenIssued = {
    app: t.appSlug,
    bot: t.botLogin,
    botId: t.botId,
    installationId: t.installationId,
    repositories: t.repositories,
    permissions: t.permissions,
    expiresAt: t.expiresAt,
    gitUserName: t.gitUserName,
    gitUserEmail: t.gitUserEmail,
  };
  Ledger.forEnv(env, { action: 'github-token', registry: deps.registry }).append('token.issued', event);
  const perms = Object.entries(t.permissions)
    .map(([k, v]) => `${k}: ${v}`)
    .join(', ');
  runner.info(
    `github-token: token for ${t.repositories.join(', ')} (${perms}) as ${t.botLogin}, expires ${t.expiresAt}`,
  );
  return t;
}

/** post: revoke the token main made, confirm it is dead, record. Never fails the job. */
export async function revokeToken(deps: TokenDeps): Promise<TokenRevoked> {
  const { runner, env } = deps;
  const token = runner.getState('token');
  const installationId = Number(runner.getState('installation-id')) || undefined;
  const ledger = Ledger.forEnv(env, { action: 'github-token', registry: deps.registry });
  // The token is dead or not whatever the ledger does: a ledger the runner user replaced
  // (start's post judges that) warns here instead of failing the job after the revocation.
  const record = (r: TokenRevoked): TokenRevoked => {
    try {
      ledger.append('token.revoked', { installationId, ...r });
    } catch (e) {
      runner.warning(
        `github-token: the token's end (${r.status}) could not be recorded in the run ledger: ${e instanceof Error ? e.message : String(e)}`,
      );
    }
    return r;
  };
  if (!token) {
    runner.info('github-token: no token was issued; nothing to revoke');
    return { status: 'skipped', detail: 'no token was issued' };
  }
  deps.registry.register(token, { name: 'GitHub App installation token' });
  if (runner.getState('skip-token-revoke') === 'true') {
    runner.info('github-token: skip-token-revoke is set; the token stays valid until it expires');
    return record({
      status: 'skipped',
      detail: 'skip-token-revoke was set; it stays valid until it expires',
    });
  }
  const expires = Date.parse(runner.getState('expires-at'));
  const now = (deps.now ?? (() => Date.now() / 1000))();
  if (Number.isFinite(expires) && expires / 1000 <= now) {
    runner.info('github-token: the token has already expired; nothing to revoke');
    return record({ status: 'skipped', detail: 'the token had already expired' });
  }
  const api = new GithubApi(runner.getState('api-url') || env.GITHUB_API_URL || 'https://api.github.com', {
    maxAttempts: 3,
    maxTotalMs: 30000,
    env,
    ...deps.api,
    onRetry: (what, ms) => runner.info(`github-token: ${what}; retrying in ${(ms / 1000).toFixed(1)}s`),
  });
  const result = await revokeAndConfirm(api, token);
  if (result.status === 'revoked')
    runner.info(`github-token: token revoked (a call with it now answers HTTP ${result.confirmStatus})`);
  else
    runner.warning(
      `github-token: the token may still be valid until ${runner.getState('expires-at')}: ${result.detail ?? 'revocation failed'}`,
    );
  return record(result);
}
