/**
 * Earlier steps' credentials out of the command's reach: a fresh HOME holding only a
 * `.gitconfig` (the bot's identity, `safe.directory` for the workspace), the variables that
 * point at credential files dropped, and the checkout token `actions/checkout` leaves in
 * the workspace's `.git/config` taken out while the command runs and put back after.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, rmSync, writeFileSync, type Stats } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { git } from '../../platform/git.js';
import type { LedgerEvent } from '../../ledger/ledger.js';
import type { Env } from '../../platform/runner.js';

/** Variables that point tools at credential files; dropped with `home: fresh` unless in keep-env. */
export const CREDENTIAL_FILE_VARIABLES = [
  'AWS_SHARED_CREDENTIALS_FILE',
  'AWS_CONFIG_FILE',
  'GOOGLE_APPLICATION_CREDENTIALS',
  'DOCKER_CONFIG',
  'KUBECONFIG',
  'AZURE_CONFIG_DIR',
  'CLOUDSDK_CONFIG',
  'GH_CONFIG_DIR',
  'NPM_CONFIG_USERCONFIG',
  'GIT_CONFIG_GLOBAL',
];

/** Files and directories in the real HOME where earlier steps leave credentials. */
export const HOME_CREDENTIAL_PATHS = [
  '.aws',
  '.docker/config.json',
  '.config/gh',
  '.git-credentials',
  '.ssh',
  '.netrc',
  '.npmrc',
  '.kube',
  '.azure',
  '.config/gcloud',
  '.gitconfig',
];

export interface GitIdentity {
  name: string;
  email: string;
}

/** The bot identity `github-token` set: git's global config first, else the last `token.issued`. */
export function gitIdentity(env: Env, events: LedgerEvent[]): GitIdentity | undefined {
  const get = (key: string): string => {
    try {
      // The runner's own global configuration; outside the workspace, whose .git an earlier agent may have written.
      return git(['config', '--global', '--get', key], {
        cwd: tmpdir(),
        home: env.HOME ?? '',
        timeoutMs: 5000,
      }).trim();
    } catch {
      return '';
    }
  };
  const name = get('user.name');
  const email = get('user.email');
  if (name && email) return { name, email };
  const issued = [...events].reverse().find((e) => e.type === 'token.issued');
  const d = issued?.data as { gitUserName?: string; gitUserEmail?: string } | undefined;
  if (d?.gitUserName && d.gitUserEmail) return { name: d.gitUserName, email: d.gitUserEmail };
  return undefined;
}

