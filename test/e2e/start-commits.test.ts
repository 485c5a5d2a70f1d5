/**
 * Commit attribution in `start`'s post step, over a real temporary git repository: commits by
 * the app's bot (identity set by github-token), by a human, co-authored, and on a side branch.
 */
import { afterEach, beforeAll, describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Job, type StepResult } from '../../src/devkit/run-action.js';
import { makeAppKey, startGithubApi, type GithubApiServer } from '../../src/devkit/github-api.js';

const APP_ID = 31337;
const BOT_ID = 9200002;
const SLUG = 'agent-app';
const BOT_EMAIL = `${BOT_ID}+${SLUG}[bot]@users.noreply.github.com`;
let key: ReturnType<typeof makeAppKey>;
const cleanup: (() => Promise<void> | void)[] = [];

beforeAll(() => {
  key = makeAppKey();
});

afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

interface CommitData {
  sha: string;
  author: string;
  authorEmail: string;
  committer: string;
  committerEmail: string;
  coAuthors: string[];
  signature: string;
  subject: string;
  verdict: string;
}

function git(j: Job, args: string[], env: Record<string, string> = {}): string {
  return execFileSync('git', args, { cwd: j.workspace, env: { ...j.env, ...env }, encoding: 'utf8' }).trim();
}

let fileNo = 0;
function commit(
  j: Job,
  subject: string,
  opts: { body?: string; as?: [string, string]; env?: Record<string, string> } = {},
): string {
  writeFileSync(join(j.workspace, `f${++fileNo}.txt`), `${subject}\n`);
  git(j, ['add', '-A']);
  const who = opts.as ? ['-c', `user.name=${opts.as[0]}`, '-c', `user.email=${opts.as[1]}`] : [];
  const msg = opts.body ? `${subject}\n\n${opts.body}` : subject;
  git(j, [...who, 'commit', '-q', '--no-gpg-sign', '-m', msg], opts.env);
  return git(j, ['rev-parse', 'HEAD']);
}

/** A job whose workspace is a git repository with one human commit, recorded as GITHUB_SHA. */
function repoJob(): Job {
  const j = new Job();
  j.env.GIT_CONFIG_GLOBAL = join(j.home, '.gitconfig');
  j.env.GIT_CONFIG_NOSYSTEM = '1';
  cleanup.push(() => rmSync(j.root, { recursive: true, force: true }));
  git(j, ['init', '-q', '-b', 'main']);
  j.env.GITHUB_SHA = commit(j, 'base: before the run', { as: ['Mona Lisa', 'mona@example.com'] });
  return j;
}

async function api(): Promise<GithubApiServer> {
  const s = await startGithubApi({
    appId: APP_ID,
    slug: SLUG,
    botId: BOT_ID,
    publicKey: key.publicKey,
    installations: [
      {
        id: 55,
        account: 'octo-org',
        repositories: ['octo-repo'],
        permissions: { contents: 'write', metadata: 'read' },
      },
    ],
  });
  cleanup.push(() => s.close());
  return s;
}

