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
  /**
   * The inputs as the user wrote them (github-token's or run's), for the messages of what
   * happens later (the key, GitHub's answers), in the broker too: plain data, so it crosses
   * to the broker in its config.
   */
  names: GithubAppNames;
}

/** PEM from a secret: escaped `\n` (one-line secrets) and CRLF turned into real newlines. */
export function normalizePem(raw: string): string {
  let pem = raw.trim();
  if (!pem.includes('\n') && pem.includes('\\n')) pem = pem.replace(/\\n/g, '\n');
  return pem.replace(/\r\n?/g, '\n') + '\n';
}

/** The inputs that name the app and what its token reaches, by their `actions/github-token` names. */
export type GithubAppInput = 'app-id' | 'client-id' | 'private-key' | 'owner' | 'repositories';

/** A permission as given: its name (dashes, lower case), its level (lower case), the text to quote. */
export interface GivenPermission {
  name: string;
  level: string;
  text: string;
}

/**
 * How an action spells the app's inputs, so every message names the input the user wrote
 * from the start (never a message rewritten afterwards): `actions/github-token`'s own, or
 * `run`'s `github-app-*`.
 */
export interface GithubAppNaming {
  /** The input name for each of github-token's. */
  input: Record<GithubAppInput, string>;
  /** The permissions given (names and levels are checked by the parser), or none. */
  permissions(i: Inputs): GivenPermission[];
  /** The one input that lists every permission (run's), or undefined: one input each. */
  permissionsInput?: string;
  /** The input that gives this permission. */
  permissionInput(name: string): string;
  /** How to write this permission at this level (for a fix). */
  writePermission(name: string, level: string): string;
  /** How to write several permissions (for the fix when none was given). */
  writePermissions(p: [string, string][]): string;
  /** The fix for a permission name GitHub does not have. */
  unknownFix: string;
  /** Where `github-api-url` is read from; undefined: GITHUB_API_URL (the runner's). */
  apiUrlInput?: string;
}

/**
 * A naming as plain data: what later messages (the key, the JWT, the installation, the
 * token) need to name the inputs the user wrote, from `mintToken` in a step or in the broker.
 */
export interface GithubAppNames {
  /** The action the user wrote (`github-token`, `run`): each message's prefix. */
  action: string;
  /** The input name for each of github-token's. */
  input: Record<GithubAppInput, string>;
  /** The one input that lists every permission (run's), or undefined: `permission-<name>` each. */
  permissionsInput?: string;
  /** The input that sets the API URL, or undefined: the runner's GITHUB_API_URL. */
  apiUrlInput?: string;
}

/** `naming` as plain data, for messages of `action`. */
export function appNames(action: string, naming: GithubAppNaming): GithubAppNames {
  return {
    action,
    input: { ...naming.input },
    ...(naming.permissionsInput ? { permissionsInput: naming.permissionsInput } : {}),
    ...(naming.apiUrlInput ? { apiUrlInput: naming.apiUrlInput } : {}),
  };
}

/** The input that gives permission `name` (dashes), under `names`. */
export function permissionInputOf(names: GithubAppNames, name: string): string {
  return names.permissionsInput ?? `permission-${name}`;
}

/** `actions/github-token`'s own inputs: `permission-<name>: <level>` one input each. */
export const GITHUB_TOKEN_NAMING: GithubAppNaming = {
  input: {
    'app-id': 'app-id',
    'client-id': 'client-id',
    'private-key': 'private-key',
    owner: 'owner',
    repositories: 'repositories',
  },
  permissions: (i) =>
    [
      ...new Set(
        Object.keys(i.env)
          .filter((k) => k.startsWith('INPUT_PERMISSION-'))
          .map((k) => k.slice('INPUT_'.length).toLowerCase()),
      ),
    ]
      .filter((k) => i.has(k))
      .map((k) => {
        const level = i.raw(k).toLowerCase();
        return { name: k.slice('permission-'.length), level, text: level };
      }),
  permissionInput: (name) => `permission-${name}`,
  writePermission: (name, level) => `\`permission-${name}: ${level}\``,
  writePermissions: (p) => p.map(([n, l]) => `\`permission-${n}: ${l}\``).join(' and '),
  unknownFix:
    'use one of the permission-* inputs listed in the action (names use dashes: permission-pull-requests)',
  apiUrlInput: 'github-api-url',
};

/** GITHUB_TOKEN_NAMING as plain data. */
export const GITHUB_TOKEN_NAMES: GithubAppNames = appNames('github-token', GITHUB_TOKEN_NAMING);

