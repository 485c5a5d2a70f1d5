/**
 * `actions/aws` with `export: broker`, as whole programs (dist/aws/main.js, a later step,
 * dist/aws/post.js) against the moto server and the loopback OIDC issuer.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { readFileSync, rmSync } from 'node:fs';
import { allFiles } from '../harness/files.js';
import { connect } from 'node:net';
import { Ledger, ledgerPath, type LedgerEvent } from '../../src/ledger/ledger.js';
import { startFaultProxy, type FaultProxy } from '../../src/devkit/fault-proxy.js';
import { motoAvailable, startMoto, type Moto } from '../../src/devkit/moto.js';
import { startOidcIssuer, type OidcIssuer } from '../../src/devkit/oidc-issuer.js';
import { Job, spawnCollect } from '../../src/devkit/run-action.js';
import { alive } from '../harness/proc.js';

const ROLE = 'arn:aws:iam::111122223333:role/ci/cordon-agent';
const available = motoAvailable();
if (!available && process.env.CI === 'true')
  throw new Error('moto_server is not on PATH; CI must provide it (.ci/run checks)');
if (!available) console.log('aws-broker e2e skipped: moto_server is not on PATH and CI is unset');
const maybe = available ? describe : describe.skip;

let moto: Moto;
/** STS through a proxy that gives credentials 839 s: under refresh-before-seconds 840, so every request refreshes. */
let shortSts: FaultProxy;
let issuer: OidcIssuer;
const jobs: Job[] = [];

beforeAll(async () => {
  if (!available) return;
  [moto, issuer] = await Promise.all([startMoto(), startOidcIssuer()]);
  shortSts = await startFaultProxy(moto.endpoint, { lifetimeS: 839 });
}, 60000);

afterAll(async () => {
  for (const j of jobs.splice(0)) rmSync(j.root, { recursive: true, force: true });
  await Promise.all([shortSts?.close(), moto?.stop(), issuer?.close()]);
});

