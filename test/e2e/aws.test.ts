/**
 * Whole-program runs of dist/aws/{main,post}.js through the harness, against the moto server
 * behind the fault proxy and the loopback OIDC issuer: every export mode, masking order, the
 * ledger events, cleanup, retries and every error a user can act on.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseLedgerText } from '../../src/ledger/ledger.js';
import { startFaultProxy, STS_FAULTS, type FaultProxy } from '../../src/devkit/fault-proxy.js';
import { motoAvailable, startMoto, type Moto } from '../../src/devkit/moto.js';
import { startOidcIssuer, type OidcIssuer } from '../../src/devkit/oidc-issuer.js';
import { Job, type StepResult } from '../../src/devkit/run-action.js';

const ROLE = 'arn:aws:iam::111122223333:role/cordon-agent';
const ACCOUNT = '111122223333';

let moto: Moto;
let issuer: OidcIssuer;
let proxy: FaultProxy;

const available = motoAvailable();
if (!available && process.env.CI === 'true')
  throw new Error('moto_server is not on PATH; CI must provide it (.ci/run checks)');
const maybe = available ? describe : describe.skip;
if (!available) console.log('aws e2e skipped: moto_server is not on PATH and CI is unset');

beforeAll(async () => {
  if (!available) return;
  moto = await startMoto();
  issuer = await startOidcIssuer();
  proxy = await startFaultProxy(moto.endpoint);
}, 60000);

afterAll(async () => {
  await proxy?.close();
  await issuer?.close();
  await moto?.stop();
});

function newJob(extra: Record<string, string> = {}): Job {
  return new Job({ env: { ...issuer.env, ...proxy.env, ...extra } });
}

const baseInputs = { 'role-to-assume': ROLE, 'aws-region': 'eu-west-1' };

/** The credentials as STS sent them on the wire (the proxy keeps the last response body). */
function wireSecrets(sinceRequest: number): { accessKeyId: string; secret: string; token: string } {
  const ok = proxy.requests
    .slice(sinceRequest)
    .filter((r) => r.status === 200 && r.response?.includes('<SecretAccessKey>'));
  expect(ok.length).toBe(1);
  const body = ok[0].response ?? '';
  const tag = (t: string): string => new RegExp(`<${t}>([^<]+)</${t}>`).exec(body)?.[1] ?? '';
  return { accessKeyId: tag('AccessKeyId'), secret: tag('SecretAccessKey'), token: tag('SessionToken') };
}

function ledgerEvents(job: Job) {
  const path = join(job.runnerTemp, 'cordon', 'ledger.jsonl');
  return parseLedgerText(existsSync(path) ? readFileSync(path, 'utf8') : '').flatMap((l) =>
    l.event ? [l.event] : [],
  );
}

/**
 * Masks for the credentials (and the account id, when given) come before any other line that
 * is not a mask; the credentials never appear on any other line (the account id may: the
 * runner replaces it, since its mask came first).
 */
function expectMasksFirst(r: StepResult, values: string[], account?: string): void {
  const lines = r.stdout.split('\n');
  for (const v of values) {
    const maskAt = lines.findIndex((l) => l === `::add-mask::${v}`);
    expect(maskAt).toBeGreaterThanOrEqual(0);
    const firstOther = lines.findIndex((l) => !l.startsWith('::add-mask::') && l !== '');
    expect(firstOther === -1 || maskAt < firstOther).toBe(true);
    // No line other than the mask itself carries the value.
    expect(lines.filter((l) => l.includes(v) && !l.startsWith('::add-mask::'))).toEqual([]);
  }
  if (account) {
    expect(lines[0]).toBe(`::add-mask::${account}`);
    const firstUse = lines.findIndex((l) => l.includes(account) && !l.startsWith('::add-mask::'));
    expect(firstUse === -1 || firstUse > 0).toBe(true);
  }
}