function quote(v: string): string {
  return `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
}

export interface FreshHome {
  path: string;
  /** Paths of the real HOME left out (the ones that exist), as `~/<path>`. */
  withheld: string[];
  identity?: GitIdentity;
  remove(): void;
}

/** Makes an empty private HOME under `dir` with only a `.gitconfig`. */
export function makeFreshHome(opts: {
  dir: string;
  realHome?: string;
  workspace: string;
  identity?: GitIdentity;
}): FreshHome {
  mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  const path = join(opts.dir, `home-${randomBytes(6).toString('hex')}`);
  mkdirSync(path, { mode: 0o700 });
  const lines: string[] = [];
  if (opts.identity)
    lines.push('[user]', `\tname = ${quote(opts.identity.name)}`, `\temail = ${quote(opts.identity.email)}`);
  lines.push('[safe]', `\tdirectory = ${quote(opts.workspace)}`);
  writeFileSync(join(path, '.gitconfig'), lines.join('\n') + '\n', { mode: 0o600 });
  const withheld: string[] = [];
  if (opts.realHome && resolve(opts.realHome) !== resolve(path)) {
    for (const p of HOME_CREDENTIAL_PATHS) {
      try {
        lstatSync(join(opts.realHome, p));
        withheld.push(`~/${p}`);
      } catch {
        // Not there.
      }
    }
  }
  const remove = (): void => rmSync(path, { recursive: true, force: true });
  // Removed after the command, and in any case when run exits.
  process.once('exit', remove);
  return { path, withheld, identity: opts.identity, remove };
}

export interface WithheldEntry {
  key: string;
  values: string[];
}

export interface CheckoutToken {
  /** The config file the entries were taken from. */
  file: string;
  entries: WithheldEntry[];
  /** Secret values in them (the header, the token inside it) to mask and scrub. */
  secrets: string[];
  /** Puts the entries back; returns false when the file is gone or git refused. */
  restore(): boolean;
}

function gitFile(file: string, args: string[]): string {
  // Run outside the workspace: `--file` reads that file only, and no repository is discovered.
  return git(['config', '--file', file, ...args], { cwd: tmpdir(), timeoutMs: 5000 });
}

function entries(file: string, pattern: string): WithheldEntry[] {
  let out: string;
  try {
    out = gitFile(file, ['--null', '--get-regexp', pattern]);
  } catch {
    return [];
  }
  const byKey = new Map<string, string[]>();
  for (const rec of out.split('\0').filter(Boolean)) {
    const nl = rec.indexOf('\n');
    const key = nl < 0 ? rec : rec.slice(0, nl);
    const value = nl < 0 ? '' : rec.slice(nl + 1);
    byKey.set(key, [...(byKey.get(key) ?? []), value]);
  }
  return [...byKey].map(([key, values]) => ({ key, values }));
}

const AUTH = /authorization:\s*(basic|bearer|token)\s+(\S+)/i;

function secretsIn(value: string): string[] {
  const m = AUTH.exec(value);
  if (!m) return [];
  const out = [value, m[2]];
  if (m[1].toLowerCase() === 'basic') {
    const decoded = Buffer.from(m[2], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon >= 0) out.push(decoded, decoded.slice(colon + 1));
  }
  return out.filter((v) => v.length >= 8);
}

/**
 * Finds credentials `actions/checkout` persisted in the workspace's `.git/config` (an
 * `http.<url>.extraheader` with an Authorization header, or an include of a file holding
 * one) and takes them out of the file. `git config --file` reads that file only: no
 * repository discovery, no hooks, nothing of the workspace's runs.
 */
export function withholdCheckoutToken(workspace: string): CheckoutToken | undefined {
  const file = join(workspace, '.git', 'config');
  if (!existsSync(file)) return undefined;
  const found: WithheldEntry[] = [];
  const secrets: string[] = [];
  for (const e of entries(file, '^http\\..*\\.extraheader$')) {
    const s = e.values.flatMap(secretsIn);
    if (s.length) {
      found.push(e);
      secrets.push(...s);
    }
  }
  for (const e of entries(file, '^include(if\\..*)?\\.path$')) {
    for (const target of e.values) {
      const p =
        target.startsWith('~/') || !isAbsolute(target) ? resolve(join(workspace, '.git'), target) : target;
      let text = '';
      try {
        text = readFileSync(p, 'utf8');
      } catch {
        continue;
      }
      if (/extraheader/i.test(text)) {
        const s = text.split('\n').flatMap(secretsIn);
        found.push(e);
        secrets.push(...s);
        break;
      }
    }
  }
  if (!found.length) return undefined;
  const owner = lstatSync(file);
  for (const e of found) gitFile(file, ['--unset-all', e.key]);
  let restored: boolean | undefined;
  // Put back when run exits, also when it fails before the command ends.
  const onExit = (): void => {
    if (restored === undefined) token.restore();
  };
  process.once('exit', onExit);
  const token: CheckoutToken = {
    file,
    entries: found,
    secrets: [...new Set(secrets)],
    restore() {
      if (restored !== undefined) return restored;
      restored = false;
      process.removeListener('exit', onExit);
      // Only into the regular file it came from, owned as it was: git follows a link the
      // command planted, and would write the token wherever it points.
      let now: Stats;
      try {
        now = lstatSync(file);
      } catch {
        return false;
      }
      if (!now.isFile() || now.uid !== owner.uid || (now.mode & ~owner.mode & 0o022) !== 0) return false;
      for (const e of found) {
        try {
          gitFile(file, ['--unset-all', e.key]);
        } catch {
          // Nothing to unset: the command did not put any back.
        }
      }
      try {
        for (const e of found) for (const v of e.values) gitFile(file, ['--add', e.key, v]);
        restored = true;
        return true;
      } catch {
        return false;
      }
    },
  };
  return token;
}
