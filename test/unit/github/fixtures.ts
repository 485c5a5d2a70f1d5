// What the attribution tests share: the App bot's ledger line, start's record, git identities,
// git run in a test repository as the agent would run it (its own settings, no others), the
// commits made there, and post's reading of them (directly, or recorded in a ledger).
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { observeCommits } from '../../../src/github/commits.js';
import { Ledger, type LedgerEvent } from '../../../src/ledger/ledger.js';
import { SecretRegistry } from '../../../src/platform/mask.js';
import type { Runner } from '../../../src/platform/runner.js';

export const BOT = '42+bot-app[bot]@users.noreply.github.com';

export const issued: LedgerEvent = {
  v: 1,
  time: '2026-01-01T00:00:00Z',
  action: 'github-token',
  type: 'token.issued',
  prev: '',
  data: {
    app: 'bot-app',
    bot: 'bot-app[bot]',
    botId: 42,
    installationId: 1,
    repositories: [],
    permissions: {},
    expiresAt: '',
  },
};

/** start's `run.recorded` of `sha`, now, with `more` in its data (start's workspace record). */
export function recorded(sha: string, more: Record<string, unknown> = {}): LedgerEvent {
  return {
    v: 1,
    time: new Date().toISOString(),
    action: 'start',
    type: 'run.recorded',
    prev: '',
    data: { sha, ...more },
  };
}

export const who = (name: string, email: string): Record<string, string> => ({
  GIT_AUTHOR_NAME: name,
  GIT_AUTHOR_EMAIL: email,
  GIT_COMMITTER_NAME: name,
  GIT_COMMITTER_EMAIL: email,
});
export const MONA = who('Mona Lisa', 'mona@example.com');
/** The App's bot, as git is told it by the token's identity. */
export const AS_BOT = who('bot-app[bot]', BOT);

export type TestGit = (args: string[], env?: Record<string, string>, input?: string) => string;

/** git in `cwd` with `home` as HOME and no system or global configuration; its stdout, trimmed. */
export function gitIn(cwd: string, home: string): TestGit {
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
  };
  return (args, extra = {}, input) =>
    execFileSync('git', args, {
      cwd,
      env: { ...env, ...extra },
      input,
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
    }).trim();
}

/** An empty commit `subject` on HEAD by `as` (Mona unless told); its sha. */
export function commitAs(git: TestGit, subject: string, as: Record<string, string> = MONA): string {
  git(['commit', '-q', '--allow-empty', '--no-gpg-sign', '-m', subject], as);
  return git(['rev-parse', 'HEAD']);
}

/** A new repository on main with two commits by Mona, `first` and `base`; base's sha. */
export function twoCommits(git: TestGit): string {
  git(['init', '-q', '-b', 'main']);
  commitAs(git, 'first');
  return commitAs(git, 'base');
}

/** An empty commit `subject` on HEAD as the App's bot; its sha. */
export const agentCommit = (git: TestGit, subject: string): string => commitAs(git, subject, AS_BOT);

/** A commit as Mona on `base` made with commit-tree: no ref and no reflog names it. */
export function humanCommit(git: TestGit, base: string): string {
  return git(['commit-tree', `${base}^{tree}`, '-p', base, '-m', 'as mona'], MONA);
}

/** As actions/checkout does with fetch-depth: 0: init, fetch branches and tags, check out `branch`. */
export function fullCheckout(git: TestGit, origin: string, branch = 'main'): void {
  git(['init', '-q']);
  git(['remote', 'add', 'origin', `file://${origin}`]);
  git(['fetch', '-q', 'origin', '+refs/heads/*:refs/remotes/origin/*', '+refs/tags/*:refs/tags/*']);
  git(['checkout', '-q', '-B', branch, `refs/remotes/origin/${branch}`]);
}

/**
 * post's reading of the commits in `workspace` since `start`, with the bot's token issued
 * (and `more` of observeCommits' options); a skipped reading throws its reason.
 */
export function observed(
  workspace: string,
  start: LedgerEvent,
  more: Omit<Parameters<typeof observeCommits>[1], 'env'> = {},
) {
  const seen = observeCommits([start, issued], { env: { GITHUB_WORKSPACE: workspace }, ...more });
  if ('skipped' in seen) throw new Error(seen.skipped);
  return seen;
}

/** start's ledger, opened, in `dir`. */
export function startLedger(dir: string): Ledger {
  const ledger = new Ledger(join(dir, 'ledger.jsonl'), {
    action: 'start',
    registry: new SecretRegistry(() => {}),
    copySocket: false,
  });
  ledger.open();
  return ledger;
}

/** A runner in `workspace` whose info and warning lines are kept in `lines`. */
export function recordingRunner(workspace: string): { runner: Runner; lines: string[] } {
  const lines: string[] = [];
  const runner = {
    env: { GITHUB_WORKSPACE: workspace },
    info: (m: string) => lines.push(`info ${m}`),
    warning: (m: string) => lines.push(`warning ${m}`),
  } as unknown as Runner;
  return { runner, lines };
}

/** The data of every `commits.observed` line in `ledger`. */
export const observedLines = (ledger: Ledger): unknown[] =>
  ledger
    .events()
    .filter((e) => e.type === 'commits.observed')
    .map((e) => e.data);
