/**
 * Whole-program runs of dist/github-token/{main,post}.js through the harness against the
 * loopback GitHub REST API: scoping, masking, revocation, git identity and every error.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Job, type StepResult } from '../../src/devkit/run-action.js';
import {
  makeAppKey,
  startGithubApi,
  type GithubApiOptions,
  type GithubApiServer,
} from '../../src/devkit/github-api.js';

const APP_ID = 424242;
const BOT_ID = 9100001;
const SLUG = 'cordon-agent';
let key: ReturnType<typeof makeAppKey>;
let otherKey: ReturnType<typeof makeAppKey>;
const servers: GithubApiServer[] = [];
const jobs: Job[] = [];

beforeAll(() => {
  key = makeAppKey();
  otherKey = makeAppKey();
});

afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
  for (const j of jobs.splice(0)) rmSync(j.root, { recursive: true, force: true });
});

afterAll(() => undefined);

async function server(over: Partial<GithubApiOptions> = {}): Promise<GithubApiServer> {
  const s = await startGithubApi({
    appId: APP_ID,
    slug: SLUG,
    botId: BOT_ID,
    publicKey: key.publicKey,
    installations: [
      {
        id: 777,
        account: 'octo-org',
        repositories: ['octo-repo', 'docs'],
        permissions: { contents: 'write', pull_requests: 'write', issues: 'read', metadata: 'read' },
      },
    ],
    ...over,
  });
  servers.push(s);
  return s;
}

function job(): Job {
  const j = new Job();
  j.env.GIT_CONFIG_GLOBAL = join(j.home, '.gitconfig');
  j.env.GIT_CONFIG_NOSYSTEM = '1';
  jobs.push(j);
  return j;
}

function inputs(s: GithubApiServer, extra: Record<string, string> = {}): Record<string, string> {
  return {
    'app-id': String(APP_ID),
    'private-key': key.pkcs1,
    'github-api-url': s.url,
    'permission-contents': 'write',
    'permission-pull-requests': 'write',
    ...extra,
  };
}

function ledger(j: Job): { type: string; data: Record<string, unknown> }[] {
  const p = join(j.runnerTemp, 'cordon', 'ledger.jsonl');
  if (!existsSync(p)) return [];
  return readFileSync(p, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { type: string; data: Record<string, unknown> });
}

function errorOf(r: StepResult): string {
  return r.commands
    .filter((c) => c.command === 'error')
    .map((c) => c.message)
    .join('\n');
}

/** Every byte a step printed or left behind, except the add-mask lines and the token output itself. */
function everythingPrinted(j: Job, results: StepResult[]): string {
  const ledgerFile = join(j.runnerTemp, 'cordon', 'ledger.jsonl');
  const gitconfig = j.env.GIT_CONFIG_GLOBAL;
  return [
    ...results.flatMap((r) => [
      r.stdout
        .split('\n')
        .filter((l) => !l.startsWith('::add-mask::'))
        .join('\n'),
      r.stderr,
      JSON.stringify(r.env),
      JSON.stringify(Object.fromEntries(Object.entries(r.outputs).filter(([k]) => k !== 'token'))),
      r.summary,
    ]),
    existsSync(ledgerFile) ? readFileSync(ledgerFile, 'utf8') : '',
    existsSync(gitconfig) ? readFileSync(gitconfig, 'utf8') : '',
  ].join('\n');
}

function gitConfig(j: Job, name: string): string {
  return execFileSync('git', ['config', '--file', j.env.GIT_CONFIG_GLOBAL, name], {
    encoding: 'utf8',
  }).trim();
}