function observed(j: Job): { base: string; head: string; commits: CommitData[]; pushedRefs?: string[] } {
  const lines = readFileSync(join(j.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean);
  const e = lines
    .map((l) => JSON.parse(l) as { type: string; data: unknown })
    .filter((x) => x.type === 'commits.observed');
  expect(e).toHaveLength(1);
  return e[0].data as { base: string; head: string; commits: CommitData[]; pushedRefs?: string[] };
}

function errors(r: StepResult): string {
  return r.commands
    .filter((c) => c.command === 'error')
    .map((c) => c.message)
    .join('\n');
}

describe('start: commit attribution', () => {
  test('marks the bot commits as the agent and a human-authored commit as impersonation', async () => {
    const s = await api();
    const j = repoJob();
    const start = await j.run('start', 'main');
    expect(start.code).toBe(0);
    const token = await j.run('github-token', 'main', {
      inputs: {
        'app-id': String(APP_ID),
        'private-key': key.pkcs8,
        'github-api-url': s.url,
        'permission-contents': 'write',
      },
    });
    expect(errors(token)).toBe('');

    const byBot = commit(j, 'agent: fix the parser');
    const coAuthored = commit(j, 'agent: add tests', {
      body: 'Co-authored-by: Mona Lisa <mona@example.com>',
    });
    const asHuman = commit(j, 'looks like Mona wrote this', { as: ['Mona Lisa', 'mona@example.com'] });
    git(j, ['checkout', '-q', '-b', 'side']);
    // Author forged, committer left as the bot: still impersonation.
    const forgedAuthor = commit(j, 'side branch', {
      env: { GIT_AUTHOR_NAME: 'Mona Lisa', GIT_AUTHOR_EMAIL: 'mona@example.com' },
    });
    git(j, ['checkout', '-q', 'main']);
    // Pushed, then dropped locally: found through the remote-tracking ref the push moved.
    git(j, ['init', '-q', '--bare', join(j.root, 'remote.git')]);
    git(j, ['remote', 'add', 'origin', join(j.root, 'remote.git')]);
    git(j, ['checkout', '-q', '-b', 'pushed']);
    const pushedOnly = commit(j, 'pushed as Mona', { as: ['Mona Lisa', 'mona@example.com'] });
    git(j, ['push', '-q', 'origin', 'pushed']);
    git(j, ['checkout', '-q', 'main']);
    git(j, ['branch', '-q', '-D', 'pushed']);

    const post = await j.run('github-token', 'post', { state: token.state });
    expect(post.code).toBe(0);
    const end = await j.run('start', 'post', { state: start.state });
    expect(errors(end)).toBe('');
    expect(end.code).toBe(0);

    const o = observed(j);
    expect(o.base).toBe(j.env.GITHUB_SHA);
    expect(o.head).toBe(asHuman);
    const bySha = Object.fromEntries(o.commits.map((c) => [c.sha, c]));
    expect(Object.keys(bySha).sort()).toEqual([byBot, coAuthored, asHuman, forgedAuthor, pushedOnly].sort());
    expect(o.pushedRefs).toEqual(['refs/remotes/origin/pushed']);
    expect(bySha[pushedOnly]).toMatchObject({ verdict: 'impersonation' });
    expect(bySha[byBot]).toMatchObject({
      author: `${SLUG}[bot]`,
      authorEmail: BOT_EMAIL,
      committerEmail: BOT_EMAIL,
      coAuthors: [],
      signature: 'unsigned',
      subject: 'agent: fix the parser',
      verdict: 'agent',
    });
    expect(bySha[coAuthored]).toMatchObject({
      coAuthors: ['Mona Lisa <mona@example.com>'],
      verdict: 'agent',
    });
    expect(bySha[asHuman]).toMatchObject({
      author: 'Mona Lisa',
      committerEmail: 'mona@example.com',
      verdict: 'impersonation',
    });
    expect(bySha[forgedAuthor]).toMatchObject({
      authorEmail: 'mona@example.com',
      committerEmail: BOT_EMAIL,
      verdict: 'impersonation',
    });

    expect(end.summary).toContain('IMPERSONATION');
    expect(end.summary).toContain(asHuman.slice(0, 12));
    expect(
      end.commands.filter((c) => c.command === 'warning' && /not by the agent's identity/.test(c.message)),
    ).toHaveLength(3);
    expect(end.summary + readFileSync(join(j.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8')).not.toContain(
      s.tokens[0].token,
    );
  }, 120000);

  test('fail-on-impersonation fails the job and names the commit', async () => {
    const s = await api();
    const j = repoJob();
    const start = await j.run('start', 'main');
    await j.run('github-token', 'main', {
      inputs: {
        'app-id': String(APP_ID),
        'private-key': key.pkcs1,
        'github-api-url': s.url,
        'permission-contents': 'write',
      },
    });
    commit(j, 'agent commit');
    const human = commit(j, 'human commit', { as: ['Mona Lisa', 'mona@example.com'] });
    const end = await j.run('start', 'post', {
      state: start.state,
      inputs: { 'fail-on-impersonation': 'true' },
    });
    expect(end.code).toBe(1);
    expect(errors(end)).toMatch(
      new RegExp(
        `1 commit\\(s\\) made in this run carry a human identity.*${human.slice(0, 12)} by Mona Lisa <mona@example.com>.*Fix: do not push these commits`,
      ),
    );
    // The summary was still written before failing.
    expect(end.summary).toContain('IMPERSONATION');
  }, 120000);

  test('without an agent identity every new commit is unattributed, and the job does not fail on it', async () => {
    const j = repoJob();
    const start = await j.run('start', 'main');
    const sha = commit(j, 'someone committed', { as: ['Mona Lisa', 'mona@example.com'] });
    const end = await j.run('start', 'post', {
      state: start.state,
      inputs: { 'fail-on-impersonation': 'true' },
    });
    expect(errors(end)).toBe('');
    expect(end.code).toBe(0);
    expect(observed(j).commits).toEqual([expect.objectContaining({ sha, verdict: 'unattributed' })]);
  });

  test('no commits since start records an empty list; a workspace that is not a repository records nothing', async () => {
    const j = repoJob();
    const start = await j.run('start', 'main');
    const end = await j.run('start', 'post', { state: start.state });
    expect(end.code).toBe(0);
    expect(observed(j).commits).toEqual([]);
    expect(end.summary).toContain('No new commits.');

    const plain = new Job();
    cleanup.push(() => rmSync(plain.root, { recursive: true, force: true }));
    const s2 = await plain.run('start', 'main');
    const e2 = await plain.run('start', 'post', { state: s2.state });
    expect(e2.code).toBe(0);
    expect(e2.stdout).toMatch(/commits not listed: the workspace .* is not a git repository/);
  });
});
