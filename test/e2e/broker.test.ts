/**
 * The credential broker as `actions/run` starts it: dist/broker/main.js as a detached
 * process, against the moto server, the loopback OIDC issuer and the loopback GitHub API.
 * The command is a real boto3 process and a real `git credential fill`.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { allFiles } from '../harness/files.js';
import { join } from 'node:path';
import { parseAwsSessionInputs, type AwsSessionInputs } from '../../src/aws/inputs.js';
import { Inputs } from '../../src/platform/inputs.js';
import { Ledger, ledgerPath, type LedgerEvent } from '../../src/ledger/ledger.js';
import { startFaultProxy, type FaultProxy } from '../../src/devkit/fault-proxy.js';
import { makeAppKey, startGithubApi, type GithubApiServer } from '../../src/devkit/github-api.js';
import { motoAvailable, startMoto, type Moto } from '../../src/devkit/moto.js';
import { startOidcIssuer, type OidcIssuer } from '../../src/devkit/oidc-issuer.js';
import { Job, REPO_ROOT } from '../../src/devkit/run-action.js';
import { parseGithubTokenInputs, type GithubTokenInputs } from '../../src/github/inputs.js';
import { startBroker, type StartBrokerConfig, type StartedBroker } from '../../src/broker/start.js';

const ROLE = 'arn:aws:iam::111122223333:role/cordon-agent';
const BROKER = join(REPO_ROOT, 'dist', 'broker', 'main.js');
/**
 * The most refresh-before-seconds a 900 s role accepts (checkRefreshBefore). The stand-ins
 * hand out credentials that live 839 s (STS through `shortSts`) and tokens that live 839 s
 * (the GitHub API), never fresher than that: under it, every request refreshes, for real.
 */
const REFRESH_EVERY_TIME = 840;
const SHORT_LIFETIME_S = 839;
const available = motoAvailable();
if (!available && process.env.CI === 'true')
  throw new Error('moto_server is not on PATH; CI must provide it (.ci/run checks)');
if (!available) console.log('broker e2e skipped: moto_server is not on PATH and CI is unset');
const maybe = available ? describe : describe.skip;

let moto: Moto;
/** STS through a proxy that gives credentials SHORT_LIFETIME_S: point a job at it with `shortSts.env`. */
let shortSts: FaultProxy;
let issuer: OidcIssuer;
let github: GithubApiServer;
let key: ReturnType<typeof makeAppKey>;
const jobs: Job[] = [];
const brokers: StartedBroker[] = [];

beforeAll(async () => {
  if (!available) return;
  key = makeAppKey();
  [moto, issuer, github] = await Promise.all([
    startMoto(),
    startOidcIssuer(),
    startGithubApi({
      appId: 424242,
      slug: 'cordon-agent',
      botId: 9100001,
      publicKey: key.publicKey,
      tokenLifetimeS: SHORT_LIFETIME_S,
      installations: [
        {
          id: 777,
          account: 'octo-org',
          repositories: ['octo-repo', 'docs'],
          permissions: { contents: 'write', pull_requests: 'write', metadata: 'read' },
        },
      ],
    }),
  ]);
  shortSts = await startFaultProxy(moto.endpoint, { lifetimeS: SHORT_LIFETIME_S });
}, 60000);

afterEach(async () => {
  for (const b of brokers.splice(0)) await b.stop().catch(() => undefined);
  for (const j of jobs.splice(0)) rmSync(j.root, { recursive: true, force: true });
});

afterAll(async () => {
  await Promise.all([shortSts?.close(), moto?.stop(), issuer?.close(), github?.close()]);
});

/** The step's environment: the runner's, with the ID-token pair, steered at moto. */
function job(): Job {
  const j = new Job({
    env: {
      ...issuer.env,
      AWS_ENDPOINT_URL: moto.endpoint,
      GITHUB_API_URL: github.url,
      GIT_CONFIG_NOSYSTEM: '1',
    },
  });
  jobs.push(j);
  return j;
}

function awsInputs(j: Job): AwsSessionInputs {
  const env = { ...j.env, 'INPUT_AWS-ROLE-TO-ASSUME': ROLE, 'INPUT_AWS-REGION': 'eu-west-1' };
  return parseAwsSessionInputs(new Inputs('run', env), { prefix: 'aws-' }) as AwsSessionInputs;
}

