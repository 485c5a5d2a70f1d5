/**
 * Every message of minting (the key, the JWT, the installation, the token) names the input
 * the user wrote: run's `github-app-*` when run's broker mints, github-token's own names
 * when github-token does. Against the loopback GitHub API (test-made, loopback only).
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { generateKeyPairSync } from 'node:crypto';
import { parseRunInputs } from '../../../src/actions/run/inputs.js';
import { makeAppKey, startGithubApi, type GithubApiServer } from '../../../src/devkit/github-api.js';
import { loadAppKey } from '../../../src/github/app-jwt.js';
import {
  GITHUB_TOKEN_NAMES,
  parseGithubTokenInputs,
  type GithubTokenInputs,
} from '../../../src/github/inputs.js';
import { mintToken } from '../../../src/github/token.js';
import { CordonError } from '../../../src/platform/errors.js';
import { SecretRegistry } from '../../../src/platform/mask.js';
import { Runner } from '../../../src/platform/runner.js';

let api: GithubApiServer;
let slow: GithubApiServer;
let key: ReturnType<typeof makeAppKey>;
let other: ReturnType<typeof makeAppKey>;

beforeAll(async () => {
  key = makeAppKey();
  other = makeAppKey();
  const opts = {
    appId: 11,
    slug: 'cordon-agent',
    botId: 5,
    publicKey: key.publicKey,
    installations: [
      { id: 9, account: 'octo-org', repositories: ['octo-repo'], permissions: { contents: 'write' } },
    ],
  };
  api = await startGithubApi(opts);
  // A runner clock an hour behind GitHub's, and no Date header to correct by.
  slow = await startGithubApi({ ...opts, clockOffsetS: 3600, sendDate: false });
});

afterAll(async () => {
  await api.close();
  await slow.close();
});

/** A key's body (a line between the armour): what must never show in an error. */
function bodyOf(pem: string): string {
  const lines = pem.trim().split('\n');
  return lines[Math.floor(lines.length / 2)] as string;
}

interface Given {
  appId?: string;
  clientId?: string;
  privateKey?: string;
  owner?: string;
  repositories?: string;
  /** Permission names (dashes) to levels. */
  permissions?: Record<string, string>;
  apiUrl?: string;
}

/** run's inputs (as run and agent parse them) for `g`. */
function runInputs(g: Given): GithubTokenInputs {
  const env: Record<string, string> = {
    INPUT_RUN: 'true',
    INPUT_CREDENTIALS: 'broker',
    GITHUB_REPOSITORY: 'octo-org/octo-repo',
    GITHUB_API_URL: g.apiUrl ?? api.url,
    'INPUT_GITHUB-APP-PRIVATE-KEY': g.privateKey ?? key.pkcs1,
    'INPUT_GITHUB-APP-PERMISSIONS': Object.entries(g.permissions ?? { contents: 'write' })
      .map(([n, l]) => `${n}: ${l}`)
      .join('\n'),
  };
  if (g.clientId) env['INPUT_GITHUB-APP-CLIENT-ID'] = g.clientId;
  else env['INPUT_GITHUB-APP-ID'] = g.appId ?? '11';
  if (g.owner) env['INPUT_GITHUB-APP-OWNER'] = g.owner;
  if (g.repositories) env['INPUT_GITHUB-APP-REPOSITORIES'] = g.repositories;
  const github = parseRunInputs(env).broker?.github;
  if (!github) throw new Error('run parsed no app');
  return github;
}

/** github-token's inputs for `g`. */
function tokenInputs(g: Given): GithubTokenInputs {
  const env: Record<string, string> = {
    GITHUB_REPOSITORY: 'octo-org/octo-repo',
    'INPUT_GITHUB-API-URL': g.apiUrl ?? api.url,
    'INPUT_PRIVATE-KEY': g.privateKey ?? key.pkcs1,
  };
  for (const [n, l] of Object.entries(g.permissions ?? { contents: 'write' }))
    env[`INPUT_PERMISSION-${n.toUpperCase()}`] = l;
  if (g.clientId) env['INPUT_CLIENT-ID'] = g.clientId;
  else env['INPUT_APP-ID'] = g.appId ?? '11';
  if (g.owner) env.INPUT_OWNER = g.owner;
  if (g.repositories) env.INPUT_REPOSITORIES = g.repositories;
  return parseGithubTokenInputs(env);
}