describe('github-token', () => {
  test('mints a token masked before use, scoped as asked, sets the bot identity, and post revokes it', async () => {
    const s = await server();
    const j = job();
    const main = await j.run('github-token', 'main', { inputs: inputs(s) });
    expect(errorOf(main)).toBe('');
    expect(main.code).toBe(0);
    expect(s.tokens).toHaveLength(1);
    const token = s.tokens[0].token;
    expect(main.outputs.token).toBe(token);

    // Masked before anything else mentions it: the add-mask line precedes every other use.
    const firstMask = main.stdout.indexOf(`::add-mask::${token}`);
    expect(firstMask).toBeGreaterThanOrEqual(0);
    expect(main.stdout.indexOf(token)).toBe(firstMask + '::add-mask::'.length);

    // Scoped as asked: the current repository only and the two permissions (+ metadata: read).
    expect(s.tokens[0].repositories).toEqual(['octo-repo']);
    expect(s.tokens[0].permissions).toEqual({ contents: 'write', pull_requests: 'write', metadata: 'read' });
    expect(JSON.parse(main.outputs.permissions)).toEqual({
      contents: 'write',
      pull_requests: 'write',
      metadata: 'read',
    });
    expect(main.outputs['installation-id']).toBe('777');
    expect(main.outputs['app-slug']).toBe(SLUG);
    expect(main.outputs['bot-login']).toBe(`${SLUG}[bot]`);
    expect(main.outputs['bot-id']).toBe(String(BOT_ID));
    expect(main.outputs['git-user-name']).toBe(`${SLUG}[bot]`);
    expect(main.outputs['git-user-email']).toBe(`${BOT_ID}+${SLUG}[bot]@users.noreply.github.com`);
    expect(Date.parse(main.outputs['expires-at'])).toBeGreaterThan(Date.now());
    // The bot was looked up, not guessed.
    expect(s.count('GET', `/users/${encodeURIComponent(`${SLUG}[bot]`)}`)).toBe(1);

    expect(gitConfig(j, 'user.name')).toBe(`${SLUG}[bot]`);
    expect(gitConfig(j, 'user.email')).toBe(`${BOT_ID}+${SLUG}[bot]@users.noreply.github.com`);

    const issued = ledger(j).find((e) => e.type === 'token.issued');
    expect(issued?.data).toMatchObject({
      app: SLUG,
      bot: `${SLUG}[bot]`,
      botId: BOT_ID,
      installationId: 777,
      repositories: ['octo-org/octo-repo'],
      permissions: { contents: 'write', pull_requests: 'write', metadata: 'read' },
    });

    const post = await j.run('github-token', 'post', { state: main.state });
    expect(errorOf(post)).toBe('');
    expect(post.code).toBe(0);
    expect(s.tokens[0].revoked).toBe(true);
    expect(s.count('DELETE', '/installation/token')).toBe(1);
    const confirm = s.calls.filter((c) => c.path === '/installation/repositories');
    expect(confirm.map((c) => c.status)).toEqual([401]);
    const revoked = ledger(j).find((e) => e.type === 'token.revoked');
    expect(revoked?.data).toMatchObject({ installationId: 777, status: 'revoked', confirmStatus: 401 });
    // And the test's own call with the token after the job: refused.
    const after = await fetch(`${s.url}/installation/repositories`, {
      headers: { Authorization: `token ${token}` },
    });
    expect(after.status).toBe(401);
    expect(await after.json()).toEqual({
      message: 'Bad credentials',
      documentation_url: 'https://docs.github.com/rest',
      status: '401',
    });

    // The token's bytes appear nowhere but in its own output.
    const all = everythingPrinted(j, [main, post]);
    expect(all).not.toContain(token);
    expect(all).not.toContain(Buffer.from(token).toString('base64'));
  });

  test('accepts a PKCS#8 key with escaped \\n, a client id, and several repositories', async () => {
    const s = await server();
    const j = job();
    const oneLine = key.pkcs8.trim().replace(/\n/g, '\\n');
    const main = await j.run('github-token', 'main', {
      inputs: inputs(s, {
        'app-id': '',
        'client-id': `Iv23li${APP_ID}`,
        'private-key': oneLine,
        repositories: 'octo-repo, octo-org/docs',
        'permission-pull-requests': '',
        'permission-issues': 'read',
        'configure-git': 'false',
      }),
    });
    expect(errorOf(main)).toBe('');
    expect(main.code).toBe(0);
    expect(s.tokens[0].repositories).toEqual(['octo-repo', 'docs']);
    expect(s.tokens[0].permissions).toEqual({ contents: 'write', issues: 'read', metadata: 'read' });
    expect(existsSync(j.env.GIT_CONFIG_GLOBAL)).toBe(false);
  });

  test('refuses when no permission is asked for, before calling GitHub', async () => {
    const s = await server();
    const j = job();
    const r = await j.run('github-token', 'main', {
      inputs: inputs(s, { 'permission-contents': '', 'permission-pull-requests': '' }),
    });
    expect(r.code).toBe(1);
    expect(errorOf(r)).toMatch(/no permission-\* input was given.*Fix: add the permissions the agent needs/);
    expect(s.calls).toHaveLength(0);
  });

  test('a malformed key fails naming private-key and never printing it', async () => {
    const s = await server();
    const j = job();
    const broken = key.pkcs1.replace(/\n[A-Za-z0-9+/]{20}/, '\n');
    const r = await j.run('github-token', 'main', { inputs: inputs(s, { 'private-key': broken }) });
    expect(r.code).toBe(1);
    expect(errorOf(r)).toMatch(/input private-key is malformed.*Fix: paste the whole \.pem file/);
    const notPem = await j.run('github-token', 'main', {
      inputs: inputs(s, { 'private-key': 'not-a-key-at-all' }),
    });
    expect(errorOf(notPem)).toMatch(/private-key is not a GitHub App private key/);
    expect(s.calls).toHaveLength(0);
    const body = key.pkcs1.split('\n')[1];
    expect(r.stdout + r.stderr).not.toContain(body);
  });

  test('a key of another app fails as a wrong app id (401), an unknown app id as no such app (404)', async () => {
    const s = await server();
    const j = job();
    const wrongKey = await j.run('github-token', 'main', {
      inputs: inputs(s, { 'private-key': otherKey.pkcs1 }),
    });
    expect(wrongKey.code).toBe(1);
    expect(errorOf(wrongKey)).toMatch(
      /does not accept the app JWT for app-id 424242 \(HTTP 401: A JSON web token could not be decoded\).*private-key is not a key of the app.*Fix: copy the App ID/,
    );
    const wrongId = await j.run('github-token', 'main', { inputs: inputs(s, { 'app-id': '1234' }) });
    expect(errorOf(wrongId)).toMatch(/HTTP 404: Integration not found.*no GitHub App has app-id 1234/);
    expect(s.tokens).toHaveLength(0);
  });

  test('an app not installed on the repository fails with where to install it', async () => {
    const s = await server();
    const j = job();
    const r = await j.run('github-token', 'main', { inputs: inputs(s, { repositories: 'secret-repo' }) });
    expect(r.code).toBe(1);
    expect(errorOf(r)).toMatch(
      /app cordon-agent is not installed on octo-org\/secret-repo.*Fix: install the app on octo-org.*https:\/\/github.com\/apps\/cordon-agent\/installations\/new/,
    );
    const otherOwner = await j.run('github-token', 'main', {
      inputs: inputs(s, { owner: 'someone-else', repositories: '*' }),
    });
    expect(errorOf(otherOwner)).toMatch(/not installed on someone-else/);
    expect(s.count('GET', '/orgs/someone-else/installation')).toBe(1);
    expect(s.count('GET', '/users/someone-else/installation')).toBe(1);
  });

  test('a permission the app was never granted fails with 422 explained', async () => {
    const s = await server();
    const j = job();
    const r = await j.run('github-token', 'main', {
      inputs: inputs(s, { 'permission-administration': 'write', 'permission-issues': 'write' }),
    });
    expect(r.code).toBe(1);
    const e = errorOf(r);
    expect(e).toMatch(
      /app cordon-agent was never granted administration: write \(installation has none\), issues: write \(installation has read\)/,
    );
    expect(e).toMatch(/GitHub answered 422: The permissions requested are not granted to this installation/);
    expect(s.tokens).toHaveLength(0);
  });

  test('a repository outside the installation fails with 422 explained; * takes every repository installed', async () => {
    const s = await server();
    const j = job();
    const r = await j.run('github-token', 'main', {
      inputs: inputs(s, { repositories: 'octo-repo, private-repo' }),
    });
    expect(r.code).toBe(1);
    expect(errorOf(r)).toMatch(
      /installation 777 of app cordon-agent cannot reach every repository asked for \(octo-repo, private-repo\).*GitHub answered 422: There is at least one repository/,
    );
    expect(s.tokens).toHaveLength(0);

    const all = await j.run('github-token', 'main', {
      inputs: inputs(s, { repositories: '*', 'configure-git': 'false' }),
    });
    expect(errorOf(all)).toBe('');
    expect(s.count('GET', '/orgs/octo-org/installation')).toBe(1);
    expect(s.tokens[0].repositories).toEqual(['octo-repo', 'docs']);
    expect(ledger(j).find((e) => e.type === 'token.issued')?.data.repositories).toEqual([
      'octo-org/octo-repo',
      'octo-org/docs',
    ]);
  });

  test('post after a failed main has nothing to revoke and does not fail', async () => {
    const j = job();
    const post = await j.run('github-token', 'post', { state: {} });
    expect(post.code).toBe(0);
    expect(post.stdout).toMatch(/no token was issued; nothing to revoke/);
  });

  test('a runner clock far off is corrected from GitHub Date header, and fails with a fix when it cannot be', async () => {
    const behind = await server({ clockOffsetS: -1200 });
    const j = job();
    const ok = await j.run('github-token', 'main', { inputs: inputs(behind) });
    expect(errorOf(ok)).toBe('');
    expect(ok.code).toBe(0);
    expect(
      ok.commands.some(
        (c) => c.command === 'warning' && /clock is -1(199|200|201)s from this runner's/.test(c.message),
      ),
    ).toBe(true);
    expect(behind.count('GET', '/app')).toBe(2);

    const ahead = await server({ clockOffsetS: 1200 });
    const ok2 = await j.run('github-token', 'main', { inputs: inputs(ahead) });
    expect(errorOf(ok2)).toBe('');
    expect(ahead.calls.slice(0, 2).map((c) => c.status)).toEqual([401, 200]);

    const noDate = await server({ clockOffsetS: -1200, sendDate: false });
    const bad = await j.run('github-token', 'main', { inputs: inputs(noDate) });
    expect(bad.code).toBe(1);
    expect(errorOf(bad)).toMatch(
      /GitHub refused the app JWT's times \('Issued at' claim.*Fix: sync the runner's clock/,
    );
  });

  test('a small clock skew is absorbed without a second JWT', async () => {
    const s = await server({ clockOffsetS: -45 });
    const j = job();
    const r = await j.run('github-token', 'main', { inputs: inputs(s) });
    expect(r.code).toBe(0);
    expect(s.count('GET', '/app')).toBe(1);
  });

  test('retries 5xx and a secondary rate limit, waiting as long as retry-after says', async () => {
    const s = await server();
    const j = job();
    s.rateLimitNext(1, 2);
    s.failNext(502, 1);
    const started = Date.now();
    const r = await j.run('github-token', 'main', { inputs: inputs(s) });
    expect(errorOf(r)).toBe('');
    expect(r.code).toBe(0);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2000);
    expect(s.calls.slice(0, 3).map((c) => `${c.path} ${c.status}`)).toEqual([
      '/app 403',
      '/app 502',
      '/app 200',
    ]);
    expect(r.stdout).toMatch(/secondary rate limit.*retrying in 2\.0s/);
  });

  test('a token wider than asked is revoked at once and fails the step', async () => {
    const s = await server({ overGrant: { administration: 'write' } });
    const j = job();
    const r = await j.run('github-token', 'main', { inputs: inputs(s) });
    expect(r.code).toBe(1);
    expect(errorOf(r)).toMatch(
      /GitHub granted more than was asked: administration: write \(not asked\).*revoked at once/,
    );
    expect(s.tokens[0].revoked).toBe(true);
    expect(r.outputs.token).toBeUndefined();
    expect(ledger(j).some((e) => e.type === 'token.issued')).toBe(false);
    expect(everythingPrinted(j, [r])).not.toContain(s.tokens[0].token);
  });

  test('a token reaching a repository not asked for is revoked at once and fails the step', async () => {
    const s = await server({ overGrantRepositories: ['docs'] });
    const j = job();
    const r = await j.run('github-token', 'main', { inputs: inputs(s) });
    expect(r.code).toBe(1);
    expect(errorOf(r)).toMatch(
      /GitHub granted more than was asked: repository docs \(not asked\).*revoked at once/,
    );
    expect(s.tokens[0].repositories).toContain('docs');
    expect(s.tokens[0].revoked).toBe(true);
    expect(r.outputs.token).toBeUndefined();
    expect(ledger(j).some((e) => e.type === 'token.issued')).toBe(false);
    expect(everythingPrinted(j, [r])).not.toContain(s.tokens[0].token);
  });

  test('a failed revoke warns, records the failure, and the summary says so', async () => {
    const s = await server();
    const j = job();
    const start = await j.run('start', 'main');
    expect(start.code).toBe(0);
    const main = await j.run('github-token', 'main', { inputs: inputs(s) });
    expect(main.code).toBe(0);
    s.breakRevoke(500);
    const post = await j.run('github-token', 'post', { state: main.state });
    expect(post.code).toBe(0);
    expect(post.commands.some((c) => c.command === 'warning' && /may still be valid/.test(c.message))).toBe(
      true,
    );
    expect(s.tokens[0].revoked).toBe(false);
    const revoked = ledger(j).find((e) => e.type === 'token.revoked');
    expect(revoked?.data).toMatchObject({ status: 'failed', confirmStatus: 200 });
    const end = await j.run('start', 'post', { state: start.state });
    expect(end.summary).toMatch(/GitHub token revocation FAILED/);
    expect(end.summary).toContain(`${SLUG}\\[bot\\]`);
    expect(everythingPrinted(j, [start, main, post, end])).not.toContain(s.tokens[0].token);
  }, 120000);

  test('a revoke answered 204 that leaves the token working is recorded as failed: only the confirming 401 counts', async () => {
    const s = await server();
    const j = job();
    const start = await j.run('start', 'main');
    const main = await j.run('github-token', 'main', { inputs: inputs(s) });
    expect(main.code).toBe(0);
    s.breakRevoke(204);
    const post = await j.run('github-token', 'post', { state: main.state });
    expect(post.code).toBe(0);
    expect(s.count('DELETE', '/installation/token')).toBe(1);
    expect(s.tokens[0].revoked).toBe(false);
    expect(ledger(j).find((e) => e.type === 'token.revoked')?.data).toMatchObject({
      status: 'failed',
      confirmStatus: 200,
    });
    expect(post.commands.some((c) => c.command === 'warning' && /may still be valid/.test(c.message))).toBe(
      true,
    );
    const end = await j.run('start', 'post', { state: start.state });
    expect(end.summary).toMatch(/GitHub token revocation FAILED/);
  }, 120000);

  test('skip-token-revoke leaves the token alive and records why', async () => {
    const s = await server();
    const j = job();
    const main = await j.run('github-token', 'main', { inputs: inputs(s, { 'skip-token-revoke': 'true' }) });
    const post = await j.run('github-token', 'post', { state: main.state });
    expect(post.code).toBe(0);
    expect(s.count('DELETE', '/installation/token')).toBe(0);
    expect(ledger(j).find((e) => e.type === 'token.revoked')?.data).toMatchObject({ status: 'skipped' });
  });
});