function githubInputs(j: Job): GithubTokenInputs {
  return parseGithubTokenInputs({
    ...j.env,
    'INPUT_APP-ID': '424242',
    'INPUT_PRIVATE-KEY': key.pkcs1,
    'INPUT_PERMISSION-CONTENTS': 'write',
    'INPUT_GITHUB-API-URL': github.url,
  });
}

async function broker(
  j: Job,
  cfg: Partial<StartBrokerConfig>,
  deps: { onSecret?: (v: string) => void } = {},
): Promise<StartedBroker> {
  const b = await startBroker({ action: 'run', env: j.env, ...cfg }, { brokerScript: BROKER, ...deps });
  brokers.push(b);
  return b;
}

/** The agent's command environment: the step's, minus what the broker says to drop, plus its own. */
function commandEnv(j: Job, b: StartedBroker): Record<string, string> {
  const env: Record<string, string> = { ...j.env };
  for (const k of b.unset) delete env[k];
  return { ...env, ...b.env };
}

function events(j: Job, type: string): LedgerEvent[] {
  return new Ledger(ledgerPath(j.env), { action: 'test' }).events().filter((e) => e.type === type);
}

/** Polls (bounded) until `n` events of `type` are in the ledger: issuances are recorded after the answer. */
async function waitEvents(j: Job, type: string, n: number): Promise<LedgerEvent[]> {
  for (let i = 0; i < 200; i++) {
    const e = events(j, type);
    if (e.length >= n) return e;
    await new Promise((r) => setTimeout(r, 30));
  }
  return events(j, type);
}

const BOTO = `
import boto3, json
out = []
for _ in range(2):
    s = boto3.session.Session()
    ident = s.client('sts').get_caller_identity()
    out.append({'arn': ident['Arn'], 'key': s.get_credentials().get_frozen_credentials().access_key, 'method': s.get_credentials().method})
print(json.dumps(out))
`;

/**
 * Runs a command without blocking this process: the OIDC issuer and the GitHub API the
 * broker calls live in it.
 */