/** The CordonError minting throws, and the lines it logged on the way. */
async function mintError(inputs: GithubTokenInputs): Promise<{ e: CordonError; log: string }> {
  const lines: string[] = [];
  const runner = new (class extends Runner {
    override info(m: string): void {
      lines.push(m);
    }
    override warning(m: string): void {
      lines.push(`warning: ${m}`);
    }
  })({});
  const registry = new SecretRegistry(() => undefined);
  const r = await mintToken(inputs, { env: {}, runner, registry, api: { maxAttempts: 1 } }).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(r instanceof CordonError)) throw new Error(`expected a CordonError, got ${String(r)}`);
  return { e: r, log: lines.join('\n') };
}

/** github-token's names of the app inputs, where they are not part of run's (`github-app-id`). */
const TOKEN_INPUT_NAME =
  /(?<![\w-])(private-key|app-id|client-id|github-api-url|permission-[a-z-]+)(?![\w-])/;

const ecKey = (): string =>
  generateKeyPairSync('ec', { namedCurve: 'P-256' })
    .privateKey.export({ type: 'pkcs8', format: 'pem' })
    .toString();
/** A real key cut short: armour intact, the inside does not decode. */
const cutKey = (): string => {
  const lines = key.pkcs1.trim().split('\n');
  return [...lines.slice(0, 8), lines[lines.length - 1]].join('\n') + '\n';
};

