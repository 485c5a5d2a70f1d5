/**
 * Hostile whole-program runs of start -> github-token -> run (`user: runner`) -> a hostile
 * step -> the posts, every step as an unprivileged runner user. The agent, and then a later
 * step, plant the ledger's lock as the runner user can (`mkdir ledger.jsonl.lock; touch
 * lock/x; touch -d 2099 lock`): every step still writes its lines, records that it took the
 * lock over, github-token's post still revokes and does not fail, and start's post judges the
 * record altered. A control job nobody touched stays intact.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseLedgerText, type LedgerEvent } from '../../src/ledger/ledger.js';
import { Job, type StepResult } from '../../src/devkit/run-action.js';
import { makeAppKey, startGithubApi, type GithubApiServer } from '../../src/devkit/github-api.js';
import { canMakeUsers, makeTestUser, type TestUser } from '../harness/users.js';

if (!canMakeUsers() && process.env.CI === 'true')
  throw new Error('ledger-lock e2e needs root to make a runner user under CI');
if (!canMakeUsers()) console.log('ledger-lock e2e skipped: cannot make users and CI is unset');
const maybe = canMakeUsers() ? describe : describe.skip;

let user: TestUser;
let api: GithubApiServer;
let key: ReturnType<typeof makeAppKey>;
const jobs: Job[] = [];

beforeAll(async () => {
  if (!canMakeUsers()) return;
  user = makeTestUser('cdlock', { sudo: false });
  key = makeAppKey();
  api = await startGithubApi({
    appId: 5150,
    slug: 'cordon-lock',
    botId: 9100002,
    publicKey: key.publicKey,
    installations: [
      { id: 778, account: 'octo-org', repositories: ['octo-repo'], permissions: { contents: 'write' } },
    ],
  });
}, 30000);

afterAll(async () => {
  await api?.close();
  for (const j of jobs) rmSync(j.root, { recursive: true, force: true });
  user?.remove();
});

/** The runner user's attack on the lock, as a shell line. */
const PLANT =
  'L="$RUNNER_TEMP/cordon/ledger.jsonl.lock"; mkdir "$L" && touch "$L/x" && touch -d 2099-01-01 "$L"';