/** Every byte a step leaves behind, except the one place the credentials are meant to go. */
function everyOutput(job: Job, results: StepResult[], except: 'env' | 'outputs' | 'none'): string {
  const parts: string[] = [];
  for (const r of results) {
    parts.push(
      r.stdout
        .split('\n')
        .filter((l) => !l.startsWith('::add-mask::'))
        .join('\n'),
      r.stderr,
      JSON.stringify(r.state),
      r.summary,
    );
    if (except !== 'outputs') parts.push(JSON.stringify(r.outputs));
    if (except !== 'env') parts.push(JSON.stringify(r.env));
  }
  const ledger = join(job.runnerTemp, 'cordon', 'ledger.jsonl');
  if (existsSync(ledger)) parts.push(readFileSync(ledger, 'utf8'));
  return parts.join('\n');
}

function expectNoSecrets(text: string, s: { secret: string; token: string; accessKeyId: string }): void {
  for (const v of [s.secret, s.token, s.accessKeyId]) {
    expect(text.includes(v)).toBe(false);
    expect(text.includes(Buffer.from(v).toString('base64'))).toBe(false);
  }
}

/** Calls sts:GetCallerIdentity with boto3 and the step's exported environment, as a later step would. */
function callerIdentity(env: Record<string, string>): { Arn: string; Account: string } {
  const r = spawnSync(
    'python3',
    ['-c', 'import boto3, json; print(json.dumps(boto3.client("sts").get_caller_identity()))'],
    {
      env: { ...env, AWS_ENDPOINT_URL: moto.endpoint, AWS_ENDPOINT_URL_STS: moto.endpoint },
      encoding: 'utf8',
      timeout: 30000,
    },
  );
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}');
}

