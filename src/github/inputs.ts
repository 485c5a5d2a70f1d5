/** `github-token`'s inputs, parsed and validated in one place. */
import { CordonError } from '../platform/errors.js';
import { Inputs } from '../platform/inputs.js';
import type { Env } from '../platform/runner.js';
import { apiName, PERMISSIONS } from './permissions.js';

export interface GithubTokenInputs {
  /** App id (number as text) or client id (`Iv1.`/`Iv23...`): the JWT's `iss`. */
  issuer: string;
  /** Which input gave the issuer, for messages. */
  issuerInput: 'app-id' | 'client-id';
  /** The PEM as given, `\n` escapes turned into newlines. */
  privateKey: string;
  owner: string;
  /** Repository names (without owner); empty means every repository of the installation (`*`). */
  repositories: string[];
  /** API names (`pull_requests`) to levels. */
  permissions: Record<string, string>;
  apiUrl: string;
  skipTokenRevoke: boolean;
  configureGit: boolean;
}

/** PEM from a secret: escaped `\n` (one-line secrets) and CRLF turned into real newlines. */
export function normalizePem(raw: string): string {
  let pem = raw.trim();
  if (!pem.includes('\n') && pem.includes('\\n')) pem = pem.replace(/\\n/g, '\n');
  return pem.replace(/\r\n?/g, '\n') + '\n';
}

export function parseGithubTokenInputs(env: Env): GithubTokenInputs {
  const i = new Inputs('github-token', env);
  const appId = i.string('app-id');
  const clientId = i.string('client-id');
  if (appId && clientId) {
    throw new CordonError({
      what: 'github-token: both app-id and client-id are set',
      why: 'the app is named by one of them; two could disagree',
      fix: 'keep one: client-id (recommended by GitHub) or app-id',
      input: 'client-id',
    });
  }
  if (!appId && !clientId) {
    throw new CordonError({
      what: 'github-token: input app-id (or client-id) is required',
      why: 'the app JWT names the app it speaks for',
      fix: "add `app-id: ${{ vars.APP_ID }}` (or `client-id:`) under `with:`; both are on the app's settings page",
      input: 'app-id',
    });
  }
  if (appId && !/^\d+$/.test(appId)) {
    i.fail(
      'app-id',
      appId,
      'an app id is a number',
      "copy the App ID from the app's settings page, or use client-id",
    );
  }
  if (clientId && !/^[A-Za-z0-9._-]+$/.test(clientId)) {
    i.fail(
      'client-id',
      clientId,
      'a client id is letters, digits and dots (Iv23...)',
      "copy the Client ID from the app's settings page",
    );
  }
  const privateKey = normalizePem(i.multiline('private-key', { required: true, secret: true }));

  const repository = env.GITHUB_REPOSITORY ?? '';
  const [currentOwner, currentRepo] = repository.split('/');
  const owner = i.string('owner', { default: currentOwner ?? '' });
  if (!owner) {
    i.fail(
      'owner',
      undefined,
      'no owner was given and GITHUB_REPOSITORY is not set',
      'add `owner: <org or user>`',
    );
  }
  const repositories = parseRepositories(i, owner, currentOwner, currentRepo);

  const permissions: Record<string, string> = {};
  for (const [name, levels] of Object.entries(PERMISSIONS)) {
    const v = i.raw(`permission-${name}`).toLowerCase();
    if (v === '') continue;
    if (!(levels as string[]).includes(v)) {
      i.fail(
        `permission-${name}`,
        v,
        `it accepts ${levels.join(' or ')}`,
        `write \`permission-${name}: ${levels[0]}\``,
      );
    }
    permissions[apiName(name)] = v;
  }
  const unknown = Object.keys(env)
    .filter((k) => k.startsWith('INPUT_PERMISSION-') && (env[k] ?? '').trim() !== '')
    .map((k) => k.slice('INPUT_'.length).toLowerCase())
    .filter((k) => !(k.slice('permission-'.length) in PERMISSIONS));
  if (unknown.length) {
    throw new CordonError({
      what: `github-token: unknown permission input ${unknown.join(', ')}`,
      why: 'GitHub has no installation permission by that name',
      fix: 'use one of the permission-* inputs listed in the action (names use dashes: permission-pull-requests)',
      input: unknown[0],
    });
  }
  if (Object.keys(permissions).length === 0) {
    throw new CordonError({
      what: 'github-token: no permission-* input was given',
      why: 'without them GitHub grants every permission the app holds; the agent must ask only for what it needs',
      fix: 'add the permissions the agent needs, e.g. `permission-contents: write` and `permission-pull-requests: write`',
      input: 'permission-contents',
    });
  }

  const apiUrl = i
    .string('github-api-url', { default: env.GITHUB_API_URL || 'https://api.github.com' })
    .replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]/.test(apiUrl)) {
    i.fail(
      'github-api-url',
      apiUrl,
      'expected an http(s) URL',
      'use https://api.github.com or https://<ghes-host>/api/v3',
    );
  }
  return {
    issuer: appId || clientId,
    issuerInput: appId ? 'app-id' : 'client-id',
    privateKey,
    owner,
    repositories,
    permissions,
    apiUrl,
    skipTokenRevoke: i.boolean('skip-token-revoke', false),
    configureGit: i.boolean('configure-git', true),
  };
}

