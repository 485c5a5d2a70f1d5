/**
 * Commit attribution in `start`'s post step, over a real temporary git repository: commits by
 * the app's bot (identity set by github-token), by a human, co-authored, and on a side branch.
 */
import { beforeAll, describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import {
  appendFileSync,
  chmodSync,
  existsSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { Job, type StepResult } from '../../src/devkit/run-action.js';
import { makeAppKey, type GithubApiServer } from '../../src/devkit/github-api.js';
import { closeAfterEach, startAppApi } from '../harness/github-app.js';
import type { CommitObserved } from '../../src/ledger/events.js';

const APP_ID = 31337;
const BOT_ID = 9200002;
const SLUG = 'agent-app';
const BOT_EMAIL = `${BOT_ID}+${SLUG}[bot]@users.noreply.github.com`;
let key: ReturnType<typeof makeAppKey>;
const cleanup = closeAfterEach();

beforeAll(() => {
  key = makeAppKey();
});

type CommitData = CommitObserved;

/** The agent's App token, as github-token mints it (contents: write). */
function issueToken(j: Job, apiUrl: string, privateKey = key.pkcs8): Promise<StepResult> {
  return j.run('github-token', 'main', {
    inputs: {
      'app-id': String(APP_ID),
      'private-key': privateKey,
      'github-api-url': apiUrl,
      'permission-contents': 'write',
    },
  });
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

/**
 * An agent step that is not `run` (no window): appends a chained `commits.observed` in
 * start's name listing `sha` with the identity and verdict it likes.
 */
function forgeObserved(j: Job, sha: string, claim: Partial<CommitData>): void {
  const file = join(j.runnerTemp, 'cordon', 'ledger.jsonl');
  const last = readFileSync(file, 'utf8').trim().split('\n').pop()!;
  const bot = `${SLUG}[bot]`;
  const forged: CommitData = {
    sha,
    author: bot,
    authorEmail: BOT_EMAIL,
    committer: bot,
    committerEmail: BOT_EMAIL,
    coAuthors: [],
    signature: 'unsigned',
    subject: 'human commit',
    verdict: 'agent',
    ...claim,
  };
  appendFileSync(
    file,
    JSON.stringify({
      v: 1,
      time: new Date().toISOString(),
      action: 'start',
      type: 'commits.observed',
      data: { base: j.env.GITHUB_SHA, head: sha, commits: [forged] },
      prev: createHash('sha256').update(last).digest('hex'),
    }) + '\n',
  );
}

function api(): Promise<GithubApiServer> {
  return startAppApi(
    { appId: APP_ID, slug: SLUG, botId: BOT_ID, publicKey: key.publicKey, installationId: 55 },
    cleanup,
  );
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
    const token = await issueToken(j, s.url);
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
    await issueToken(j, s.url, key.pkcs1);
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

  test("hostile: a commit report recorded (its own fail-on-impersonation off) still fails start's fail-on-impersonation", async () => {
    const s = await api();
    const j = repoJob();
    const start = await j.run('start', 'main');
    await issueToken(j, s.url, key.pkcs1);
    const human = commit(j, 'human commit', { as: ['Mona Lisa', 'mona@example.com'] });
    const report = await j.run('report', 'main');
    expect(report.code).toBe(0);
    const end = await j.run('start', 'post', {
      state: start.state,
      inputs: { 'fail-on-impersonation': 'true' },
    });
    expect(end.code).toBe(1);
    expect(errors(end)).toMatch(
      new RegExp(`start: 1 commit\\(s\\) made in this run carry a human identity.*${human.slice(0, 12)}`),
    );
  }, 120000);

  test('hostile: a human-authored commit under 1001 bot commits (past the listed 1000) is not unnoticed: CAUTION, and fail-on-impersonation fails report and post', async () => {
    const s = await api();
    const j = repoJob();
    const start = await j.run('start', 'main');
    expect((await issueToken(j, s.url, key.pkcs1)).code).toBe(0);
    // As the runner user (user: runner): the human commit first, back-dated (the reflog names
    // it, so rev-list starts from it too and would list it by its date), then 1001 of the
    // bot's on top (fast-import, one process): rev-list reaches the human one only past the cap.
    const script = [
      'set -e',
      'echo x > human.txt && git add human.txt',
      'export GIT_AUTHOR_DATE=2001-01-01T00:00:00Z GIT_COMMITTER_DATE=2001-01-01T00:00:00Z',
      'git -c user.name="Mona Lisa" -c user.email=mona@example.com commit -q --no-gpg-sign -m "human commit"',
      'human=$(git rev-parse HEAD); now=$(date +%s); i=0',
      'while [ $i -lt 1001 ]; do',
      '  i=$((i+1))',
      `  printf 'commit refs/heads/main\ncommitter ${SLUG}[bot] <${BOT_EMAIL}> %s +0000\ndata 11\nagent: step\n' "$now"`,
      '  if [ $i -eq 1 ]; then echo "from $human"; fi',
      '  echo',
      'done | git fast-import --quiet',
    ].join('\n');
    const run = await j.run('run', 'main', { inputs: { run: script, user: 'runner' } });
    expect(run.code).toBe(0);
    const human = git(j, ['rev-list', '--author=mona@example.com', 'HEAD', `^${j.env.GITHUB_SHA}`]);
    expect(human).toMatch(/^[0-9a-f]{40}$/);
    expect(git(j, ['rev-list', '--count', 'HEAD', `^${j.env.GITHUB_SHA}`])).toBe('1002');

    const report = await j.run('report', 'main', { inputs: { 'fail-on-impersonation': 'true' } });
    const o = observed(j);
    expect(o).toMatchObject({ truncated: true });
    expect(o.commits).toHaveLength(1000);
    expect(o.commits.map((c) => c.sha)).not.toContain(human);
    expect(o.commits.every((c) => c.verdict === 'agent')).toBe(true);
    expect(report.code).toBe(1);
    expect(errors(report)).toMatch(/report: more than 1000 commits were made in this run/);
    const end = await j.run('start', 'post', {
      state: start.state,
      inputs: { 'fail-on-impersonation': 'true' },
    });
    expect(end.code).toBe(1);
    expect(errors(end)).toMatch(/start: more than 1000 commits were made in this run.*Fix: /);
    expect(end.summary).toMatch(/\[!CAUTION\]\s*\n>\s*More commits were made than Cordon lists/);
    expect(end.summary).toMatch(/Cordon: .*commits not classified/);
  }, 180000);

  test("hostile: the command commits as a human and forges a token.issued naming that human's address: still impersonation, in report and in post", async () => {
    const s = await api();
    const j = repoJob();
    const start = await j.run('start', 'main');
    expect((await issueToken(j, s.url, key.pkcs1)).code).toBe(0);
    // As the runner user (user: runner): a line that chains, claiming a second bot whose git
    // identity is the human's, so that the human-authored commit reads as the agent's.
    const forged = JSON.stringify({
      action: 'github-token',
      type: 'token.issued',
      data: {
        app: 'mona',
        bot: 'mona',
        installationId: 1,
        repositories: ['octo-org/octo-repo'],
        permissions: { contents: 'write' },
        expiresAt: '2030-01-01T00:00:00Z',
        gitUserName: 'Mona Lisa',
        gitUserEmail: 'mona@example.com',
      },
    });
    const script = [
      'echo x > human.txt && git add human.txt',
      'git -c user.name="Mona Lisa" -c user.email=mona@example.com commit -q --no-gpg-sign -m "human commit"',
      `node -e '
        const fs = require("fs"), c = require("crypto");
        const f = process.env.RUNNER_TEMP + "/cordon/ledger.jsonl";
        const last = fs.readFileSync(f, "utf8").trim().split("\\n").pop();
        const prev = c.createHash("sha256").update(last).digest("hex");
        fs.appendFileSync(f, JSON.stringify({ v: 1, time: new Date().toISOString(), ...${forged}, prev }) + "\\n");'`,
    ].join('\n');
    const run = await j.run('run', 'main', { inputs: { run: script, user: 'runner' } });
    expect(run.code).toBe(1);
    const human = git(j, ['rev-parse', 'HEAD']);
    expect(git(j, ['log', '-1', '--format=%ae'])).toBe('mona@example.com');

    const report = await j.run('report', 'main', {
      inputs: { 'fail-on-tamper': 'false', 'fail-on-impersonation': 'true' },
    });
    expect(report.code).toBe(1);
    expect(errors(report)).toMatch(new RegExp(`carry a human identity.*${human.slice(0, 12)} by Mona Lisa`));
    expect(observed(j).commits.find((c) => c.sha === human)?.verdict).toBe('impersonation');
    const end = await j.run('start', 'post', {
      state: start.state,
      inputs: { 'fail-on-tamper': 'false', 'fail-on-impersonation': 'true' },
    });
    expect(end.code).toBe(1);
    expect(errors(end)).toMatch(
      new RegExp(`start: 1 commit\\(s\\) made in this run carry a human identity.*${human.slice(0, 12)}`),
    );
  }, 120000);

  test("hostile: the command commits as a human and appends a chained commits.observed calling it the agent's: still impersonation, in report and in post", async () => {
    const s = await api();
    const j = repoJob();
    const start = await j.run('start', 'main');
    expect((await issueToken(j, s.url, key.pkcs1)).code).toBe(0);
    // As the runner user (user: runner): a line that chains, in the shape start's post writes,
    // listing the human-authored commit with the verdict agent, so that it reads as recorded.
    const script = [
      'echo x > human.txt && git add human.txt',
      'git -c user.name="Mona Lisa" -c user.email=mona@example.com commit -q --no-gpg-sign -m "human commit"',
      `SHA=$(git rev-parse HEAD) BASE=${j.env.GITHUB_SHA} node -e '
        const fs = require("fs"), c = require("crypto");
        const f = process.env.RUNNER_TEMP + "/cordon/ledger.jsonl";
        const last = fs.readFileSync(f, "utf8").trim().split("\\n").pop();
        const prev = c.createHash("sha256").update(last).digest("hex");
        const bot = "${SLUG}[bot]", email = "${BOT_EMAIL}";
        const commit = { sha: process.env.SHA, author: bot, authorEmail: email, committer: bot, committerEmail: email,
          coAuthors: [], signature: "unsigned", subject: "human commit", verdict: "agent" };
        const data = { base: process.env.BASE, head: process.env.SHA, commits: [commit] };
        fs.appendFileSync(f, JSON.stringify({ v: 1, time: new Date().toISOString(), action: "start",
          type: "commits.observed", data, prev }) + "\\n");'`,
    ].join('\n');
    const run = await j.run('run', 'main', { inputs: { run: script, user: 'runner' } });
    expect(run.code).toBe(1);
    const human = git(j, ['rev-parse', 'HEAD']);
    expect(git(j, ['log', '-1', '--format=%ae'])).toBe('mona@example.com');
    const forged = readFileSync(join(j.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l && (JSON.parse(l) as { type: string }).type === 'commits.observed');
    expect(forged).toHaveLength(1);
    expect(forged[0]).toContain(`"sha":"${human}"`);
    expect(forged[0]).toContain('"verdict":"agent"');

    const report = await j.run('report', 'main', {
      inputs: { 'fail-on-tamper': 'false', 'fail-on-impersonation': 'true' },
    });
    expect(report.code).toBe(1);
    expect(errors(report)).toMatch(new RegExp(`carry a human identity.*${human.slice(0, 12)} by Mona Lisa`));
    expect(report.summary).toContain('IMPERSONATION');
    const end = await j.run('start', 'post', {
      state: start.state,
      inputs: { 'fail-on-tamper': 'false', 'fail-on-impersonation': 'true' },
    });
    expect(end.code).toBe(1);
    expect(errors(end)).toMatch(
      new RegExp(`start: 1 commit\\(s\\) made in this run carry a human identity.*${human.slice(0, 12)}`),
    );
    // The forged line is not rendered as a verdict: the one row for the commit says IMPERSONATION.
    const rows = end.summary.split('\n').filter((l) => l.startsWith(`| ${human.slice(0, 12)} |`));
    expect(rows.length).toBeGreaterThan(0);
    for (const r of rows) expect(r).toContain('IMPERSONATION');
  }, 120000);

  test("hostile: the command commits as a human, pushes it, then rewrites the commit's object file in place to name the bot: still impersonation, in report and in post", async () => {
    const s = await api();
    const j = repoJob();
    const remote = join(j.root, 'remote.git');
    execFileSync('git', ['init', '-q', '--bare', remote], { env: j.env });
    const start = await j.run('start', 'main');
    expect((await issueToken(j, s.url, key.pkcs1)).code).toBe(0);
    // As the runner user (user: runner): the human-authored commit leaves as it is; then the
    // same object file is given the bot's identity, which git reads without checking its name.
    const script = [
      'echo x > human.txt && git add human.txt',
      'git -c user.name="Mona Lisa" -c user.email=mona@example.com commit -q --no-gpg-sign -m "human commit"',
      `git push -q ${remote} HEAD:refs/heads/main`,
      `SHA=$(git rev-parse HEAD) node -e '
        const fs = require("fs"), z = require("zlib"), { execFileSync } = require("child_process");
        const sha = process.env.SHA, bot = "${SLUG}[bot] <${BOT_EMAIL}>";
        const body = Buffer.from(execFileSync("git", ["cat-file", "commit", sha], { encoding: "utf8" })
          .replace(/Mona Lisa <mona@example\\.com>/g, bot));
        const file = ".git/objects/" + sha.slice(0, 2) + "/" + sha.slice(2);
        fs.chmodSync(file, 0o644);
        fs.writeFileSync(file, z.deflateSync(Buffer.concat([Buffer.from("commit " + body.length + "\\0"), body])));'`,
    ].join('\n');
    await j.run('run', 'main', { inputs: { run: script, user: 'runner' } });
    const human = git(j, ['rev-parse', 'HEAD']);
    // What left is Mona's; what the workspace's object now says is the bot's.
    expect(git(j, ['--git-dir', remote, 'log', '-1', '--format=%ae', human])).toBe('mona@example.com');
    expect(git(j, ['log', '-1', '--format=%ae', human])).toBe(BOT_EMAIL);

    const report = await j.run('report', 'main', {
      inputs: { 'fail-on-tamper': 'false', 'fail-on-impersonation': 'true' },
    });
    expect(observed(j).commits.find((c) => c.sha === human)).toMatchObject({
      verdict: 'impersonation',
      objectMismatch: true,
    });
    expect(report.code).toBe(1);
    expect(errors(report)).toMatch(new RegExp(`carry a human identity.*${human.slice(0, 12)}`));
    expect(report.summary).toMatch(
      new RegExp(`\\| ${human.slice(0, 12)} \\|.*IMPERSONATION \\(object rewritten\\)`),
    );
    const end = await j.run('start', 'post', {
      state: start.state,
      inputs: { 'fail-on-tamper': 'false', 'fail-on-impersonation': 'true' },
    });
    expect(end.code).toBe(1);
    expect(errors(end)).toMatch(
      new RegExp(`start: 1 commit\\(s\\) made in this run carry a human identity.*${human.slice(0, 12)}`),
    );
  }, 120000);

  test("hostile: an agent step that is not run (a uses: action, no window) commits as a human and appends a chained commits.observed calling it the agent's: report and post list it again as impersonation and fail", async () => {
    const s = await api();
    const j = repoJob();
    const start = await j.run('start', 'main');
    expect((await issueToken(j, s.url, key.pkcs1)).code).toBe(0);
    // The agent's own step, outside every run window: a human-authored commit and a line in
    // the shape Cordon writes, chained, calling it the agent's.
    const human = commit(j, 'human commit', { as: ['Mona Lisa', 'mona@example.com'] });
    forgeObserved(j, human, {});

    const report = await j.run('report', 'main', {
      inputs: { 'fail-on-tamper': 'false', 'fail-on-impersonation': 'true' },
    });
    expect(report.code).toBe(1);
    expect(errors(report)).toMatch(new RegExp(`carry a human identity.*${human.slice(0, 12)} by Mona Lisa`));
    expect(
      report.commands.some(
        (c) =>
          c.command === 'warning' &&
          c.message.includes(`commit ${human.slice(0, 12)} is recorded in an earlier ledger line as agent`),
      ),
    ).toBe(true);
    // One row for the commit, with Cordon's reading: the forged author is not shown as its.
    const rows = report.summary.split('\n').filter((l) => l.startsWith(`| ${human.slice(0, 12)} |`));
    expect(rows).toHaveLength(1);
    expect(rows[0]).toContain('IMPERSONATION');
    expect(rows[0]).toContain('Mona Lisa');
    expect(rows[0]).not.toContain('[bot]');
    const attribution = JSON.parse(readFileSync(report.outputs['attribution-path'], 'utf8')) as {
      commits: CommitData[];
    };
    expect(attribution.commits.filter((c) => c.sha === human).map((c) => c.verdict)).toEqual([
      'impersonation',
    ]);
    const end = await j.run('start', 'post', {
      state: start.state,
      inputs: { 'fail-on-tamper': 'false', 'fail-on-impersonation': 'true' },
    });
    expect(end.code).toBe(1);
    expect(errors(end)).toMatch(
      new RegExp(`start: 1 commit\\(s\\) made in this run carry a human identity.*${human.slice(0, 12)}`),
    );
  }, 120000);

  test("hostile: an agent step that is not run forges a commits.observed calling its human commit the agent's, and a process it left running drops the commit from the workspace after report: start's fail-on-impersonation still fails", async () => {
    const s = await api();
    const j = repoJob();
    const start = await j.run('start', 'main');
    expect((await issueToken(j, s.url, key.pkcs1)).code).toBe(0);
    const human = commit(j, 'human commit', { as: ['Mona Lisa', 'mona@example.com'] });
    forgeObserved(j, human, {});
    // report lists the commit again as impersonation, but its own input is off.
    const report = await j.run('report', 'main', { inputs: { 'fail-on-tamper': 'false' } });
    expect(report.code).toBe(0);
    // After report, the agent's leftover process takes the commit out of the workspace (pushed
    // already, say): start's post no longer lists it, only the ledger records it.
    git(j, ['reset', '-q', '--hard', j.env.GITHUB_SHA]);
    rmSync(join(j.workspace, '.git', 'logs'), { recursive: true, force: true });
    const end = await j.run('start', 'post', {
      state: start.state,
      inputs: { 'fail-on-tamper': 'false', 'fail-on-impersonation': 'true' },
    });
    expect(end.code).toBe(1);
    expect(errors(end)).toMatch(
      new RegExp(
        `start: 1 commit\\(s\\) made in this run carry a human identity.*${human.slice(0, 12)} by Mona Lisa`,
      ),
    );
  }, 120000);

  test('hostile: an agent step that is not run records its human commit as impersonation by someone else: report lists it again, and the summary and attribution.json name the human it claims to be', async () => {
    const s = await api();
    const j = repoJob();
    await j.run('start', 'main');
    expect((await issueToken(j, s.url, key.pkcs1)).code).toBe(0);
    const human = commit(j, 'human commit', { as: ['Mona Lisa', 'mona@example.com'] });
    // Flagged, but as a stranger's: whom the commit claims to be (a maintainer, say) is hidden.
    const stranger = { name: 'Some Contributor', email: 'someone@example.net' };
    forgeObserved(j, human, {
      author: stranger.name,
      authorEmail: stranger.email,
      committer: stranger.name,
      committerEmail: stranger.email,
      verdict: 'impersonation',
    });
    const report = await j.run('report', 'main', { inputs: { 'fail-on-tamper': 'false' } });
    expect(report.code).toBe(0);
    expect(
      report.commands.some(
        (c) =>
          c.command === 'warning' &&
          c.message.includes(
            `commit ${human.slice(0, 12)} is recorded in an earlier ledger line as impersonation by Some Contributor`,
          ),
      ),
    ).toBe(true);
    const rows = report.summary.split('\n').filter((l) => l.startsWith(`| ${human.slice(0, 12)} |`));
    expect(rows).toHaveLength(1);
    expect(rows[0]).toContain('Mona Lisa');
    expect(rows[0]).not.toContain('Some Contributor');
    const attribution = JSON.parse(readFileSync(report.outputs['attribution-path'], 'utf8')) as {
      commits: CommitData[];
    };
    expect(attribution.commits.filter((c) => c.sha === human).map((c) => [c.author, c.verdict])).toEqual([
      ['Mona Lisa', 'impersonation'],
    ]);
  }, 120000);

  test("hostile: a plain step outside every window appends a chained token.issued naming a human's address as the App bot's, and the agent commits as that human: report and post still find the impersonation and fail, the bot's commits stay the agent's", async () => {
    const s = await api();
    const j = repoJob();
    const start = await j.run('start', 'main');
    expect((await issueToken(j, s.url, key.pkcs1)).code).toBe(0);
    const byBot = commit(j, 'agent: fix the parser');
    const human = commit(j, 'human commit', { as: ['Mona Lisa', 'mona@example.com'] });
    // A plain step of the agent's (no run, no window), with the runner user's rights: a line
    // in github-token's name, chained, for the real App but with the human's address.
    const script = join(j.root, 'forge-token.cjs');
    writeFileSync(
      script,
      `const fs = require("fs"), c = require("crypto");
      const f = process.env.RUNNER_TEMP + "/cordon/ledger.jsonl";
      const last = fs.readFileSync(f, "utf8").trim().split("\\n").pop();
      const prev = c.createHash("sha256").update(last).digest("hex");
      const data = { app: "${SLUG}", bot: "${SLUG}[bot]", botId: ${BOT_ID}, installationId: 55,
        repositories: ["octo-org/octo-repo"], permissions: { contents: "write" }, expiresAt: "2030-01-01T00:00:00Z",
        gitUserName: "${SLUG}[bot]", gitUserEmail: "mona@example.com" };
      fs.appendFileSync(f, JSON.stringify({ v: 1, time: new Date().toISOString(), action: "github-token",
        type: "token.issued", data, prev }) + "\\n");`,
    );
    expect((await j.run('agent-step', 'main', { script })).code).toBe(0);
    const lines = readFileSync(join(j.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8')
      .trim()
      .split('\n');
    expect(lines[lines.length - 1]).toContain('"gitUserEmail":"mona@example.com"');
    const forgedLine = lines.length;

    const report = await j.run('report', 'main', {
      inputs: { 'fail-on-tamper': 'false', 'fail-on-impersonation': 'true' },
    });
    expect(report.code).toBe(1);
    expect(errors(report)).toMatch(
      new RegExp(
        `report: 1 commit\\(s\\) made in this run carry a human identity.*${human.slice(0, 12)} by Mona Lisa`,
      ),
    );
    const refused = `line ${forgedLine}, a token.issued, names "mona@example.com" as the bot's address, not GitHub's for it (${BOT_EMAIL})`;
    expect(
      report.commands.some((c) => c.command === 'warning' && c.message.includes(`report: ledger ${refused}`)),
    ).toBe(true);
    expect(report.summary).toContain('RECORD ALTERED');
    expect(report.summary).toContain(
      `line ${forgedLine}, a token.issued, names "mona&#64;example.com" as the bot's`,
    );
    const attribution = JSON.parse(readFileSync(report.outputs['attribution-path'], 'utf8')) as {
      commits: CommitData[];
    };
    const verdicts = Object.fromEntries(attribution.commits.map((c) => [c.sha, c.verdict]));
    expect(verdicts).toEqual({ [byBot]: 'agent', [human]: 'impersonation' });

    const end = await j.run('start', 'post', {
      state: start.state,
      inputs: { 'fail-on-tamper': 'false', 'fail-on-impersonation': 'true' },
    });
    expect(end.code).toBe(1);
    expect(errors(end)).toMatch(
      new RegExp(
        `start: 1 commit\\(s\\) made in this run carry a human identity.*${human.slice(0, 12)} by Mona Lisa`,
      ),
    );
    expect(
      end.commands.some((c) => c.command === 'warning' && c.message.includes(`start: ledger ${refused}`)),
    ).toBe(true);
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

  test('a hostile .git/config and hooks: post runs none of their programs and still lists the commits, a signed-looking one as not verified', async () => {
    const j = repoJob();
    const start = await j.run('start', 'main');
    // A commit with a forged signature header, as `git hash-object` takes it: the agent's verifier would call it good.
    const tree = git(j, ['write-tree']);
    const parent = git(j, ['rev-parse', 'HEAD']);
    const raw = [
      `tree ${tree}`,
      `parent ${parent}`,
      'author Mona Lisa <mona@example.com> 1700000000 +0000',
      'committer Mona Lisa <mona@example.com> 1700000000 +0000',
      'gpgsig -----BEGIN PGP SIGNATURE-----',
      ' ',
      ' forged',
      ' -----END PGP SIGNATURE-----',
      '',
      'signed-looking commit',
      '',
    ].join('\n');
    writeFileSync(join(j.root, 'commit.txt'), raw);
    const signed = git(j, ['hash-object', '-t', 'commit', '-w', join(j.root, 'commit.txt')]);
    git(j, ['update-ref', 'refs/heads/signed', signed]);
    // Then every program git can be told to run, written straight into .git (as the agent can).
    const marker = join(j.root, 'git-program-ran');
    const evil = join(j.root, 'evil.sh');
    writeFileSync(evil, `#!/bin/sh\necho "$0 $*" >> ${marker}\nexit 0\n`, { mode: 0o755 });
    const config = [
      '[core]',
      `\tfsmonitor = ${evil}`,
      `\tpager = ${evil}`,
      `\tsshCommand = ${evil}`,
      '[gpg]',
      `\tprogram = ${evil}`,
      '[gpg "ssh"]',
      `\tprogram = ${evil}`,
      '[gpg "x509"]',
      `\tprogram = ${evil}`,
      '[log]',
      '\tshowSignature = true',
      '[pager]',
      `\tlog = ${evil}`,
      `\trev-list = ${evil}`,
      '[diff]',
      `\texternal = ${evil}`,
      '[diff "evil"]',
      `\ttextconv = ${evil}`,
      '[filter "evil"]',
      `\tsmudge = ${evil}`,
      `\tclean = ${evil}`,
      `\tprocess = ${evil}`,
      '[credential]',
      `\thelper = !${evil}`,
      '',
    ].join('\n');
    writeFileSync(join(j.workspace, '.git', 'config'), config, { flag: 'a' });
    writeFileSync(join(j.workspace, '.gitattributes'), '* filter=evil diff=evil\n');
    for (const hook of ['post-checkout', 'reference-transaction', 'post-index-change', 'pre-auto-gc'])
      writeFileSync(join(j.workspace, '.git', 'hooks', hook), `#!/bin/sh\n${evil}\n`, { mode: 0o755 });
    expect(existsSync(marker)).toBe(false);

    const end = await j.run('start', 'post', { state: start.state });
    expect(errors(end)).toBe('');
    expect(existsSync(marker) ? readFileSync(marker, 'utf8') : '').toBe('');
    const o = observed(j);
    expect(o.commits).toEqual([
      expect.objectContaining({
        sha: signed,
        author: 'Mona Lisa',
        signature: 'signed, not verified by Cordon',
        subject: 'signed-looking commit',
      }),
    ]);
    expect(end.summary).toContain('signed, not verified by Cordon');
  });

  test('a 0x1f or an escape in an author name shifts no field: the commit is the human one, flagged, shown escaped', async () => {
    const s = await api();
    const j = repoJob();
    const start = await j.run('start', 'main');
    expect(errors(await issueToken(j, s.url))).toBe('');
    // Parsed as before (fields split at 0x1f), this name made the bot's address the author's.
    const forged = commit(j, 'human work', {
      env: {
        GIT_AUTHOR_NAME: `Mona\x1f${BOT_EMAIL}\x1fAgent`,
        GIT_AUTHOR_EMAIL: 'mona@example.com',
      },
    });
    const botNamed = commit(j, 'bot with a control character', {
      env: { GIT_AUTHOR_NAME: `${SLUG}[bot]\x1b[2K` },
    });
    const end = await j.run('start', 'post', { state: start.state });
    const bySha = Object.fromEntries(observed(j).commits.map((c) => [c.sha, c]));
    expect(bySha[forged]).toMatchObject({
      author: `Mona\\x1f${BOT_EMAIL}\\x1fAgent`,
      authorEmail: 'mona@example.com',
      committerEmail: BOT_EMAIL,
      subject: 'human work',
      controlCharacters: true,
      verdict: 'impersonation',
    });
    expect(bySha[botNamed]).toMatchObject({
      author: `${SLUG}[bot]\\x1b[2K`,
      authorEmail: BOT_EMAIL,
      controlCharacters: true,
      verdict: 'impersonation',
    });
    expect(
      end.commands.filter((c) => c.command === 'warning' && /control character/.test(c.message)),
    ).toHaveLength(2);
  }, 120000);

  test('commits reset away, stashed, or only tagged in the run are listed; a remote branch fetched is not', async () => {
    const j = repoJob();
    const start = await j.run('start', 'main');
    const base = j.env.GITHUB_SHA;
    // Someone else's work, fetched into a remote-tracking ref: not the run's.
    git(j, ['checkout', '-q', '-b', 'theirs']);
    const theirs = commit(j, 'their commit', { as: ['Someone', 'someone@example.com'] });
    git(j, ['init', '-q', '--bare', join(j.root, 'remote.git')]);
    git(j, ['remote', 'add', 'origin', join(j.root, 'remote.git')]);
    git(j, ['push', '-q', 'origin', 'theirs']);
    git(j, ['checkout', '-q', 'main']);
    git(j, ['branch', '-q', '-D', 'theirs']);
    git(j, ['update-ref', '-d', 'refs/remotes/origin/theirs']);
    git(j, ['reflog', 'expire', '--expire=now', '--all']);
    git(j, ['fetch', '-q', 'origin']);
    // Made, then reset away.
    const resetAway = commit(j, 'reset away', { as: ['Mona Lisa', 'mona@example.com'] });
    git(j, ['reset', '-q', '--hard', base]);
    // Only a tag holds it.
    const tagged = commit(j, 'tagged only', { as: ['Mona Lisa', 'mona@example.com'] });
    git(j, ['tag', 'v-agent', tagged]);
    git(j, ['reset', '-q', '--hard', base]);
    // Stashed.
    writeFileSync(join(j.workspace, git(j, ['ls-files']).split('\n')[0]), 'changed\n');
    git(j, ['-c', 'user.name=Mona Lisa', '-c', 'user.email=mona@example.com', 'stash', '-q']);
    const stash = git(j, ['rev-parse', 'refs/stash']);

    const end = await j.run('start', 'post', { state: start.state });
    expect(errors(end)).toBe('');
    const o = observed(j);
    const shas = o.commits.map((c) => c.sha);
    expect(shas).toEqual(expect.arrayContaining([resetAway, tagged, stash]));
    expect(shas).not.toContain(theirs);
    expect(o).toMatchObject({ tags: ['refs/tags/v-agent'] });
  });
});

/**
 * Before start: someone else's release fix, on base, held only by the tag v1.0.0 (made with
 * commit-tree: no reflog names it), as in a repository checked out with its tags.
 */
function releaseTag(j: Job): string {
  const fix = git(
    j,
    ['commit-tree', `${j.env.GITHUB_SHA}^{tree}`, '-p', j.env.GITHUB_SHA, '-m', 'release fix'],
    {
      GIT_AUTHOR_NAME: 'Someone',
      GIT_AUTHOR_EMAIL: 'someone@example.com',
      GIT_COMMITTER_NAME: 'Someone',
      GIT_COMMITTER_EMAIL: 'someone@example.com',
    },
  );
  git(j, ['tag', 'v1.0.0', fix]);
  return fix;
}

describe('start: tags that existed at start', () => {
  test("an honest job that runs git gc (every tag rewritten into the packed refs) does not list a release tag's commits, and fail-on-impersonation passes", async () => {
    const s = await api();
    const j = repoJob();
    const fix = releaseTag(j);
    const start = await j.run('start', 'main');
    await issueToken(j, s.url);
    const byBot = commit(j, 'agent: fix the parser');
    git(j, ['gc', '-q']);
    const end = await j.run('start', 'post', {
      state: start.state,
      inputs: { 'fail-on-impersonation': 'true' },
    });
    expect(errors(end)).toBe('');
    expect(end.code).toBe(0);
    const o = observed(j);
    expect(o.commits.map((c) => [c.sha, c.verdict])).toEqual([[byBot, 'agent']]);
    expect(o.commits.map((c) => c.sha)).not.toContain(fix);
    expect(o).not.toHaveProperty('tags');
  }, 120000);

  test('hostile: that tag moved in the run to a human-authored commit made with commit-tree, then git gc: post lists it as impersonation and fails', async () => {
    const s = await api();
    const j = repoJob();
    const fix = releaseTag(j);
    const start = await j.run('start', 'main');
    await issueToken(j, s.url);
    const human = git(
      j,
      ['commit-tree', `${j.env.GITHUB_SHA}^{tree}`, '-p', j.env.GITHUB_SHA, '-m', 'as mona'],
      {
        GIT_AUTHOR_NAME: 'Mona Lisa',
        GIT_AUTHOR_EMAIL: 'mona@example.com',
        GIT_COMMITTER_NAME: 'Mona Lisa',
        GIT_COMMITTER_EMAIL: 'mona@example.com',
      },
    );
    git(j, ['tag', '-f', 'v1.0.0', human]);
    git(j, ['gc', '-q']);
    const end = await j.run('start', 'post', {
      state: start.state,
      inputs: { 'fail-on-impersonation': 'true' },
    });
    expect(end.code).toBe(1);
    expect(errors(end)).toContain(`${human.slice(0, 12)} by Mona Lisa <mona@example.com>`);
    const o = observed(j);
    expect(o.commits.map((c) => [c.sha, c.verdict])).toEqual([[human, 'impersonation']]);
    expect(o.commits.map((c) => c.sha)).not.toContain(fix);
    expect(o).toMatchObject({ tags: ['refs/tags/v1.0.0'] });
  }, 120000);
});

/**
 * Gives `base` the first parent `parent` in the repository's commit-graph, as a step of the
 * agent's would: git's walk then reads the recorded commit as coming after the agent's.
 */
function forgeCommitGraph(j: Job, base: string, parent: string): void {
  git(j, ['commit-graph', 'write', '--reachable']);
  const path = join(j.workspace, '.git', 'objects', 'info', 'commit-graph');
  const graph = readFileSync(path);
  // Chunk table from byte 8: 4-byte id, 8-byte offset. OIDL holds the sorted names, CDAT per
  // commit the tree and the first and second parent's positions.
  const chunk = (id: string): number => {
    for (let at = 8; at < 8 + 12 * 16; at += 12)
      if (graph.subarray(at, at + 4).toString('latin1') === id) return Number(graph.readBigUInt64BE(at + 4));
    throw new Error(`no ${id} chunk`);
  };
  const oidl = chunk('OIDL');
  const n = graph.readUInt32BE(chunk('OIDF') + 255 * 4);
  const names = Array.from({ length: n }, (_, i) =>
    graph.subarray(oidl + i * 20, oidl + i * 20 + 20).toString('hex'),
  );
  graph.writeUInt32BE(names.indexOf(parent), chunk('CDAT') + names.indexOf(base) * 36 + 20);
  chmodSync(path, 0o644);
  writeFileSync(path, graph);
}

describe('start: what the agent writes into .git cannot hide its commits', () => {
  test("hostile: a later step (as the runner user) plants .git/info/grafts giving the recorded commit the agent's commits as parents: post still lists both, the human-authored one as impersonation, and fails", async () => {
    const s = await api();
    const j = repoJob();
    const base = j.env.GITHUB_SHA;
    const start = await j.run('start', 'main');
    expect((await issueToken(j, s.url, key.pkcs1)).code).toBe(0);
    const human = commit(j, 'human commit', { as: ['Mona Lisa', 'mona@example.com'] });
    const bot = commit(j, 'agent commit', { as: [`${SLUG}[bot]`, BOT_EMAIL] });
    writeFileSync(join(j.workspace, '.git', 'info', 'grafts'), `${base} ${bot}\n`);
    // git, as the agent left the repository, lists nothing after the recorded commit.
    expect(git(j, ['rev-list', 'HEAD', `^${base}`])).toBe('');

    const end = await j.run('start', 'post', {
      state: start.state,
      inputs: { 'fail-on-impersonation': 'true' },
    });
    const o = observed(j);
    expect(o.commits.map((c) => c.sha).sort()).toEqual([human, bot].sort());
    expect(o.commits.find((c) => c.sha === human)).toMatchObject({ verdict: 'impersonation' });
    expect(o.commits.find((c) => c.sha === bot)).toMatchObject({ verdict: 'agent' });
    expect(end.code).toBe(1);
    expect(errors(end)).toMatch(new RegExp(`carry a human identity.*${human.slice(0, 12)} by Mona Lisa`));
    expect(end.summary).toContain('IMPERSONATION');
  }, 120000);

  test("hostile: a later step forges the commit-graph and .git/shallow and drops the reflogs: post still lists the human-authored commit, hidden from git's history, as impersonation", async () => {
    const s = await api();
    const j = repoJob();
    const base = j.env.GITHUB_SHA;
    const start = await j.run('start', 'main');
    expect((await issueToken(j, s.url, key.pkcs1)).code).toBe(0);
    const human = commit(j, 'human commit', { as: ['Mona Lisa', 'mona@example.com'] });
    const bot = commit(j, 'agent commit', { as: [`${SLUG}[bot]`, BOT_EMAIL] });
    forgeCommitGraph(j, base, bot);
    expect(git(j, ['rev-list', 'HEAD', `^${base}`])).toBe('');
    // A shallow boundary at the bot's commit cuts the human one out of a walk without the graph.
    writeFileSync(join(j.workspace, '.git', 'shallow'), `${bot}\n`);
    rmSync(join(j.workspace, '.git', 'logs'), { recursive: true, force: true });
    expect(git(j, ['-c', 'core.commitGraph=false', 'rev-list', 'HEAD', `^${base}`])).toBe(bot);

    const end = await j.run('start', 'post', {
      state: start.state,
      inputs: { 'fail-on-impersonation': 'true' },
    });
    const o = observed(j);
    expect(o.commits.map((c) => c.sha).sort()).toEqual([human, bot].sort());
    expect(o.commits.find((c) => c.sha === human)).toMatchObject({
      verdict: 'impersonation',
      hiddenFromHistory: true,
      authorEmail: 'mona@example.com',
    });
    expect(end.code).toBe(1);
    expect(errors(end)).toMatch(new RegExp(`carry a human identity.*${human.slice(0, 12)}`));
    expect(end.summary).toMatch(
      new RegExp(`\\| ${human.slice(0, 12)} \\|.*IMPERSONATION \\(hidden from git's history\\)`),
    );
    expect(
      end.commands.filter((c) => c.command === 'warning' && /left out of git's history/.test(c.message)),
    ).toHaveLength(1);
  }, 120000);

  test("hostile: a later step deletes the recorded commit's object: post warns that the commits could not be checked, records it, and fail-on-impersonation fails", async () => {
    const s = await api();
    const j = repoJob();
    const base = j.env.GITHUB_SHA;
    const start = await j.run('start', 'main');
    expect((await issueToken(j, s.url, key.pkcs1)).code).toBe(0);
    commit(j, 'human commit', { as: ['Mona Lisa', 'mona@example.com'] });
    rmSync(join(j.workspace, '.git', 'objects', base.slice(0, 2), base.slice(2)));
    expect(() => git(j, ['cat-file', '-e', base])).toThrow();

    const end = await j.run('start', 'post', {
      state: start.state,
      inputs: { 'fail-on-impersonation': 'true' },
    });
    expect(observed(j)).toMatchObject({
      base,
      commits: [],
      unchecked: expect.stringMatching(
        new RegExp(`${base.slice(0, 12)}\\) is gone from the workspace repository`),
      ),
    });
    expect(
      end.commands.filter((c) => c.command === 'warning' && /commits could not be checked/.test(c.message)),
    ).toHaveLength(1);
    expect(end.stdout).not.toMatch(/commits not listed/);
    expect(end.summary).toMatch(/\[!CAUTION\]\s*\n>\s*The commits made in this run could not be checked/);
    expect(end.summary).toMatch(/Cordon: .*commits not checked/);
    expect(end.code).toBe(1);
    expect(errors(end)).toMatch(/start: the commits made in this run could not be checked: .*Fix: /);
  }, 120000);

  test("hostile: a later step replaces .git with a gitdir file pointing at a copy without the agent's commits: post warns that the commits could not be checked", async () => {
    const s = await api();
    const j = repoJob();
    const base = j.env.GITHUB_SHA;
    const start = await j.run('start', 'main');
    expect((await issueToken(j, s.url, key.pkcs1)).code).toBe(0);
    commit(j, 'human commit', { as: ['Mona Lisa', 'mona@example.com'] });
    const decoy = join(j.root, 'decoy.git');
    git(j, ['clone', '-q', '--bare', '--no-local', join(j.workspace, '.git'), decoy]);
    git(j, ['--git-dir', decoy, 'update-ref', 'refs/heads/main', base]);
    renameSync(join(j.workspace, '.git'), join(j.root, 'moved.git'));
    writeFileSync(join(j.workspace, '.git'), `gitdir: ${decoy}\n`);
    expect(git(j, ['rev-list', 'HEAD', `^${base}`])).toBe('');

    const end = await j.run('start', 'post', { state: start.state });
    expect(observed(j)).toMatchObject({
      commits: [],
      unchecked: expect.stringMatching(/is not the one start saw/),
    });
    expect(
      end.commands.filter((c) => c.command === 'warning' && /commits could not be checked/.test(c.message)),
    ).toHaveLength(1);
    expect(end.summary).toMatch(/Cordon: .*commits not checked/);
  }, 120000);

  test('hostile: a later step writes 200 tags sorting before the one on its human-authored commit (made with commit-tree, so no reflog names it): post still lists it as impersonation and fails', async () => {
    const s = await api();
    const j = repoJob();
    const base = j.env.GITHUB_SHA;
    const start = await j.run('start', 'main');
    expect((await issueToken(j, s.url, key.pkcs1)).code).toBe(0);
    const mona = {
      GIT_AUTHOR_NAME: 'Mona Lisa',
      GIT_AUTHOR_EMAIL: 'mona@example.com',
      GIT_COMMITTER_NAME: 'Mona Lisa',
      GIT_COMMITTER_EMAIL: 'mona@example.com',
    };
    const human = git(j, ['commit-tree', `${base}^{tree}`, '-p', base, '-m', 'as mona'], mona);
    git(j, ['tag', 'v9', human]);
    for (let i = 0; i < 200; i++)
      writeFileSync(join(j.workspace, '.git', 'refs', 'tags', `a${i}`), `${base}\n`);

    const end = await j.run('start', 'post', {
      state: start.state,
      inputs: { 'fail-on-impersonation': 'true' },
    });
    expect(observed(j).commits.find((c) => c.sha === human)).toMatchObject({ verdict: 'impersonation' });
    expect(end.code).toBe(1);
    expect(errors(end)).toMatch(
      new RegExp(`carry a human identity while the agent had its own: ${human.slice(0, 12)}`),
    );
  }, 120000);

  test("hostile: a later step writes a tag naming an object that is not there, so git's listing fails: post does not only warn, the commits are unchecked and fail-on-impersonation fails", async () => {
    const s = await api();
    const j = repoJob();
    const start = await j.run('start', 'main');
    expect((await issueToken(j, s.url, key.pkcs1)).code).toBe(0);
    commit(j, 'human commit', { as: ['Mona Lisa', 'mona@example.com'] });
    const tag = execFileSync('git', ['hash-object', '-t', 'tag', '-w', '--stdin', '--literally'], {
      cwd: j.workspace,
      env: j.env,
      input: `object ${'d'.repeat(40)}\ntype commit\ntag x\ntagger A <a@x> 1 +0000\n\nx\n`,
      encoding: 'utf8',
    }).trim();
    git(j, ['update-ref', 'refs/tags/x', tag]);

    const end = await j.run('start', 'post', {
      state: start.state,
      inputs: { 'fail-on-impersonation': 'true' },
    });
    expect(observed(j)).toMatchObject({
      commits: [],
      unchecked: expect.stringMatching(/^git failed while listing them \(.*(bad|missing) object d{40}/),
    });
    expect(
      end.commands.filter((c) => c.command === 'warning' && /commits could not be checked/.test(c.message)),
    ).toHaveLength(1);
    expect(end.summary).toMatch(/Cordon: .*commits not checked/);
    expect(end.code).toBe(1);
  }, 120000);
});
