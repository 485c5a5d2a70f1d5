// What the attribution tests share: the App bot's ledger line, start's record, git identities,
// and git run in a test repository as the agent would run it (its own settings, no others).
import { execFileSync } from 'node:child_process';
import type { LedgerEvent } from '../../../src/ledger/ledger.js';

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