/**
 * `repositories`: `*`, or names and `owner/name`s of `owner`'s repositories. Blank entries,
 * trailing commas and `#` comments are skipped (nothing is lost); every other entry is
 * taken whole or refused, never cut: `owner/repo/extra` or a URL is refused rather than
 * read as `owner/repo`. Names repeated in another case are one repository (GitHub's names
 * ignore case), listed once as first written.
 */
function parseRepositories(i: Inputs, owner: string, currentOwner?: string, currentRepo?: string): string[] {
  const given = i.list('repositories');
  if (given.length === 1 && given[0] === '*') return [];
  if (given.length === 0) {
    if (currentRepo && currentOwner?.toLowerCase() === owner.toLowerCase()) return [currentRepo];
    return i.fail(
      'repositories',
      undefined,
      `owner ${owner} is not the owner of the current repository, so there is no default repository`,
      'list the repositories the agent needs, or `*` for every repository the app is installed on',
    );
  }
  const names = new Map<string, string>();
  for (const r of given) {
    if (r === '*') {
      i.fail(
        'repositories',
        given.join(', '),
        '`*` stands for every repository the app is installed on and cannot be listed with names',
        'write `*` alone, or only the names the agent needs',
      );
    }
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(r) || /^(www\.)?github\.com\//i.test(r)) {
      i.fail('repositories', r, 'that is a URL, not a repository', 'write `repo` or `owner/repo`');
    }
    const parts = r.split('/');
    if (parts.length > 2) {
      i.fail(
        'repositories',
        r,
        `a repository is \`repo\` or \`owner/repo\`, and this has ${parts.length} parts; a token is for a whole repository, never a path or branch in one`,
        `write \`${parts.slice(0, 2).join('/')}\` if that is the repository meant`,
      );
    }
    const [o, n] = parts.length === 2 ? parts : [owner, r];
    if (o.toLowerCase() !== owner.toLowerCase()) {
      i.fail(
        'repositories',
        r,
        `a token reaches one owner's repositories, and owner is ${owner}`,
        `list only ${owner}'s repositories, or set owner`,
      );
    }
    if (!/^[A-Za-z0-9._-]+$/.test(n) || n === '.' || n === '..')
      i.fail('repositories', r, 'not a repository name', 'write `repo` or `owner/repo`');
    if (!names.has(n.toLowerCase())) names.set(n.toLowerCase(), n);
  }
  return [...names.values()];
}
