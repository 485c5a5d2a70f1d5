/**
 * The command's environment: the step's own, minus the runner's credentials, plus the
 * secrets and credentials meant for this one process. Nothing here is written anywhere.
 */
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CordonError } from '../../platform/errors.js';
import type { Env } from '../../platform/runner.js';

/**
 * Runner variables removed by default. With the ID-token pair the command could mint its
 * own OIDC tokens and assume any role that trusts the repository; the runtime, cache and
 * results tokens reach the Actions service; GITHUB_TOKEN is the job's token; INPUT_*
 * holds this step's inputs, secrets among them.
 */
export const REMOVED_BY_DEFAULT = [
  'ACTIONS_ID_TOKEN_REQUEST_TOKEN',
  'ACTIONS_ID_TOKEN_REQUEST_URL',
  'ACTIONS_RUNTIME_TOKEN',
  'ACTIONS_CACHE_URL',
  'ACTIONS_RESULTS_URL',
  'GITHUB_TOKEN',
];
const REMOVED_PREFIXES = ['INPUT_', 'STATE_'];

export interface CommandEnvParts {
  /** The step's environment as the runner gave it. */
  base: Env;
  /** Names to keep even though they are removed by default. */
  keepEnv: string[];
  secrets: { name: string; value: string }[];
  githubToken?: string;
  aws?: { accessKeyId: string; secretAccessKey: string; sessionToken: string; region?: string };
}

export interface CommandEnv {
  env: Record<string, string>;
  /** Names removed from the step's environment (sorted). */
  removed: string[];
}

export function buildCommandEnv(parts: CommandEnvParts): CommandEnv {
  const keep = new Set(parts.keepEnv);
  const env: Record<string, string> = {};
  const removed: string[] = [];
  for (const [k, v] of Object.entries(parts.base)) {
    if (v === undefined) continue;
    const drop = REMOVED_BY_DEFAULT.includes(k) || REMOVED_PREFIXES.some((p) => k.startsWith(p));
    if (drop && !keep.has(k)) removed.push(k);
    else env[k] = v;
  }
  const setBy = new Map<string, string>();
  const set = (name: string, value: string, by: string): void => {
    const prev = setBy.get(name);
    if (prev !== undefined) {
      throw new CordonError({
        what: `run: ${name} would be set by both ${prev} and ${by}`,
        why: 'a variable handed to the command has one source',
        fix: `rename the secret target or drop one of the two inputs`,
        input: 'secrets',
      });
    }
    setBy.set(name, by);
    env[name] = value;
  };
  if (parts.githubToken) {
    set('GH_TOKEN', parts.githubToken, 'github-token');
    set('GITHUB_TOKEN', parts.githubToken, 'github-token');
  }
  if (parts.aws) {
    // An AWS_PROFILE would make the SDKs read a profile before these variables.
    for (const k of [
      'AWS_PROFILE',
      'AWS_DEFAULT_PROFILE',
      'AWS_SHARED_CREDENTIALS_FILE',
      'AWS_WEB_IDENTITY_TOKEN_FILE',
      'AWS_ROLE_ARN',
    ]) {
      if (env[k] !== undefined) {
        delete env[k];
        removed.push(k);
      }
    }
    set('AWS_ACCESS_KEY_ID', parts.aws.accessKeyId, 'aws-role-to-assume');
    set('AWS_SECRET_ACCESS_KEY', parts.aws.secretAccessKey, 'aws-role-to-assume');
    set('AWS_SESSION_TOKEN', parts.aws.sessionToken, 'aws-role-to-assume');
    if (parts.aws.region) {
      env.AWS_REGION = parts.aws.region;
      env.AWS_DEFAULT_REGION = parts.aws.region;
    }
  }
  for (const s of parts.secrets) set(s.name, s.value, 'secrets');
  return { env, removed: removed.sort() };
}

export interface ShellCommand {
  argv: string[];
  /** The shell as named in the ledger (`bash`, `sh`, or the template). */
  shell: string;
  scriptPath: string;
}

/** Shell lines as the runner uses them for a `run:` step on Linux. */
const SHELLS: Record<string, { template: string; ext: string }> = {
  '': { template: 'bash -e {0}', ext: '.sh' },
  bash: { template: 'bash --noprofile --norc -eo pipefail {0}', ext: '.sh' },
  sh: { template: 'sh -e {0}', ext: '.sh' },
  python: { template: 'python {0}', ext: '.py' },
  pwsh: { template: 'pwsh -command ". \'{0}\'"', ext: '.ps1' },
};

/** Writes the script to a private file under `dir` and returns the argv that runs it. */
export function prepareShell(script: string, shell: string, dir: string): ShellCommand {
  const known = SHELLS[shell];
  const template = known?.template ?? shell;
  if (!template.includes('{0}')) {
    throw new CordonError({
      what: `run: input shell "${shell}" is not a known shell and has no {0}`,
      why: 'a custom shell is a command line with {0} where the script file goes, as in a run: step',
      fix: 'use bash, sh, python or pwsh, or write e.g. `perl {0}`',
      input: 'shell',
    });
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const scriptPath = join(dir, `run-${randomUUID()}${known?.ext ?? ''}`);
  writeFileSync(scriptPath, script, { mode: 0o700 });
  const argv = template
    .trim()
    .split(/\s+/)
    .map((a) => a.replace('{0}', scriptPath));
  return { argv, shell: shell || 'bash -e', scriptPath };
}

export function commandDigest(script: string): string {
  return createHash('sha256').update(script, 'utf8').digest('hex');
}

/** Where the command starts: `working-directory`, inside the workspace, which must exist. */
export function workingDirectory(inputs: { workingDirectory: string }, workspace: string): string {
  const cwd = resolve(workspace, inputs.workingDirectory || '.');
  if (!existsSync(cwd) || !statSync(cwd).isDirectory()) {
    throw new CordonError({
      what: `run: working-directory "${inputs.workingDirectory}" does not exist`,
      why: `it resolves to ${cwd}`,
      fix: 'give a directory inside the workspace, relative to it',
      input: 'working-directory',
    });
  }
  return cwd;
}