describe('github-token: its post checks the line its main wrote', () => {
  test('hostile: a later step removes token.issued and rechains every line after it: the post records the tampering, start says altered', async () => {
    const s = await server();
    const j = job();
    const start = await j.run('start', 'main');
    const main = await j.run('github-token', 'main', { inputs: inputs(s) });
    expect(main.code).toBe(0);
    expect(ledger(j).map((e) => e.type)).toContain('token.issued');
    // An agent step that is not actions/run, as the runner user: it can hash, so what it
    // leaves chains from the nonce (line 1 keeps its prev) and start's own line is intact.
    const rechain = `
      const fs = require("fs"), c = require("crypto");
      const f = process.env.RUNNER_TEMP + "/cordon/ledger.jsonl";
      const kept = fs.readFileSync(f, "utf8").split("\\n").filter(Boolean)
        .map((l) => JSON.parse(l)).filter((e) => e.type !== "token.issued");
      let prev = kept[0].prev, out = "";
      for (const e of kept) { e.prev = prev; const line = JSON.stringify(e); out += line + "\\n";
        prev = c.createHash("sha256").update(line).digest("hex"); }
      fs.writeFileSync(f, out);`;
    execFileSync('node', ['-e', rechain], { env: { PATH: process.env.PATH, RUNNER_TEMP: j.runnerTemp } });
    expect(ledger(j).map((e) => e.type)).not.toContain('token.issued');

    const post = await j.run('github-token', 'post', { state: main.state });
    expect(post.code).toBe(0);
    expect(s.tokens[0].revoked).toBe(true);
    const tampered = ledger(j).find((e) => e.type === 'ledger.tampered');
    expect(tampered?.data).toMatchObject({ by: 'github-token post' });
    expect(String(tampered?.data.details)).toContain(
      'the last line github-token wrote is no longer in the ledger',
    );
    expect(post.commands.some((c) => c.command === 'warning' && /ledger was altered/.test(c.message))).toBe(
      true,
    );

    const end = await j.run('start', 'post', { state: start.state });
    expect(end.code).toBe(1);
    expect(end.summary).toContain('RECORD ALTERED');
    expect(end.summary).toContain('no longer in the ledger');
    expect(everythingPrinted(j, [start, main, post, end])).not.toContain(s.tokens[0].token);
  }, 120000);
});