function run(
  cmd: string,
  args: string[],
  opts: { env: Record<string, string | undefined>; input?: string; timeoutMs?: number; cwd?: string },
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: opts.env as NodeJS.ProcessEnv,
      cwd: opts.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

function get(url: string, auth?: string): Promise<Response> {
  return fetch(url, { headers: auth === undefined ? {} : { authorization: auth } });
}

maybe('credential broker', () => {
  test('boto3 with only the container-credentials variables gets two different keys across a forced refresh', async () => {
    const j = job();
    // Credentials that live 839 s under refresh-before 840: every request is a new exchange.
    Object.assign(j.env, shortSts.env);
    const b = await broker(j, {
      aws: awsInputs(j),
      refreshBeforeSeconds: REFRESH_EVERY_TIME,
      refreshWaitMs: 30000,
    });
    const env = commandEnv(j, b);
    const onlyContainer = {
      PATH: env.PATH,
      HOME: j.home,
      AWS_CONTAINER_CREDENTIALS_FULL_URI: env.AWS_CONTAINER_CREDENTIALS_FULL_URI,
      AWS_CONTAINER_AUTHORIZATION_TOKEN: env.AWS_CONTAINER_AUTHORIZATION_TOKEN,
      AWS_REGION: env.AWS_REGION,
      AWS_DEFAULT_REGION: env.AWS_DEFAULT_REGION,
      AWS_ENDPOINT_URL: moto.endpoint,
    };
    expect(onlyContainer.AWS_CONTAINER_CREDENTIALS_FULL_URI).toBe(`${b.url}/aws/credentials`);
    const r = await run('python3', ['-c', BOTO], { env: onlyContainer });
    expect(r.stderr).toBe('');
    const calls = JSON.parse(r.stdout) as { arn: string; key: string; method: string }[];
    expect(calls).toHaveLength(2);
    expect(calls[0].method).toBe('container-role');
    for (const c of calls)
      expect(c.arn).toBe('arn:aws:sts::111122223333:assumed-role/cordon-agent/cordon-4242-1-agent');
    expect(calls[0].key).not.toBe(calls[1].key);

    // The start's own issuance, then one per boto3 session (each fetches at least once).
    const refreshed = await waitEvents(j, 'credentials.refreshed', 3);
    expect(refreshed.length).toBeGreaterThanOrEqual(3);
    expect(refreshed[0].data).toMatchObject({
      role: ROLE,
      reason: 'start',
      issuance: 1,
      durationSeconds: 900,
    });
    expect(refreshed[1].data).toMatchObject({ reason: 'expiring', issuance: 2 });
    // Best effort, but on Linux the requester is found: the python process.
    const requesters = refreshed
      .slice(1)
      .map((e) => (e.data.requester as { comm?: string } | undefined)?.comm);
    expect(requesters.some((c) => /python/.test(c ?? ''))).toBe(true);
    const report = await b.stop();
    // boto3 refreshes credentials that live under 15 minutes on its own calls, so how many
    // exchanges there were depends on its timing; the ledger, read once the broker stopped
    // (every line it wrote flushed), and its report must agree on the count.
    expect(report.awsRefreshes).toBe(events(j, 'credentials.refreshed').length);
    expect(report.awsRefreshes).toBeGreaterThanOrEqual(refreshed.length);
    expect(report.unauthorized).toBe(0);
    expect(report.handedOutValidUntil).toBeDefined();
  }, 90000);

  test('the AWS SDK for JavaScript (default chain) uses the broker with only the container variables', async () => {
    const j = job();
    Object.assign(j.env, shortSts.env);
    const b = await broker(j, {
      aws: awsInputs(j),
      refreshBeforeSeconds: REFRESH_EVERY_TIME,
      refreshWaitMs: 30000,
    });
    const script = [
      "import { STSClient, GetCallerIdentityCommand } from '@aws-sdk/client-sts';",
      'const out = [];',
      'for (let i = 0; i < 2; i++) {',
      '  const c = new STSClient({});',
      '  const id = await c.send(new GetCallerIdentityCommand({}));',
      '  out.push({ arn: id.Arn, key: (await c.config.credentials()).accessKeyId });',
      '}',
      'console.log(JSON.stringify(out));',
    ].join('\n');
    const r = await run(process.execPath, ['--input-type=module', '-e', script], {
      cwd: REPO_ROOT,
      env: {
        PATH: j.env.PATH,
        HOME: j.home,
        AWS_CONTAINER_CREDENTIALS_FULL_URI: b.env.AWS_CONTAINER_CREDENTIALS_FULL_URI,
        AWS_CONTAINER_AUTHORIZATION_TOKEN: b.env.AWS_CONTAINER_AUTHORIZATION_TOKEN,
        AWS_REGION: b.env.AWS_REGION,
        AWS_ENDPOINT_URL: moto.endpoint,
      },
    });
    // The SDK prints a Node version warning on stderr; the exit code and output tell.
    if (r.code !== 0) throw new Error(r.stderr);
    const calls = JSON.parse(r.stdout) as { arn: string; key: string }[];
    for (const c of calls)
      expect(c.arn).toBe('arn:aws:sts::111122223333:assumed-role/cordon-agent/cordon-4242-1-agent');
    expect(calls[0].key).not.toBe(calls[1].key);
  }, 60000);

  test('the gh wrapper runs the real gh with a current token; SIGTERM still revokes everything', async () => {
    const j = job();
    const b = await broker(j, { github: githubInputs(j) });
    const fakeBin = join(j.root, 'fake-gh');
    mkdirSync(fakeBin);
    writeFileSync(join(fakeBin, 'gh'), '#!/bin/sh\necho "args=$* token=$GH_TOKEN"\n', { mode: 0o755 });
    const env = commandEnv(j, b);
    env.PATH = `${b.binDir}:${fakeBin}:${j.env.PATH}`;
    const r = await run('gh', ['pr', 'list'], { env });
    const m = /^args=pr list token=(ghs_\S+)$/.exec(r.stdout.trim());
    expect(m).not.toBeNull();
    const repos = (t: string): Promise<Response> =>
      fetch(`${github.url}/installation/repositories`, { headers: { authorization: `token ${t}` } });
    expect((await repos(m![1])).status).toBe(200);
    // Killed by a signal (the agent can send one), it still stops the same way.
    process.kill(b.pid, 'SIGTERM');
    await waitEvents(j, 'broker.stopped', 1);
    const report = await b.stop();
    expect(report).toMatchObject({ reason: 'signal', port: b.port, revocations: { revoked: 1, failed: 0 } });
    expect((await repos(m![1])).status).toBe(401);
  }, 60000);

  test('a slow STS answers with the still-valid credentials within the SDK timeouts; the refresh lands later', async () => {
    const j = job();
    // The start's exchange goes straight through; the next is held 2.5 s. Its credentials
    // live 839 s, under refresh-before 840: the first request asks for a refresh.
    const proxy = await startFaultProxy(moto.endpoint, {
      plan: [undefined, { kind: 'delay', ms: 2500 }],
      lifetimeS: SHORT_LIFETIME_S,
    });
    try {
      j.env.AWS_ENDPOINT_URL_STS = proxy.url;
      const b = await broker(j, { aws: awsInputs(j), refreshBeforeSeconds: REFRESH_EVERY_TIME });
      const t0 = Date.now();
      const res = await get(
        b.env.AWS_CONTAINER_CREDENTIALS_FULL_URI,
        b.env.AWS_CONTAINER_AUTHORIZATION_TOKEN,
      );
      const waited = Date.now() - t0;
      expect(res.status).toBe(200);
      // The 800 ms wait, not the 2.5 s exchange (a margin for this shared machine's load).
      expect(waited).toBeLessThan(1500);
      expect(waited).toBeGreaterThanOrEqual(750);
      const first = (await res.json()) as { Expiration: string };
      const refreshed = await waitEvents(j, 'credentials.refreshed', 2);
      expect(first.Expiration).toBe(refreshed[0].data.expiration);
      expect(refreshed[1].data).toMatchObject({ issuance: 2, reason: 'expiring' });
    } finally {
      await proxy.close();
    }
  }, 60000);

  test('cached credentials come back unchanged and add no ledger event', async () => {
    const j = job();
    const b = await broker(j, { aws: awsInputs(j) });
    const auth = b.env.AWS_CONTAINER_AUTHORIZATION_TOKEN;
    const first = (await (await get(b.env.AWS_CONTAINER_CREDENTIALS_FULL_URI, auth)).json()) as Record<
      string,
      string
    >;
    const second = (await (await get(b.env.AWS_CONTAINER_CREDENTIALS_FULL_URI, auth)).json()) as Record<
      string,
      string
    >;
    expect(Object.keys(first).sort()).toEqual(['AccessKeyId', 'Expiration', 'SecretAccessKey', 'Token']);
    expect(second).toEqual(first);
    expect(Date.parse(first.Expiration)).toBeGreaterThan(Date.now() + 800_000);
    expect(events(j, 'credentials.refreshed')).toHaveLength(1);
  }, 60000);

  test('no or a wrong bearer token gets 401, counted in broker.stopped', async () => {
    const j = job();
    const b = await broker(j, { aws: awsInputs(j) });
    const url = b.env.AWS_CONTAINER_CREDENTIALS_FULL_URI;
    const token = b.env.AWS_CONTAINER_AUTHORIZATION_TOKEN;
    expect((await get(url)).status).toBe(401);
    expect((await get(url, 'wrong')).status).toBe(401);
    expect((await get(url, token.slice(0, -1) + (token.endsWith('a') ? 'b' : 'a'))).status).toBe(401);
    expect((await get(url, `${token}x`)).status).toBe(401);
    // The command's token does not stop the broker.
    expect(
      (await fetch(`${b.url}/control/stop`, { method: 'POST', headers: { authorization: token } })).status,
    ).toBe(401);
    expect((await get(url, token)).status).toBe(200);
    expect((await get(url, `Bearer ${token}`)).status).toBe(200);
    const report = await b.stop();
    expect(report).toMatchObject({ reason: 'stop', requests: 6, unauthorized: 5 });
    expect(events(j, 'broker.stopped').at(-1)?.data).toMatchObject({ requests: 6, unauthorized: 5 });
  }, 60000);

  test('refuses to bind anything but loopback, in the parent and in the broker process', async () => {
    const j = job();
    for (const bind of ['0.0.0.0', '::', '10.0.0.1', 'localhost', '']) {
      await expect(
        startBroker({ action: 'run', env: j.env, aws: awsInputs(j), bind }, { brokerScript: BROKER }),
      ).rejects.toThrow(/refused to bind .* loopback address/);
    }
    // The process checks again, whatever it is sent.
    const config = JSON.stringify({
      v: 1,
      bind: '0.0.0.0',
      bearer: 'a'.repeat(64),
      controlToken: 'b'.repeat(64),
      ledgerPath: ledgerPath(j.env),
      action: 'run',
      refreshBeforeSeconds: 300,
      maxLifetimeSeconds: 60,
      aws: { idTokenRequestUrl: 'http://127.0.0.1:9/x', idTokenRequestToken: 'x'.repeat(40) },
    });
    const r = spawnSync(process.execPath, [BROKER], { input: config, encoding: 'utf8', timeout: 20000 });
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/^ERROR .*refused to bind \\"0\.0\.0\.0\\"/);
  }, 60000);

  test('git credential fill through the helper returns a token the API accepts, a fresh one after a forced refresh, and every token is dead after stop', async () => {
    const j = job();
    // Tokens that live 839 s under refresh-before 840: every request mints a new one.
    const masked: string[] = [];
    const b = await broker(
      j,
      { github: githubInputs(j), refreshBeforeSeconds: REFRESH_EVERY_TIME, refreshWaitMs: 30000 },
      { onSecret: (v) => masked.push(v) },
    );
    expect(b.gitConfigPath).toBeDefined();
    const env = commandEnv(j, b);
    const fill = async (): Promise<{ username: string; password: string }> => {
      const { stdout: out } = await run('git', ['credential', 'fill'], {
        input: 'protocol=https\nhost=github.com\n\n',
        env: { ...env, GIT_TERMINAL_PROMPT: '0' },
      });
      const kv = Object.fromEntries(
        out
          .trim()
          .split('\n')
          .map((l) => l.split('=', 2) as [string, string]),
      );
      return { username: kv.username, password: kv.password };
    };
    const one = await fill();
    expect(one.username).toBe('x-access-token');
    expect(one.password).toMatch(/^ghs_/);
    const repos = (t: string): Promise<Response> =>
      fetch(`${github.url}/installation/repositories`, { headers: { authorization: `token ${t}` } });
    expect((await repos(one.password)).status).toBe(200);
    const two = await fill();
    expect(two.password).not.toBe(one.password);
    expect((await repos(two.password)).status).toBe(200);
    // The gh path: cordon-gh-token prints a current token too.
    const gh = (await run(join(b.binDir, 'cordon-gh-token'), [], { env })).stdout.trim();
    expect(gh).toMatch(/^ghs_/);

    // Every token minted after start reached the parent to be masked.
    for (let i = 0; i < 100 && !masked.includes(gh); i++) await new Promise((r) => setTimeout(r, 20));
    for (const t of [one.password, two.password, gh]) expect(masked).toContain(t);
    const minted = await waitEvents(j, 'token.refreshed', 4);
    expect(minted.map((e) => e.data.issuance)).toEqual([1, 2, 3, 4]);
    expect(minted[1].data).toMatchObject({
      installationId: 777,
      repositories: ['octo-org/octo-repo'],
      permissions: { contents: 'write', metadata: 'read' },
      reason: 'expiring',
    });
    const report = await b.stop();
    expect(report.tokenRefreshes).toBe(4);
    expect(report.revocations).toEqual({ revoked: 4, failed: 0, skipped: 0 });
    for (const t of [one.password, two.password, gh]) expect((await repos(t)).status).toBe(401);
    expect(github.tokens.filter((t) => !t.revoked)).toHaveLength(0);
    // The port is closed and the process gone.
    await expect(get(`${b.url}/github/token`, b.env.CORDON_BROKER_TOKEN)).rejects.toThrow();
    expect(() => process.kill(b.pid, 0)).toThrow();
  }, 90000);

  test('the ID-token request token and the app key reach no environment, file, ledger or log the command can read', async () => {
    const j = job();
    Object.assign(j.env, shortSts.env);
    const b = await broker(j, {
      aws: awsInputs(j),
      github: githubInputs(j),
      refreshBeforeSeconds: REFRESH_EVERY_TIME,
      refreshWaitMs: 30000,
    });
    const env = commandEnv(j, b);
    const needles = [
      issuer.requestToken,
      // One line of the key's body is enough to tell it.
      key.pkcs1.split('\n')[5],
      key.pkcs8.split('\n')[5],
    ];
    const child = spawn('sleep', ['30'], { env, stdio: 'ignore' });
    try {
      // Exercise both paths so refreshes, logs and events happen.
      expect(
        (await get(env.AWS_CONTAINER_CREDENTIALS_FULL_URI, env.AWS_CONTAINER_AUTHORIZATION_TOKEN)).status,
      ).toBe(200);
      const filled = await run('git', ['credential', 'fill'], {
        input: 'protocol=https\nhost=github.com\n\n',
        env,
      });
      expect(filled.stdout).toContain('password=ghs_');
      // Under the normal rule, both refreshed past their start issuance.
      expect((await waitEvents(j, 'token.refreshed', 2)).length).toBeGreaterThanOrEqual(2);
      expect((await waitEvents(j, 'credentials.refreshed', 2)).length).toBeGreaterThanOrEqual(2);
      const haystacks: [string, string][] = [
        ['command env', JSON.stringify(env)],
        [`/proc/${child.pid}/environ`, readFileSync(`/proc/${child.pid}/environ`, 'latin1')],
        [`/proc/${b.pid}/environ (broker)`, readFileSync(`/proc/${b.pid}/environ`, 'latin1')],
        [`/proc/${b.pid}/cmdline (broker)`, readFileSync(`/proc/${b.pid}/cmdline`, 'latin1')],
      ];
      await b.stop();
      for (const f of allFiles(j.root)) haystacks.push([f, readFileSync(f, 'latin1')]);
      expect(haystacks.some(([name]) => name.endsWith('ledger.jsonl'))).toBe(true);
      expect(haystacks.some(([name]) => name.endsWith('broker.log'))).toBe(true);
      expect(haystacks.some(([name]) => name.endsWith('gitconfig'))).toBe(true);
      for (const [name, text] of haystacks)
        for (const n of needles) expect({ name, leaked: text.includes(n) }).toEqual({ name, leaked: false });
      // The command's environment has no static keys and no ID-token variables.
      for (const k of [
        'AWS_ACCESS_KEY_ID',
        'AWS_SECRET_ACCESS_KEY',
        'AWS_SESSION_TOKEN',
        'ACTIONS_ID_TOKEN_REQUEST_URL',
        'ACTIONS_ID_TOKEN_REQUEST_TOKEN',
      ])
        expect(env[k]).toBeUndefined();
    } finally {
      child.kill('SIGKILL');
    }
  }, 90000);

  test('a wrong app fails the start with the reason and never the key', async () => {
    const j = job();
    const inputs = { ...githubInputs(j), issuer: '999' };
    const err = await startBroker(
      { action: 'run', env: j.env, github: inputs },
      { brokerScript: BROKER },
    ).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(
      /credential broker did not start .*does not accept the app JWT for app-id 999/,
    );
    expect(err?.message).not.toContain(key.pkcs1.split('\n')[5]);
    const log = readFileSync(
      allFiles(j.root).find((f) => f.endsWith('broker.log'))!,
      'utf8',
    );
    expect(log).not.toContain(key.pkcs1.split('\n')[5]);
  }, 60000);

  test('the broker stops on its own when its parent exits and when its lifetime is up', async () => {
    const j = job();
    const parent = spawn('sleep', ['1'], { stdio: 'ignore' });
    const base = {
      v: 1,
      bind: '127.0.0.1',
      bearer: 'e'.repeat(64),
      controlToken: 'f'.repeat(64),
      ledgerPath: ledgerPath(j.env),
      action: 'run',
      refreshBeforeSeconds: 300,
      github: { ...githubInputs(j) },
    };
    const start = (over: Record<string, unknown>): Promise<number> =>
      new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [BROKER], {
          stdio: ['pipe', 'pipe', 'ignore'],
          env: { PATH: j.env.PATH },
        });
        child.stdout.once('data', (d: Buffer) =>
          /^READY /.test(d.toString()) ? resolve(child.pid!) : reject(new Error(d.toString())),
        );
        child.stdin.end(JSON.stringify({ ...base, ...over }));
      });
    const [orphan, shortLived] = await Promise.all([
      start({ maxLifetimeSeconds: 600, parentPid: parent.pid }),
      start({ maxLifetimeSeconds: 2 }),
    ]);
    const stopped = await (async () => {
      for (let i = 0; i < 100; i++) {
        const e = events(j, 'broker.stopped');
        if (e.length >= 2) return e;
        await new Promise((r) => setTimeout(r, 100));
      }
      return events(j, 'broker.stopped');
    })();
    expect(stopped.map((e) => e.data.reason).sort()).toEqual(['lifetime', 'parent-exited']);
    for (const e of stopped) expect(e.data.revocations).toEqual({ revoked: 1, failed: 0, skipped: 0 });
    await new Promise((r) => setTimeout(r, 500));
    for (const pid of [orphan, shortLived]) expect(() => process.kill(pid, 0)).toThrow();
  }, 60000);
});
