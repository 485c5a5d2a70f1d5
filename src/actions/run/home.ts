/**
 * Earlier steps' credentials out of the command's reach: a fresh HOME holding only a
 * `.gitconfig` (the bot's identity, `safe.directory` for the workspace), the variables that
 * point at credential files dropped (checkout-token.ts takes the token `actions/checkout`
 * leaves in the workspace's `.git/config`).
 */
import { randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { git } from '../../platform/git.js';
import { botIdentity, noreplyHosts } from '../../github/bot-identity.js';
import type { LedgerEvent } from '../../ledger/ledger.js';
import type { Env } from '../../platform/runner.js';
/**
 * Where git runs when it reads no repository: `/`, root's, where no one else can make a
 * `.git`. Not the temporary directory: git reads a `.git/HEAD` it finds there before it
 * checks who owns it, and a FIFO the agent planted as that HEAD holds git until its timeout.
 */
export const NO_REPOSITORY = '/';

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

/** The bot identity `github-token` set: git's global config first, else the last `token.issued` naming an App's bot. */
export function gitIdentity(env: Env, events: LedgerEvent[]): GitIdentity | undefined {
  const get = (key: string): string => {
    try {
      // The runner's own global configuration; outside the workspace, whose .git an earlier agent may have written.
      return git(['config', '--global', '--get', key], {
        cwd: NO_REPOSITORY,
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
  // Only a line naming GitHub's form of an App's bot: one naming a person would have the
  // agent commit as that person.
  const hosts = noreplyHosts(env);
  const issued = [...events]
    .reverse()
    .find((e) => e.type === 'token.issued' && 'identity' in botIdentity(e.data, hosts));
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

/**
 * With `home: fresh`, the command's own HOME (see makeFreshHome) set in `env`, and the
 * variables that point at credential files dropped from it unless kept; what was left out
 * is added to `withheld`. Undefined with `home: keep`.
 */
export function homeForCommand(o: {
  mode: 'fresh' | 'keep';
  env: Env;
  keepEnv: readonly string[];
  withheld: string[];
  dir: string;
  realHome?: string;
  workspace: string;
  identity: () => GitIdentity | undefined;
}): FreshHome | undefined {
  if (o.mode !== 'fresh') return undefined;
  const home = makeFreshHome({
    dir: o.dir,
    realHome: o.realHome,
    workspace: o.workspace,
    identity: o.identity(),
  });
  o.withheld.push(...home.withheld);
  for (const k of CREDENTIAL_FILE_VARIABLES) {
    if (o.env[k] !== undefined && !o.keepEnv.includes(k)) {
      delete o.env[k];
      o.withheld.push(`env:${k}`);
    }
  }
  o.env.HOME = home.path;
  return home;
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