function events(job: Job): LedgerEvent[] {
  return parseLedgerText(readFileSync(join(job.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8')).flatMap((l) =>
    l.event ? [l.event] : [],
  );
}

/** The steps' forced-lock notices: `ledger.tampered` lines naming the lock. */
function forcedBy(job: Job): string[] {
  return events(job)
    .filter(
      (e) =>
        e.type === 'ledger.tampered' &&
        ((e.data as { details?: string[] }).details ?? []).some((d) => /\.lock was held for over/.test(d)),
    )
    .map((e) => e.action);
}

async function runJob(hostile: boolean): Promise<{ job: Job; steps: Record<string, StepResult> }> {
  const job = new Job({ env: { GIT_CONFIG_NOSYSTEM: '1' } });
  jobs.push(job);
  job.env.GIT_CONFIG_GLOBAL = join(job.home, '.gitconfig');
  const as = (): string[] => user.wrap(job.root);
  // A repository with a commit: start's post lists the run's commits, an append of its own.
  const git = (...args: string[]): string =>
    execFileSync('git', ['-C', job.workspace, '-c', 'user.name=t', '-c', 'user.email=t@t', ...args], {
      encoding: 'utf8',
    });
  git('init', '-q');
  git('commit', '-q', '--allow-empty', '-m', 'base');
  job.env.GITHUB_SHA = git('rev-parse', 'HEAD').trim();
  const start = await job.run('start', 'main', { wrap: as() });
  expect(start.code).toBe(0);
  const token = await job.run('github-token', 'main', {
    inputs: {
      'app-id': '5150',
      'private-key': key.pkcs1,
      'github-api-url': api.url,
      'permission-contents': 'write',
    },
    wrap: as(),
  });
  expect(token.code).toBe(0);
  const run = await job.run('run', 'main', {
    inputs: { run: hostile ? `${PLANT}; echo planted` : 'echo clean', user: 'runner' },
    wrap: as(),
  });
  // A later step that is not Cordon's, as the same user.
  const plant = (): void => {
    if (hostile)
      execFileSync('runuser', ['-u', user.name, '--', 'sh', '-c', PLANT], {
        env: { PATH: process.env.PATH, RUNNER_TEMP: job.runnerTemp },
        timeout: 10000,
      });
  };
  plant();
  const tokenPost = await job.run('github-token', 'post', { state: token.state, wrap: as() });
  plant();
  const startPost = await job.run('start', 'post', { state: start.state, wrap: as() });
  return { job, steps: { start, token, run, tokenPost, startPost } };
}

maybe('ledger lock planted by the runner user', () => {
  test('control: nobody plants it; every step records, the posts pass, the record is intact', async () => {
    const { job, steps } = await runJob(false);
    expect(steps.run.code).toBe(0);
    expect(steps.tokenPost.code).toBe(0);
    expect(steps.startPost.code).toBe(0);
    expect(steps.startPost.summary).toContain('Record intact');
    expect(forcedBy(job)).toEqual([]);
  }, 90000);

  test('hostile: each step takes the lock over and says so; github-token post still revokes and passes; start post judges altered', async () => {
    const { job, steps } = await runJob(true);
    expect(steps.run.stdout).toContain('planted');
    // run wrote its closing lines (after forcing the agent's lock), and the posts wrote theirs.
    const types = events(job).map((e) => e.type);
    expect(types).toEqual(expect.arrayContaining(['run.finished', 'run.sealed', 'token.revoked']));
    expect(forcedBy(job)).toEqual(['run', 'github-token', 'start']);
    // github-token's post: revoked, confirmed, never fails the job.
    expect(steps.tokenPost.code).toBe(0);
    expect(api.tokens[api.tokens.length - 1].revoked).toBe(true);
    expect(events(job).find((e) => e.type === 'token.revoked')?.data).toMatchObject({ status: 'revoked' });
    // start's post judged the record, and the verdict names the lock taken over.
    expect(steps.startPost.code).not.toBe(0);
    const said = steps.startPost.stdout + steps.startPost.stderr;
    expect(said).not.toContain('could not lock');
    expect(said).toContain('the run ledger was altered');
    expect(events(job).filter((e) => e.type === 'commits.observed')).toHaveLength(1);
    expect(steps.startPost.summary).toContain('RECORD ALTERED');
    expect(steps.startPost.summary).toContain('was taken over');
    // No lock, nor anything moved aside, is left beside the ledger.
    expect(readdirSync(join(job.runnerTemp, 'cordon')).filter((f) => f.includes('.lock'))).toEqual([]);
    expect(existsSync(join(job.runnerTemp, 'cordon', 'ledger.jsonl.lock'))).toBe(false);
  }, 120000);

  test("hostile: the ledger replaced by a FIFO after main: github-token's post still revokes, warns, and passes", async () => {
    const job = new Job();
    jobs.push(job);
    job.env.GIT_CONFIG_GLOBAL = join(job.home, '.gitconfig');
    const as = (): string[] => user.wrap(job.root);
    const token = await job.run('github-token', 'main', {
      inputs: {
        'app-id': '5150',
        'private-key': key.pkcs1,
        'github-api-url': api.url,
        'permission-contents': 'write',
      },
      wrap: as(),
    });
    expect(token.code).toBe(0);
    const issued = api.tokens[api.tokens.length - 1];
    const ledger = join(job.runnerTemp, 'cordon', 'ledger.jsonl');
    execFileSync('runuser', ['-u', user.name, '--', 'sh', '-c', `rm "${ledger}" && mkfifo "${ledger}"`]);
    const post = await job.run('github-token', 'post', { state: token.state, wrap: as(), timeoutMs: 30000 });
    expect(post.code).toBe(0);
    expect(issued.revoked).toBe(true);
    const warnings = post.commands.filter((c) => c.command === 'warning').map((c) => c.message);
    expect(warnings.join('\n')).toMatch(
      /the token's end \(revoked\) could not be recorded in the run ledger: .*is a FIFO/,
    );
  }, 60000);
});