function events(j: Job, type: string): LedgerEvent[] {
  return new Ledger(ledgerPath(j.env), { action: 'test' }).events().filter((e) => e.type === type);
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function withoutMasks(stdout: string): string {
  return stdout
    .split('\n')
    .filter((l) => !l.startsWith('::add-mask::'))
    .join('\n');
}

const BOTO = `
import boto3, json, time
out = []
for _ in range(8):
    s = boto3.session.Session()
    ident = s.client('sts').get_caller_identity()
    c = s.get_credentials().get_frozen_credentials()
    out.append({'arn': ident['Arn'], 'key': c.access_key, 'secret': c.secret_key, 'token': c.token, 'method': s.get_credentials().method})
    if len({o['key'] for o in out}) >= 2:
        break
    time.sleep(0.3)
print(json.dumps(out))
`;

maybe('aws with export: broker', () => {
  test('a later step refreshes through the exported container-credentials variables; post stops the broker', async () => {
    // moto.env holds static keys from "an earlier step": they are blanked for later steps.
    const j = new Job({ env: { ...moto.env, ...issuer.env, ...shortSts.env } });
    jobs.push(j);
    const main = await j.run('aws', 'main', {
      inputs: {
        'role-to-assume': ROLE,
        'aws-region': 'eu-west-1',
        export: 'broker',
        // The most a 900 s role accepts; the proxy's 839 s credentials are never fresher: every request is a new exchange.
        'refresh-before-seconds': '840',
      },
    });
    if (main.code !== 0) throw new Error(`aws main failed:\n${main.stdout}\n${main.stderr}`);
    expect(main.env.AWS_CONTAINER_CREDENTIALS_FULL_URI).toMatch(
      /^http:\/\/127\.0\.0\.1:\d+\/aws\/credentials$/,
    );
    expect(main.env.AWS_CONTAINER_AUTHORIZATION_TOKEN).toMatch(/^[0-9a-f]{64}$/);
    expect(main.env.AWS_REGION).toBe('eu-west-1');
    expect(main.env.AWS_ACCESS_KEY_ID).toBe('');
    expect(main.env.AWS_SECRET_ACCESS_KEY).toBe('');
    expect(main.env.PATH).toBeUndefined();
    expect(Object.keys(main.env).some((k) => k.startsWith('ACTIONS_ID_TOKEN'))).toBe(false);
    expect(main.outputs).toMatchObject({
      'aws-account-id': '111122223333',
      'assumed-role-arn': 'arn:aws:sts::111122223333:assumed-role/cordon-agent/cordon-4242-1-agent',
      'session-name': 'cordon-4242-1-agent',
    });
    expect(Date.parse(main.outputs.expiration)).toBeGreaterThan(Date.now());
    const state = JSON.parse(main.state.broker) as { pid: number; url: string; controlToken: string };
    const port = Number(new URL(state.url).port);
    // Only post stops it: the control token is masked, never exported.
    expect(main.masks).toContain(state.controlToken);
    expect(main.masks).toContain(main.env.AWS_CONTAINER_AUTHORIZATION_TOKEN);
    expect(alive(state.pid)).toBe(true);

    // A later step: a boto3 process with the job's environment (no static keys left).
    const later = await spawnCollect(['python3', '-c', BOTO], { ...j.env }, j.workspace, 60000);
    if (later.code !== 0) throw new Error(later.stderr);
    const calls = JSON.parse(later.stdout) as {
      arn: string;
      key: string;
      secret: string;
      token: string;
      method: string;
    }[];
    expect(calls[0].method).toBe('container-role');
    expect(new Set(calls.map((c) => c.key)).size).toBeGreaterThanOrEqual(2);
    for (const c of calls)
      expect(c.arn).toBe('arn:aws:sts::111122223333:assumed-role/cordon-agent/cordon-4242-1-agent');

    const post = await j.run('aws', 'post', { state: main.state });
    if (post.code !== 0) throw new Error(`aws post failed:\n${post.stdout}\n${post.stderr}`);
    expect(alive(state.pid)).toBe(false);
    expect(await portOpen(port)).toBe(false);
    const refreshed = events(j, 'credentials.refreshed');
    expect(refreshed.length).toBeGreaterThanOrEqual(2);
    for (const e of refreshed) expect(e.data).toMatchObject({ role: ROLE });
    const stopped = events(j, 'broker.stopped');
    expect(stopped).toHaveLength(1);
    expect(stopped[0].data).toMatchObject({
      reason: 'stop',
      port,
      awsRefreshes: refreshed.length,
      unauthorized: 0,
    });
    const ended = events(j, 'credentials.ended')[0].data as { secondsLeft: number };
    // The proxy's 839 s lifetime, less the test's own time.
    expect(ended.secondsLeft).toBeGreaterThan(700);
    expect(post.stdout).toContain('credential broker stopped');

    // Secrets: the ID-token request token and every AWS key are nowhere; the bearer token is
    // only in GITHUB_ENV (by design) and the control token only in the saved state.
    const ledger = readFileSync(ledgerPath(j.env), 'utf8');
    const files = allFiles(j.root).map((f): [string, string] => [f, readFileSync(f, 'latin1')]);
    const logs: [string, string][] = [
      ['main stdout', withoutMasks(main.stdout)],
      ['main stderr', main.stderr],
      ['post stdout', withoutMasks(post.stdout)],
      ['post stderr', post.stderr],
      ['outputs', JSON.stringify(main.outputs)],
      ['ledger', ledger],
    ];
    const check = (v: string, places: [string, string][]): void => {
      for (const [where, text] of places)
        if (text.includes(v)) throw new Error(`a secret (${v.length} chars) is in ${where}`);
    };
    const never = [
      issuer.env.ACTIONS_ID_TOKEN_REQUEST_TOKEN,
      ...calls.flatMap((c) => [c.secret, c.token]),
      ...main.masks.filter(
        (m) =>
          m.length >= 8 &&
          m !== state.controlToken &&
          m !== main.env.AWS_CONTAINER_AUTHORIZATION_TOKEN &&
          !/^\d+$/.test(m),
      ),
    ];
    for (const v of never)
      check(v, [
        ...logs,
        ['GITHUB_ENV', JSON.stringify(main.env)],
        ['state', JSON.stringify(main.state)],
        ...files,
      ]);
    check(state.controlToken, [...logs, ['GITHUB_ENV', JSON.stringify(main.env)]]);
    check(main.env.AWS_CONTAINER_AUTHORIZATION_TOKEN, [...logs, ['state', JSON.stringify(main.state)]]);
  }, 150000);

  test('post without a broker in state stops nothing and still ends the credentials', async () => {
    const j = new Job({ env: { ...moto.env, ...issuer.env } });
    jobs.push(j);
    const main = await j.run('aws', 'main', {
      inputs: { 'role-to-assume': ROLE, 'aws-region': 'eu-west-1' },
    });
    expect(main.code).toBe(0);
    expect(main.state.broker).toBeUndefined();
    const post = await j.run('aws', 'post', { state: main.state });
    expect(post.code).toBe(0);
    expect(events(j, 'broker.stopped')).toHaveLength(0);
    expect(events(j, 'credentials.ended')).toHaveLength(1);
  }, 60000);
});