describe('github-token: the App’s private key in a successful run', () => {
  test('hostile: the key, whole, line by line, on one line or as base64, is in no output, log, state, ledger, summary or attribution.json', async () => {
    const s = await server();
    const j = job();
    const pem = key.pkcs8;
    const start = await j.run('start', 'main');
    // Given as a workflow secret often is: on one line with escaped \n.
    const main = await j.run('github-token', 'main', {
      inputs: inputs(s, { 'private-key': pem.trim().replace(/\n/g, '\\n') }),
    });
    expect(errorOf(main)).toBe('');
    expect(main.code).toBe(0);
    const post = await j.run('github-token', 'post', { state: main.state });
    expect(post.code).toBe(0);
    const report = await j.run('report', 'main');
    expect(report.code).toBe(0);
    const end = await j.run('start', 'post', { state: start.state });
    expect(end.code).toBe(0);
    expect(end.summary).toContain('| GitHub App bot | cordon-agent\\[bot\\] |');

    const body = pem.split('\n').filter((l) => l && !l.startsWith('-----'));
    const forms = [
      pem.trim(),
      pem.trim().replace(/\n/g, '\\n'),
      Buffer.from(pem).toString('base64').slice(0, 40),
      body.join('').slice(0, 40),
      ...body.filter((l) => l.length >= 16),
    ];
    const steps = [start, main, post, report, end];
    const all = [
      everythingPrinted(j, steps),
      ...steps.flatMap((r) => [JSON.stringify(r.outputs), JSON.stringify(r.state)]),
      readFileSync(report.outputs['attribution-path'], 'utf8'),
    ].join('\n');
    expect(all).toContain('"type":"token.issued"');
    expect(forms.length).toBeGreaterThan(10);
    // By index: the message must not print the key either.
    forms.forEach((f, i) => {
      if (all.includes(f)) throw new Error(`form ${i} of the private key was found`);
    });
    expect(all).not.toContain('PRIVATE KEY');
  }, 120000);
});