export function parseGithubTokenInputs(env: Env): GithubTokenInputs {
  const i = new Inputs('github-token', env);
  return {
    ...parseGithubApp(i, GITHUB_TOKEN_NAMING),
    skipTokenRevoke: i.boolean('skip-token-revoke', false),
    configureGit: i.boolean('configure-git', true),
  };
}

/**
 * The app, its key, owner, repositories and permissions, read from `i` under `naming`'s
 * input names: one set of checks for `actions/github-token` and `run`'s `github-app-*`.
 */
export function parseGithubApp(
  i: Inputs,
  naming: GithubAppNaming,
): Omit<GithubTokenInputs, 'skipTokenRevoke' | 'configureGit'> {
  const n = naming.input;
  const env = i.env;
  const appId = i.string(n['app-id']);
  const clientId = i.string(n['client-id']);
  if (appId && clientId) {
    throw new CordonError({
      what: `${i.action}: both ${n['app-id']} and ${n['client-id']} are set`,
      why: 'the app is named by one of them; two could disagree',
      fix: `keep one: ${n['client-id']} (recommended by GitHub) or ${n['app-id']}`,
      input: n['client-id'],
    });
  }
  if (!appId && !clientId) {
    throw new CordonError({
      what: `${i.action}: input ${n['app-id']} (or ${n['client-id']}) is required`,
      why: 'the app JWT names the app it speaks for',
      fix: `add \`${n['app-id']}: \${{ vars.APP_ID }}\` (or \`${n['client-id']}:\`) under \`with:\`; both are on the app's settings page`,
      input: n['app-id'],
    });
  }
  if (appId && !/^\d+$/.test(appId)) {
    i.fail(
      n['app-id'],
      appId,
      'an app id is a number',
      `copy the App ID from the app's settings page, or use ${n['client-id']}`,
    );
  }
  if (clientId && !/^[A-Za-z0-9._-]+$/.test(clientId)) {
    i.fail(
      n['client-id'],
      clientId,
      'a client id is letters, digits and dots (Iv23...)',
      "copy the Client ID from the app's settings page",
    );
  }
  const privateKey = normalizePem(i.multiline(n['private-key'], { required: true, secret: true }));

  const repository = env.GITHUB_REPOSITORY ?? '';
  const [currentOwner, currentRepo] = repository.split('/');
  const owner = i.string(n.owner, { default: currentOwner ?? '' });
  if (!owner) {
    i.fail(
      n.owner,
      undefined,
      `no ${n.owner} was given and GITHUB_REPOSITORY is not set`,
      `add \`${n.owner}: <org or user>\``,
    );
  }
  const repositories = parseRepositories(i, n, owner, currentOwner, currentRepo);

  const permissions: Record<string, string> = {};
  const unknown: GivenPermission[] = [];
  const seen = new Map<string, GivenPermission>();
  for (const p of naming.permissions(i)) {
    const levels = Object.hasOwn(PERMISSIONS, p.name) ? PERMISSIONS[p.name] : undefined;
    if (!levels) {
      unknown.push(p);
      continue;
    }
    if (!(levels as string[]).includes(p.level)) {
      i.fail(
        naming.permissionInput(p.name),
        p.text,
        `${p.name} accepts ${levels.join(' or ')}`,
        `write ${naming.writePermission(p.name, levels[0] as string)}`,
      );
    }
    const first = seen.get(apiName(p.name));
    if (first) {
      // Kept silently, the last line would decide the level: `contents: write` above
      // `contents: read` (or `pull_requests` and `pull-requests`) asks for read.
      const one = naming.permissionsInput;
      const levels = [...new Set([first.level, p.level])];
      throw new CordonError({
        what: one
          ? `${i.action}: input ${one} gives ${p.name} twice: "${first.text}" and "${p.text}"`
          : `${i.action}: input ${naming.permissionInput(p.name)} is given twice: "${first.text}" and "${p.text}"`,
        why: 'a permission has one level, and which line wins would be decided by their order',
        fix: `keep one line per permission: ${levels.map((l) => naming.writePermission(p.name, l)).join(' or ')}`,
        input: naming.permissionInput(p.name),
      });
    }
    seen.set(apiName(p.name), p);
    permissions[apiName(p.name)] = p.level;
  }
  if (unknown.length) {
    const one = naming.permissionsInput;
    const names = unknown.map((p) => p.name);
    throw new CordonError({
      what: one
        ? `${i.action}: input ${one} names an unknown permission: ${names.join(', ')}`
        : `${i.action}: unknown permission input ${names.map((m) => naming.permissionInput(m)).join(', ')}`,
      why: 'GitHub has no installation permission by that name',
      fix: naming.unknownFix,
      input: naming.permissionInput(names[0] as string),
    });
  }
  if (Object.keys(permissions).length === 0) {
    const one = naming.permissionsInput;
    throw new CordonError({
      what: one ? `${i.action}: input ${one} is empty` : `${i.action}: no permission-* input was given`,
      why: 'without them GitHub grants every permission the app holds; the agent must ask only for what it needs',
      fix: `add the permissions the agent needs, e.g. ${naming.writePermissions([
        ['contents', 'write'],
        ['pull-requests', 'write'],
      ])}`,
      input: naming.permissionInput('contents'),
    });
  }

  const apiDefault = (env.GITHUB_API_URL || 'https://api.github.com').replace(/\/+$/, '');
  const fromInput = naming.apiUrlInput !== undefined && i.has(naming.apiUrlInput);
  const apiUrl = fromInput ? i.raw(naming.apiUrlInput as string).replace(/\/+$/, '') : apiDefault;
  if (!/^https?:\/\/[^/]/.test(apiUrl)) {
    if (fromInput) {
      i.fail(
        naming.apiUrlInput as string,
        apiUrl,
        'expected an http(s) URL',
        'use https://api.github.com or https://<ghes-host>/api/v3',
      );
    }
    // No input gave it: the runner's variable did, and an error must not name an input
    // the user never wrote (or, for run, one the action does not have).
    throw new CordonError({
      what: `${i.action}: GITHUB_API_URL "${apiUrl.slice(0, 80)}" is not valid`,
      why: "expected an http(s) URL: the runner's GITHUB_API_URL is where the GitHub API is looked for",
      fix: naming.apiUrlInput
        ? `set \`${naming.apiUrlInput}: https://<ghes-host>/api/v3\` (or https://api.github.com), or fix the runner's GITHUB_API_URL`
        : "fix the runner's GITHUB_API_URL (https://api.github.com or https://<ghes-host>/api/v3)",
    });
  }
  return {
    issuer: appId || clientId,
    issuerInput: appId ? 'app-id' : 'client-id',
    privateKey,
    owner,
    repositories,
    permissions,
    apiUrl,
    // Later messages name the input only when it gave the URL; else the runner's variable did.
    names: appNames(i.action, fromInput ? naming : { ...naming, apiUrlInput: undefined }),
  };
}