describe("minting names the input the user wrote: run's github-app-* under run", () => {
  test.each([
    ['not a PEM', () => 'not a key at all, but long enough to be one', 'is not a GitHub App private key'],
    ['cut short', cutKey, 'is malformed'],
    ['an EC key', ecKey, 'is a ec key'],
  ])("a bad github-app-private-key (%s) is named as run's input, never quoted", async (_, make, says) => {
    const pem = make();
    const { e } = await mintError(runInputs({ privateKey: pem }));
    expect(e.message).toContain(`run: input github-app-private-key ${says}`);
    expect(e.message).toContain('into the secret given as github-app-private-key');
    expect(e.input).toBe('github-app-private-key');
    expect(e.message).not.toContain('github-token');
    expect(e.message).not.toMatch(TOKEN_INPUT_NAME);
    expect(e.message).not.toContain(bodyOf(pem));
    // loadAppKey itself, as the broker calls it, with the names the config carries.
    expect(() => loadAppKey(pem, runInputs({ privateKey: pem }).names)).toThrow(
      `run: input github-app-private-key ${says}`,
    );
  });

  test('an unknown github-app-id: 404, naming github-app-id', async () => {
    const { e } = await mintError(runInputs({ appId: '999' }));
    expect(e.message).toContain(
      'run: GitHub does not accept the app JWT for github-app-id 999 (HTTP 404: Integration not found) — no GitHub App has github-app-id 999',
    );
    expect(e.message).toContain(
      'Fix: copy the App ID into github-app-id and generate a private key for github-app-private-key',
    );
    expect(e.input).toBe('github-app-id');
    expect(e.message).not.toMatch(TOKEN_INPUT_NAME);
  });

  test('a github-app-private-key of another app: 401, naming both inputs and never the key', async () => {
    const { e, log } = await mintError(runInputs({ privateKey: other.pkcs8 }));
    expect(e.message).toContain('run: GitHub does not accept the app JWT for github-app-id 11 (HTTP 401');
    expect(e.message).toContain('github-app-private-key is not a key of the app with github-app-id 11');
    expect(e.input).toBe('github-app-id');
    expect(e.message).not.toMatch(TOKEN_INPUT_NAME);
    expect(e.message).not.toContain(bodyOf(other.pkcs8));
    expect(log).not.toContain(bodyOf(other.pkcs8));
  });

  test('an unknown github-app-client-id names github-app-client-id', async () => {
    const { e } = await mintError(runInputs({ clientId: 'Iv23nothere' }));
    expect(e.message).toContain('for github-app-client-id Iv23nothere (HTTP 404');
    expect(e.message).toContain('Fix: copy the Client ID into github-app-client-id');
    expect(e.input).toBe('github-app-client-id');
    expect(e.message).not.toMatch(TOKEN_INPUT_NAME);
  });

  test('a runner clock GitHub refuses says run:, and the progress lines too', async () => {
    const { e, log } = await mintError(runInputs({ apiUrl: slow.url }));
    expect(e.message).toMatch(/^run: GitHub refused the app JWT's times/);
    expect(log).not.toContain('github-token');
  });

  test('not installed on a repository of github-app-repositories: the fix names github-app-owner/github-app-repositories', async () => {
    const { e } = await mintError(runInputs({ repositories: 'other-repo' }));
    expect(e.message).toContain('run: app cordon-agent is not installed on octo-org/other-repo');
    expect(e.message).toContain('or fix github-app-owner/github-app-repositories');
    expect(e.input).toBe('github-app-repositories');
  });

  test("not installed on github-app-owner: named as run's input", async () => {
    const { e } = await mintError(runInputs({ owner: 'other-org', repositories: '*' }));
    expect(e.message).toContain('run: app cordon-agent is not installed on other-org');
    expect(e.message).toContain('or fix github-app-owner');
    expect(e.input).toBe('github-app-owner');
  });

  test('a repository the installation does not reach (422): remove it from github-app-repositories', async () => {
    const { e } = await mintError(runInputs({ repositories: 'octo-repo, other-repo' }));
    expect(e.message).toContain(
      'run: installation 9 of app cordon-agent cannot reach every repository asked for',
    );
    expect(e.message).toContain('remove them from github-app-repositories');
    expect(e.input).toBe('github-app-repositories');
  });

  test('a permission never granted (422): lower the level in github-app-permissions', async () => {
    const { e } = await mintError(runInputs({ permissions: { contents: 'write', issues: 'write' } }));
    expect(e.message).toContain('run: app cordon-agent was never granted issues: write');
    expect(e.message).toContain('Fix: lower the level in github-app-permissions');
    expect(e.input).toBe('github-app-permissions');
    expect(e.message).not.toMatch(TOKEN_INPUT_NAME);
  });

  test("GitHub unreachable: the fix names the runner's GITHUB_API_URL (run has no github-api-url)", async () => {
    const { e } = await mintError(runInputs({ apiUrl: 'http://127.0.0.1:1' }));
    expect(e.message).toMatch(/^run: could not authenticate as the app/);
    expect(e.message).toContain("check GITHUB_API_URL (the runner's)");
    expect(e.message).not.toMatch(TOKEN_INPUT_NAME);
  });
});

describe("minting names the input the user wrote: github-token's own names under github-token", () => {
  test('a bad private-key, an unknown app-id, a key of another app', async () => {
    const cut = cutKey();
    const bad = await mintError(tokenInputs({ privateKey: cut }));
    expect(bad.e.message).toContain('github-token: input private-key is malformed');
    expect(bad.e.input).toBe('private-key');
    expect(bad.e.message).not.toContain(bodyOf(cut));
    expect(() => loadAppKey(cut)).toThrow('github-token: input private-key is malformed');
    const unknown = await mintError(tokenInputs({ appId: '999' }));
    expect(unknown.e.message).toContain(
      'github-token: GitHub does not accept the app JWT for app-id 999 (HTTP 404',
    );
    expect(unknown.e.input).toBe('app-id');
    const wrong = await mintError(tokenInputs({ privateKey: other.pkcs1 }));
    expect(wrong.e.message).toContain('private-key is not a key of the app with app-id 11');
    expect(wrong.e.message).not.toContain('github-app-');
  });

  test('installation, 422 and network messages name owner, repositories, permission-<name>, github-api-url', async () => {
    const repo = await mintError(tokenInputs({ repositories: 'other-repo' }));
    expect(repo.e.message).toContain(
      'github-token: app cordon-agent is not installed on octo-org/other-repo',
    );
    expect(repo.e.message).toContain('or fix owner/repositories');
    expect(repo.e.input).toBe('repositories');
    const owner = await mintError(tokenInputs({ owner: 'other-org', repositories: '*' }));
    expect(owner.e.input).toBe('owner');
    const perm = await mintError(tokenInputs({ permissions: { contents: 'write', issues: 'write' } }));
    expect(perm.e.message).toContain('Fix: lower the permission-* input,');
    expect(perm.e.input).toBe('permission-issues');
    const down = await mintError(tokenInputs({ apiUrl: 'http://127.0.0.1:1' }));
    expect(down.e.message).toContain('github-token: could not authenticate as the app');
    expect(down.e.message).toContain('check github-api-url');
    expect(GITHUB_TOKEN_NAMES.action).toBe('github-token');
  });
});