maybe('actions/aws against moto', () => {
  test('export env: masks first, AWS_* in GITHUB_ENV, outputs, ledger, usable by a later step, nothing leaks', async () => {
    const job = newJob();
    const before = proxy.requests.length;
    const main = await job.run('aws', 'main', {
      inputs: {
        ...baseInputs,
        allow: 's3:GetObject arn:aws:s3:::agent-bucket/*\ns3:ListBucket arn:aws:s3:::agent-bucket',
      },
    });
    expect(main.stderr.replace(/\(node:\d+\) Warning: NodeVersionSupportWarning[\s\S]*/m, '')).toBe('');
    expect(main.code).toBe(0);
    const s = wireSecrets(before);
    expect(main.env.AWS_ACCESS_KEY_ID).toBe(s.accessKeyId);
    expect(main.env.AWS_SECRET_ACCESS_KEY).toBe(s.secret);
    expect(main.env.AWS_SESSION_TOKEN).toBe(s.token);
    expect(main.env.AWS_REGION).toBe('eu-west-1');
    expect(main.env.AWS_DEFAULT_REGION).toBe('eu-west-1');
    expectMasksFirst(main, [s.accessKeyId, s.secret, s.token], ACCOUNT);
    expect(main.outputs['aws-account-id']).toBe(ACCOUNT);
    expect(main.outputs['assumed-role-arn']).toBe(
      `arn:aws:sts::${ACCOUNT}:assumed-role/cordon-agent/cordon-4242-1-agent`,
    );
    expect(main.outputs['session-name']).toBe('cordon-4242-1-agent');
    const ttl = (Date.parse(main.outputs.expiration) - Date.now()) / 1000;
    expect(ttl).toBeGreaterThan(850);
    expect(ttl).toBeLessThanOrEqual(900);
    expect(main.outputs['aws-secret-access-key']).toBeUndefined();

    // What STS was asked for: the session policy, 900 s, the derived session name.
    const req = proxy.requests
      .slice(before)
      .find((r) => r.params.get('Action') === 'AssumeRoleWithWebIdentity');
    expect(req?.params.get('DurationSeconds')).toBe('900');
    expect(req?.params.get('RoleArn')).toBe(ROLE);
    expect(JSON.parse(req?.params.get('Policy') ?? '{}').Statement).toEqual([
      { Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::agent-bucket/*' },
      { Effect: 'Allow', Action: 's3:ListBucket', Resource: 'arn:aws:s3:::agent-bucket' },
    ]);
    expect(issuer.requests.at(-1)).toBe('sts.amazonaws.com');

    const issued = ledgerEvents(job).find((e) => e.type === 'credentials.issued');
    expect(issued?.action).toBe('aws');
    expect(issued?.data).toMatchObject({
      provider: 'aws',
      role: ROLE,
      assumedRoleArn: main.outputs['assumed-role-arn'],
      sessionName: 'cordon-4242-1-agent',
      durationSeconds: 900,
      export: 'env',
      region: 'eu-west-1',
      statements: [
        { effect: 'Allow', actions: ['s3:GetObject'], resources: ['arn:aws:s3:::agent-bucket/*'] },
        { effect: 'Allow', actions: ['s3:ListBucket'], resources: ['arn:aws:s3:::agent-bucket'] },
      ],
      managedPolicies: [],
    });

    expect(callerIdentity(job.env).Arn).toBe(main.outputs['assumed-role-arn']);

    const post = await job.run('aws', 'post', { state: main.state });
    expect(post.code).toBe(0);
    const ended = ledgerEvents(job).find((e) => e.type === 'credentials.ended');
    expect(ended?.data).toMatchObject({ provider: 'aws', role: ROLE, filesRemoved: [] });
    expect((ended?.data as { secondsLeft: number }).secondsLeft).toBeGreaterThan(800);
    expectNoSecrets(everyOutput(job, [main, post], 'env'), s);
  });

  test('export profile: 0600 files a later step can use, AWS_PROFILE set, post deletes them', async () => {
    const job = newJob();
    const before = proxy.requests.length;
    const main = await job.run('aws', 'main', {
      inputs: {
        ...baseInputs,
        export: 'profile',
        'profile-name': 'agent',
        'role-duration-seconds': '1h',
        'mask-aws-account-id': 'false',
      },
    });
    expect(main.code).toBe(0);
    const s = wireSecrets(before);
    expect(main.masks).not.toContain(ACCOUNT);
    expectMasksFirst(main, [s.accessKeyId, s.secret, s.token]);
    const dir = join(job.runnerTemp, 'cordon', 'aws');
    expect(main.env.AWS_CONFIG_FILE).toBe(join(dir, 'config'));
    expect(main.env.AWS_SHARED_CREDENTIALS_FILE).toBe(join(dir, 'credentials'));
    expect(main.env.AWS_PROFILE).toBe('agent');
    expect(main.env.AWS_SECRET_ACCESS_KEY).toBeUndefined();
    for (const f of ['config', 'credentials']) expect(statSync(join(dir, f)).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(readFileSync(join(dir, 'config'), 'utf8')).toBe('[profile agent]\nregion = eu-west-1\n');
    expect(readFileSync(join(dir, 'credentials'), 'utf8')).toBe(
      `[agent]\naws_access_key_id = ${s.accessKeyId}\naws_secret_access_key = ${s.secret}\naws_session_token = ${s.token}\n`,
    );
    expect(
      proxy.requests
        .slice(before)
        .find((r) => r.params.get('Action'))
        ?.params.get('DurationSeconds'),
    ).toBe('3600');
    expect(callerIdentity(job.env).Arn).toBe(main.outputs['assumed-role-arn']);

    const post = await job.run('aws', 'post', { state: main.state });
    expect(post.code).toBe(0);
    expect(existsSync(dir)).toBe(false);
    const ended = ledgerEvents(job).find((e) => e.type === 'credentials.ended');
    expect(ended?.data).toMatchObject({ filesRemoved: [join(dir, 'config'), join(dir, 'credentials')] });
    expect(post.stdout).toContain('removed');
    expectNoSecrets(everyOutput(job, [main, post], 'none'), s);
  });

  test("export profile keeps another step's profile and removes only its own", async () => {
    const job = newJob();
    const a = await job.run('aws', 'main', {
      inputs: { ...baseInputs, export: 'profile', 'profile-name': 'one' },
    });
    const b = await job.run('aws', 'main', {
      inputs: { ...baseInputs, export: 'profile', 'profile-name': 'two' },
    });
    expect([a.code, b.code]).toEqual([0, 0]);
    const creds = join(job.runnerTemp, 'cordon', 'aws', 'credentials');
    expect(readFileSync(creds, 'utf8')).toMatch(/^\[one\][\s\S]*\n\n\[two\]/);
    await job.run('aws', 'post', { state: b.state });
    expect(readFileSync(creds, 'utf8')).toMatch(/^\[one\]\n/);
    expect(readFileSync(creds, 'utf8')).not.toContain('[two]');
    await job.run('aws', 'post', { state: a.state });
    expect(existsSync(creds)).toBe(false);
  });

  test('export outputs: masked step outputs and nothing in GITHUB_ENV', async () => {
    const job = newJob();
    const before = proxy.requests.length;
    const main = await job.run('aws', 'main', {
      inputs: {
        ...baseInputs,
        export: 'outputs',
        'role-session-name': 'my-session',
        'managed-session-policies':
          'arn:aws:iam::aws:policy/ReadOnlyAccess\narn:aws:iam::111122223333:policy/ci/narrow',
      },
    });
    expect(main.code).toBe(0);
    const s = wireSecrets(before);
    expectMasksFirst(main, [s.accessKeyId, s.secret, s.token], ACCOUNT);
    expect(main.outputs['aws-access-key-id']).toBe(s.accessKeyId);
    expect(main.outputs['aws-secret-access-key']).toBe(s.secret);
    expect(main.outputs['aws-session-token']).toBe(s.token);
    expect(main.outputs['session-name']).toBe('my-session');
    expect(main.env).toEqual({});
    const p = proxy.requests.slice(before).find((r) => r.params.get('Action'))?.params;
    expect(p?.get('PolicyArns.member.1.arn')).toBe('arn:aws:iam::aws:policy/ReadOnlyAccess');
    expect(p?.get('PolicyArns.member.2.arn')).toBe('arn:aws:iam::111122223333:policy/ci/narrow');
    expect(p?.get('Policy')).toBeNull();
    expect(ledgerEvents(job).find((e) => e.type === 'credentials.issued')?.data).toMatchObject({
      export: 'outputs',
      sessionName: 'my-session',
      statements: [],
      managedPolicies: [
        'arn:aws:iam::aws:policy/ReadOnlyAccess',
        'arn:aws:iam::111122223333:policy/ci/narrow',
      ],
    });
    const post = await job.run('aws', 'post', { state: main.state });
    expect(post.code).toBe(0);
    expectNoSecrets(everyOutput(job, [main, post], 'outputs'), s);
  });

  test('export none: validates, records, exports nothing', async () => {
    const job = newJob();
    const before = proxy.requests.length;
    const main = await job.run('aws', 'main', {
      inputs: {
        ...baseInputs,
        export: 'none',
        'inline-session-policy':
          '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:GetCallerIdentity","Resource":"*"}]}',
      },
    });
    expect(main.code).toBe(0);
    const s = wireSecrets(before);
    expectMasksFirst(main, [s.accessKeyId, s.secret, s.token]);
    expect(main.env).toEqual({});
    expect(Object.keys(main.outputs).sort()).toEqual([
      'assumed-role-arn',
      'aws-account-id',
      'aws-expiration',
      'expiration',
      'session-name',
    ]);
    expect(ledgerEvents(job).find((e) => e.type === 'credentials.issued')?.data).toMatchObject({
      export: 'none',
      statements: [{ effect: 'Allow', actions: ['sts:GetCallerIdentity'], resources: ['*'] }],
    });
    const post = await job.run('aws', 'post', { state: main.state });
    expect(post.code).toBe(0);
    expectNoSecrets(everyOutput(job, [main, post], 'none'), s);
  });

  test("a runner's own ~/.aws files and AWS_* variables do not steer or sign the call", async () => {
    const job = newJob({
      AWS_PROFILE: 'other',
      AWS_REGION: 'xx-bogus-9',
      AWS_AUTH_SCHEME_PREFERENCE: 'sigv4a',
    });
    mkdirSync(join(job.home, '.aws'));
    writeFileSync(
      join(job.home, '.aws', 'config'),
      '[default]\nregion = xx-bogus-9\nauth_scheme_preference = sigv4a,sigv4\n[profile other]\nregion = xx-bogus-8\nendpoint_url = http://127.0.0.1:1\n',
    );
    const before = proxy.requests.length;
    const main = await job.run('aws', 'main', { inputs: baseInputs });
    expect(main.commands.filter((c) => c.command === 'error')).toEqual([]);
    expect(main.code).toBe(0);
    const req = proxy.requests.slice(before).find((r) => r.params.get('Action'));
    expect(req?.params.get('RoleArn')).toBe(ROLE);
    expect(main.env.AWS_REGION).toBe('eu-west-1');
  });

  test('between start and its post, the summary shows the session, its policy and that it ended', async () => {
    const job = newJob();
    const start = await job.run('start', 'main');
    expect(start.code).toBe(0);
    const main = await job.run('aws', 'main', {
      inputs: { ...baseInputs, allow: 's3:GetObject arn:aws:s3:::agent-bucket/*' },
    });
    expect(main.code).toBe(0);
    expect((await job.run('aws', 'post', { state: main.state })).code).toBe(0);
    const end = await job.run('start', 'post', { state: start.state });
    expect(end.code).toBe(0);
    expect(end.summary).toContain('Record intact');
    expect(end.summary).toContain(main.outputs['assumed-role-arn']);
    expect(end.summary).toContain('Allow s3:GetObject on arn:aws:s3:::agent-bucket/\\*');
    expect(end.summary).toMatch(
      /AWS credentials for arn:aws:iam::111122223333:role\/cordon-agent ended with \d+s left/,
    );
  });

  test('throttling, a 500, a reset and a delay are retried and the step succeeds within bounds', async () => {
    const job = newJob();
    const before = proxy.requests.length;
    proxy.plan(
      { kind: 'throttle' },
      { kind: 'status', status: 500 },
      { kind: 'reset' },
      { kind: 'delay', ms: 300 },
    );
    const started = Date.now();
    const main = await job.run('aws', 'main', { inputs: baseInputs });
    expect(main.code).toBe(0);
    expect(Date.now() - started).toBeLessThan(20000);
    const reqs = proxy.requests.slice(before);
    expect(reqs.map((r) => r.fault)).toEqual(['throttle', 'status', 'reset', 'delay']);
    expect(main.stdout).toContain('aws: STS call 1 of 5 failed (Throttling, HTTP 400); retrying');
    expect(main.stdout).toContain('aws: STS call 2 of 5 failed (InternalFailure, HTTP 500); retrying');
    expect(main.stdout).toMatch(/aws: STS call 3 of 5 failed \([^)]*ECONNRESET[^)]*\); retrying/);
    expect(main.env.AWS_SESSION_TOKEN).toBe(wireSecrets(before).token);
  });

  test('throttling past retry-max-attempts fails with the attempts named', async () => {
    const job = newJob();
    const before = proxy.requests.length;
    proxy.plan({ kind: 'throttle' }, { kind: 'throttle' }, { kind: 'throttle' });
    const main = await job.run('aws', 'main', { inputs: { ...baseInputs, 'retry-max-attempts': '3' } });
    expect(main.code).toBe(1);
    expect(proxy.requests.length - before).toBe(3);
    const err = main.commands.find((c) => c.command === 'error')?.message ?? '';
    expect(err).toContain('Throttling');
    expect(err).toContain('kept failing after the retries allowed');
    expect(err).toContain('raise retry-max-attempts');
  });

  for (const [name, fault] of [
    ['AccessDenied', STS_FAULTS.accessDenied],
    ['InvalidIdentityToken', STS_FAULTS.invalidIdentityToken],
  ] as const) {
    test(`${name} is not retried and shows the token's iss/aud/sub and the trust condition that would match`, async () => {
      const job = newJob();
      const before = proxy.requests.length;
      proxy.plan(fault);
      const main = await job.run('aws', 'main', { inputs: { ...baseInputs, audience: 'cordon-test' } });
      expect(main.code).toBe(1);
      expect(proxy.requests.length - before).toBe(1);
      const err = main.commands.find((c) => c.command === 'error')?.message ?? '';
      const host = issuer.url.replace(/^http:\/\//, '');
      expect(err).toContain(`STS refused to let this run assume ${ROLE} (${name}:`);
      expect(err).toContain(
        `iss=${issuer.url} aud=cordon-test sub=repo:octo-org/octo-repo:ref:refs/heads/main`,
      );
      expect(err).toContain(`"${host}:sub": "repo:octo-org/octo-repo:ref:refs/heads/main"`);
      expect(err).toContain(`"${host}:aud": "cordon-test"`);
      expect(err).toContain(`"Federated": "arn:aws:iam::${ACCOUNT}:oidc-provider/${host}"`);
      if (name === 'InvalidIdentityToken')
        expect(err).toContain('is the OIDC provider for that issuer created');
      expect(ledgerEvents(job).filter((e) => e.type === 'credentials.issued')).toEqual([]);
      const post = await job.run('aws', 'post', { state: main.state });
      expect(post.code).toBe(0);
      expect(post.stdout).toContain('nothing to clean up');
    });
  }

  test('a duration above the role maximum names the input and both fixes', async () => {
    const job = newJob();
    proxy.plan(STS_FAULTS.durationTooLong);
    const main = await job.run('aws', 'main', { inputs: { ...baseInputs, 'role-duration-seconds': '7200' } });
    expect(main.code).toBe(1);
    const err = main.commands.find((c) => c.command === 'error')?.message ?? '';
    expect(err).toContain(`role-duration-seconds 7200 is above the maximum session duration of ${ROLE}`);
    expect(err).toContain('raise the role\'s "Maximum session duration"');
  });

  test('missing id-token permission shows the YAML to add and calls nothing', async () => {
    const job = new Job({ env: { ...proxy.env } });
    const before = proxy.requests.length;
    const main = await job.run('aws', 'main', { inputs: baseInputs });
    expect(main.code).toBe(1);
    expect(proxy.requests.length).toBe(before);
    const err = main.commands.find((c) => c.command === 'error')?.message ?? '';
    expect(err).toContain('ACTIONS_ID_TOKEN_REQUEST_URL');
    expect(err).toContain('permissions:\n  id-token: write');
  });

  const inputErrors: [string, Record<string, string>, string[]][] = [
    [
      'malformed role ARN',
      { 'role-to-assume': 'arn:aws:iam::12345:role/x' },
      ['role-to-assume "arn:aws:iam::12345:role/x" is not an IAM role ARN', 'must have 12 digits'],
    ],
    [
      'policy JSON that does not parse',
      { 'inline-session-policy': '{"Statement": [' },
      ['inline-session-policy: is not valid JSON', 'block scalar'],
    ],
    [
      'a shorthand line without resource',
      { allow: 's3:GetObject arn:aws:s3:::b/*\ns3:PutObject' },
      ['allow: line 2 ("s3:PutObject") has no resource'],
    ],
    [
      'a shorthand line with a bad action',
      { allow: 's3-GetObject arn:aws:s3:::b/*' },
      ['allow: line 1', 'has action "s3-GetObject"'],
    ],
    [
      'eleven managed policies',
      {
        'managed-session-policies': Array.from(
          { length: 11 },
          (_, i) => `arn:aws:iam::aws:policy/P${i}`,
        ).join('\n'),
      },
      ['managed-session-policies: lists 11 policies', 'at most 10'],
    ],
    ['region missing', { 'aws-region': '' }, ['input aws-region is required', 'aws-region: us-east-1']],
    [
      'duration below 900',
      { 'role-duration-seconds': '600' },
      ['role-duration-seconds "600" is not valid', '900..43200'],
    ],
  ];
  for (const [what, inputs, expected] of inputErrors) {
    test(`${what} fails before any call with a message naming the input`, async () => {
      const job = newJob();
      const before = proxy.requests.length;
      const issued = issuer.requests.length;
      const main = await job.run('aws', 'main', { inputs: { ...baseInputs, ...inputs } });
      expect(main.code).toBe(1);
      expect(proxy.requests.length).toBe(before);
      expect(issuer.requests.length).toBe(issued);
      const err = main.commands.find((c) => c.command === 'error')?.message ?? '';
      for (const e of expected) expect(err).toContain(e);
      expect(err).toContain('Fix:');
    });
  }
});