/**
 * `repositories`: `*`, or names and `owner/name`s of `owner`'s repositories. Blank entries,
 * trailing commas and `#` comments are skipped (nothing is lost); every other entry is
 * taken whole or refused, never cut: `owner/repo/extra` or a URL is refused rather than
 * read as `owner/repo`. Names repeated in another case are one repository (GitHub's names
 * ignore case), listed once as first written.
 */
function parseRepositories(
  i: Inputs,
  named: Record<GithubAppInput, string>,
  owner: string,
  currentOwner?: string,
  currentRepo?: string,
): string[] {
  const input = named.repositories;
  const given = i.list(input);
  if (given.length === 1 && given[0] === '*') return [];
  if (given.length === 0) {
    if (currentRepo && currentOwner?.toLowerCase() === owner.toLowerCase()) return [currentRepo];
    return i.fail(
      input,
      undefined,
      `${named.owner} is ${owner}, not the current repository's owner, so there is no default repository`,
      `list the repositories the agent needs in ${input}, or \`*\` for every repository the app is installed on`,
    );
  }
  const names = new Map<string, string>();
  for (const r of given) {
    if (r === '*') {
      i.fail(
        input,
        given.join(', '),
        '`*` stands for every repository the app is installed on and cannot be listed with names',
        'write `*` alone, or only the names the agent needs',
      );
    }
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(r) || /^(www\.)?github\.com\//i.test(r)) {
      i.fail(input, r, 'that is a URL, not a repository', 'write `repo` or `owner/repo`');
    }
    const parts = r.split('/');
    if (parts.length > 2) {
      i.fail(
        input,
        r,
        `a repository is \`repo\` or \`owner/repo\`, and this has ${parts.length} parts; a token is for a whole repository, never a path or branch in one`,
        `write \`${parts.slice(0, 2).join('/')}\` if that is the repository meant`,
      );
    }
    const [o, n] = parts.length === 2 ? parts : [owner, r];
    if (o.toLowerCase() !== owner.toLowerCase()) {
      i.fail(
        input,
        r,
        `a token reaches one owner's repositories, and ${named.owner} is ${owner}`,
        `list only ${owner}'s repositories, or set ${named.owner}`,
      );
    }
    if (!/^[A-Za-z0-9._-]+$/.test(n) || n === '.' || n === '..')
      i.fail(input, r, 'not a repository name', 'write `repo` or `owner/repo`');
    if (!names.has(n.toLowerCase())) names.set(n.toLowerCase(), n);
  }
  return [...names.values()];
}
