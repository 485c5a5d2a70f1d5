/**
 * `actions/run` with `credentials: broker`, as a whole program (dist/run/main.js through the
 * harness) against the moto server and the loopback OIDC issuer: the command is a real boto3
 * process that only has the container-credentials variables.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { chmodSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { allFiles } from '../harness/files.js';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Ledger, ledgerPath, type LedgerEvent } from '../../src/ledger/ledger.js';
import { makeAppKey, startGithubApi, type GithubApiServer } from '../../src/devkit/github-api.js';
import { startFaultProxy, type FaultProxy } from '../../src/devkit/fault-proxy.js';
import { motoAvailable, startMoto, type Moto } from '../../src/devkit/moto.js';
import { startOidcIssuer, type OidcIssuer } from '../../src/devkit/oidc-issuer.js';
import { Job, type StepResult } from '../../src/devkit/run-action.js';

const ROLE = 'arn:aws:iam::123456789012:role/cordon-agent';
const DB_PASSWORD = 'run-broker-db-password-7d1c';
const available = motoAvailable();
if (!available && process.env.CI === 'true')
  throw new Error('moto_server is not on PATH; CI must provide it (.ci/run checks)');
if (!available) console.log('run-broker e2e skipped: moto_server is not on PATH and CI is unset');
const maybe = available ? describe : describe.skip;

let moto: Moto;
/** STS through a proxy that gives credentials 839 s: under refresh-before-seconds 840, so every request refreshes. */
let shortSts: FaultProxy;
let issuer: OidcIssuer;
let github: GithubApiServer;
let key: ReturnType<typeof makeAppKey>;
const jobs: Job[] = [];

beforeAll(async () => {
  if (!available) return;
  key = makeAppKey();
  [moto, issuer, github] = await Promise.all([
    startMoto(),
    startOidcIssuer(),
    startGithubApi({
      appId: 515151,
      slug: 'cordon-run-agent',
      botId: 9100002,
      publicKey: key.publicKey,
      // Under refresh-before-seconds 3540 (the most the inputs accept): every request mints.
      tokenLifetimeS: 3500,
      installations: [
        {
          id: 888,
          account: 'octo-org',
          repositories: ['octo-repo', 'docs'],
          permissions: { contents: 'write', pull_requests: 'write', metadata: 'read' },
        },
      ],
    }),
  ]);
  shortSts = await startFaultProxy(moto.endpoint, { lifetimeS: 839 });
  // Moto keeps data per account and takes it from the caller's keys: 'testing' is 123456789012.
  const sm = new SecretsManagerClient({
    endpoint: moto.endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  });
  await sm.send(
    new CreateSecretCommand({ Name: 'prod/db', SecretString: JSON.stringify({ password: DB_PASSWORD }) }),
  );
  sm.destroy();
}, 60000);

afterAll(async () => {
  for (const j of jobs.splice(0)) rmSync(j.root, { recursive: true, force: true });
  await Promise.all([shortSts?.close(), moto?.stop(), issuer?.close(), github?.close()]);
});

function newJob(): Job {
  const j = new Job({
    env: {
      ...moto.env,
      ...issuer.env,
      // Static keys on the runner that the command must not get alongside the broker's.
      AWS_ACCESS_KEY_ID: 'runner-static-key-id',
      AWS_SECRET_ACCESS_KEY: 'runner-static-secret-key',
      AWS_SESSION_TOKEN: 'runner-static-session-token',
      AWS_PROFILE: 'runner-profile',
    },
  });
  jobs.push(j);
  // The command runs as its own user (run's default as root): it writes what it saw into
  // the job's folder, open to all like /tmp; RUNNER_TEMP and the rest stay root's.
  chmodSync(j.root, 0o1777);
  return j;
}

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

/** No secret value in the log (outside add-mask), outputs, env, state, ledger or any job file. */
function expectNoSecrets(j: Job, r: StepResult, values: string[], skip: string[] = []): void {
  const log = r.stdout
    .split('\n')
    .filter((l) => !l.startsWith('::add-mask::'))
    .join('\n');
  const places: [string, string][] = [
    ['stdout', log],
    ['stderr', r.stderr],
    ['outputs', JSON.stringify(r.outputs)],
    ['GITHUB_ENV', JSON.stringify(r.env)],
    ['state', JSON.stringify(r.state)],
    ...allFiles(j.root)
      .filter((f) => !skip.includes(f))
      .map((f): [string, string] => [f, readFileSync(f, 'latin1')]),
  ];
  for (const v of values) {
    for (const [where, text] of places) {
      if (text.includes(v)) throw new Error(`a secret (${v.length} chars) is in ${where}`);
    }
  }
}

const BOTO = `
import boto3, json, os, sys, time
out = []
for _ in range(8):
    s = boto3.session.Session()
    ident = s.client('sts').get_caller_identity()
    c = s.get_credentials().get_frozen_credentials()
    out.append({'arn': ident['Arn'], 'key': c.access_key, 'secret': c.secret_key, 'method': s.get_credentials().method})
    if len({o['key'] for o in out}) >= 2:
        break
    time.sleep(0.3)
proc = open('/proc/self/environ', 'rb').read().decode('latin1').split('\\0')
json.dump({'calls': out, 'env': dict(os.environ), 'proc': proc}, open(sys.argv[1], 'w'))
print('secret=' + out[-1]['secret'])
`;

maybe('run with credentials: broker', () => {
  test('boto3 refreshes through the broker: two keys, both recorded; no static keys, no ID-token pair; port closed after', async () => {
    const j = newJob();
    Object.assign(j.env, shortSts.env);
    const dump = join(j.root, 'seen.json');
    const r = await j.run('run', 'main', {
      inputs: {
        run: `python3 -c "$SCRIPT" ${dump}`,
        shell: 'bash',
        // boto3 is in the Python under /root here, which another user cannot reach.
        user: 'runner',
        'aws-role-to-assume': ROLE,
        'aws-region': 'us-east-1',
        credentials: 'broker',
        // The most a 900 s role accepts; the proxy's 839 s credentials are never fresher: every request is a new exchange.
        'refresh-before-seconds': '840',
        'aws-allow':
          'secretsmanager:GetSecretValue arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/*',
        secrets: 'DB_PASSWORD=aws-sm:prod/db#password',
      },
      env: { SCRIPT: BOTO },
      timeoutMs: 120000,
    });
    if (r.code !== 0) throw new Error(`run failed:\n${r.stdout}\n${r.stderr}`);
    const seen = JSON.parse(readFileSync(dump, 'utf8')) as {
      calls: { arn: string; key: string; secret: string; method: string }[];
      env: Record<string, string>;
      proc: string[];
    };
    rmSync(dump);
    // Two different access keys, both from the container-credentials provider, same role.
    expect(seen.calls[0].method).toBe('container-role');
    const keys = [...new Set(seen.calls.map((c) => c.key))];
    expect(keys.length).toBeGreaterThanOrEqual(2);
    for (const c of seen.calls)
      expect(c.arn).toMatch(/^arn:aws:sts::123456789012:assumed-role\/cordon-agent\//);
    // The command's environment, as Python saw it and as the kernel holds it.
    const procEnv = Object.fromEntries(
      seen.proc.filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
    );
    for (const env of [seen.env, procEnv]) {
      for (const k of [
        'ACTIONS_ID_TOKEN_REQUEST_URL',
        'ACTIONS_ID_TOKEN_REQUEST_TOKEN',
        'AWS_ACCESS_KEY_ID',
        'AWS_SECRET_ACCESS_KEY',
        'AWS_SESSION_TOKEN',
        'AWS_PROFILE',
      ])
        expect(env[k]).toBeUndefined();
      expect(env.AWS_CONTAINER_CREDENTIALS_FULL_URI).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/aws\/credentials$/);
      expect(env.AWS_CONTAINER_AUTHORIZATION_TOKEN).toMatch(/^[0-9a-f]{64}$/);
      expect(env.AWS_REGION).toBe('us-east-1');
      // The secret was fetched with the broker's credentials (moto's account comes from them).
      expect(env.DB_PASSWORD).toBe(DB_PASSWORD);
      expect(JSON.stringify(env)).not.toContain(issuer.env.ACTIONS_ID_TOKEN_REQUEST_TOKEN);
    }
    // The refreshed secret key the command printed is scrubbed from the step's log.
    expect(r.stdout).toContain('secret=***');

    // Every issuance is in the ledger: the start's, then at least one per key the command saw.
    const refreshed = events(j, 'credentials.refreshed');
    expect(refreshed.length).toBeGreaterThanOrEqual(keys.length);
    expect(refreshed.map((e) => e.data.issuance)).toEqual(refreshed.map((_, i) => i + 1));
    for (const e of refreshed) expect(e.data).toMatchObject({ role: ROLE, durationSeconds: 900 });
    // The session policy is on the first issuance, for the summary; none is unscoped.
    expect(refreshed[0].data.statements).toEqual([
      {
        effect: 'Allow',
        actions: ['secretsmanager:GetSecretValue'],
        resources: ['arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/*'],
      },
    ]);
    expect(refreshed.some((e) => 'unscoped' in e.data)).toBe(false);
    expect(refreshed.slice(1).every((e) => e.data.reason === 'expiring')).toBe(true);
    expect(events(j, 'credentials.issued')).toHaveLength(0);
    const started = events(j, 'run.started')[0].data as { credentials: string[]; envRemoved: string[] };
    expect(started.credentials).toEqual([`aws-broker:${ROLE}`]);
    expect(started.envRemoved).toEqual(
      expect.arrayContaining(['ACTIONS_ID_TOKEN_REQUEST_TOKEN', 'AWS_ACCESS_KEY_ID', 'AWS_PROFILE']),
    );

    // After the step: stopped, recorded, port closed.
    const brokerStarted = events(j, 'broker.started');
    const stopped = events(j, 'broker.stopped');
    expect(brokerStarted).toHaveLength(1);
    expect(stopped).toHaveLength(1);
    expect(stopped[0].data).toMatchObject({
      reason: 'stop',
      unauthorized: 0,
      awsRefreshes: refreshed.length,
    });
    expect(await portOpen(brokerStarted[0].data.port as number)).toBe(false);
    const finished = events(j, 'run.finished')[0].data as { ledgerIntact: boolean };
    expect(finished.ledgerIntact).toBe(true);

    // No secret anywhere: what was masked (the broker's token, every key, the request token), the static keys.
    const masked = r.masks.filter((m) => m.length >= 8);
    expect(masked).toEqual(expect.arrayContaining([seen.env.AWS_CONTAINER_AUTHORIZATION_TOKEN]));
    for (const c of seen.calls) expect(masked).toEqual(expect.arrayContaining([c.secret]));
    expectNoSecrets(j, r, [
      ...masked,
      ...seen.calls.map((c) => c.secret),
      issuer.env.ACTIONS_ID_TOKEN_REQUEST_TOKEN,
    ]);
  }, 150000);

  test('git and gh get fresh installation tokens through the broker; every one is revoked after the step; the key is nowhere', async () => {
    const j = newJob();
    Object.assign(j.env, { GITHUB_API_URL: github.url, GIT_CONFIG_NOSYSTEM: '1' });
    const dump = join(j.root, 'tokens.json');
    const script = [
      "tok() { printf 'protocol=https\\nhost=github.com\\n\\n' | git credential fill | sed -n 's/^password=//p'; }",
      'a=$(tok)',
      'b=$(tok)',
      'c=$(cordon-gh-token)',
      `git config --global --includes --get safe.directory > ${join(j.root, 'safe-dir')} || true`,
      `node -e 'const [a,b,c]=process.argv.slice(1);Promise.all([a,b].map(t=>fetch(process.env.GITHUB_API_URL+"/installation/repositories",{headers:{authorization:"token "+t}}).then(r=>r.status))).then(s=>require("fs").writeFileSync(${JSON.stringify(dump)},JSON.stringify({a,b,c,status:s,gh:require("child_process").execSync("command -v gh || true",{shell:"/bin/sh"}).toString().trim(),env:require("fs").readFileSync("/proc/self/environ","latin1")})))' "$a" "$b" "$c"`,
      'echo "token=$a"',
    ].join('\n');
    const r = await j.run('run', 'main', {
      inputs: {
        run: script,
        credentials: 'broker',
        'github-app-id': '515151',
        'github-app-private-key': key.pkcs1,
        'github-app-permissions': 'contents: write\npull-requests: read',
        // Above the 3500 s the stand-in gives a token: every request mints a new one.
        'refresh-before-seconds': '3540',
      },
      timeoutMs: 120000,
    });
    if (r.code !== 0) throw new Error(`run failed:\n${r.stdout}\n${r.stderr}`);
    const seen = JSON.parse(readFileSync(dump, 'utf8')) as {
      a: string;
      b: string;
      c: string;
      status: number[];
      gh: string;
      env: string;
    };
    rmSync(dump);
    expect(seen.a).toMatch(/^ghs_/);
    expect(new Set([seen.a, seen.b, seen.c]).size).toBe(3);
    // The test server accepted them while the step ran.
    expect(seen.status).toEqual([200, 200]);
    expect(seen.gh).toMatch(/\/bin\/gh$/);
    // The git config the broker adds includes the command's own (fresh) HOME's, not the step's.
    expect(readFileSync(join(j.root, 'safe-dir'), 'utf8').trim()).toBe(j.workspace);
    expect(r.stdout).toContain('token=***');
    const minted = github.tokens.filter((t) => t.installationId === 888);
    expect(minted.length).toBeGreaterThanOrEqual(4);
    for (const t of minted) {
      expect(t.permissions).toMatchObject({ contents: 'write', pull_requests: 'read' });
      expect(t.repositories).toEqual(['octo-repo']);
    }
    // After the step every token it minted answers 401.
    for (const t of [seen.a, seen.b, seen.c]) {
      const res = await fetch(`${github.url}/installation/repositories`, {
        headers: { authorization: `token ${t}` },
      });
      expect(res.status).toBe(401);
    }
    const refreshed = events(j, 'token.refreshed');
    expect(refreshed.length).toBe(minted.length);
    // Each mint the command asked for names the uid of the socket that asked: the agent's own
    // user (recorded from the socket table even where its processes cannot be read).
    const askers = refreshed
      .slice(1)
      .map((e) => (e.data as { requester?: { uid?: number; pid?: number } }).requester);
    for (const a of askers) expect(a?.uid).toEqual(expect.any(Number));
    for (const a of askers) expect(a?.uid).not.toBe(process.getuid!());
    const stopped = events(j, 'broker.stopped')[0].data as {
      revocations: { revoked: number; failed: number };
    };
    expect(stopped.revocations).toMatchObject({ revoked: minted.length, failed: 0 });
    expect((events(j, 'run.started')[0].data as { credentials: string[] }).credentials).toEqual([
      'github-app-broker:app-id=515151',
    ]);
    // The key and the ID-token request token: not in the command's environment, any file, the ledger or a log.
    const keyLines = [key.pkcs1.split('\n')[5], key.pkcs8.split('\n')[5]];
    for (const n of [...keyLines, issuer.env.ACTIONS_ID_TOKEN_REQUEST_TOKEN])
      expect(seen.env.includes(n)).toBe(false);
    expectNoSecrets(j, r, [...keyLines, ...minted.map((t) => t.token)]);
  }, 150000);

  test("github-app-* inputs are checked in run's names", async () => {
    const j = newJob();
    const noBroker = await j.run('run', 'main', {
      inputs: { run: 'echo ran', 'github-app-id': '515151', 'github-app-private-key': key.pkcs1 },
    });
    expect(noBroker.code).not.toBe(0);
    expect(noBroker.commands.find((c) => c.command === 'error')?.message).toContain(
      'github-app-id was given without credentials: broker',
    );
    const noPerms = await j.run('run', 'main', {
      inputs: {
        run: 'echo ran',
        credentials: 'broker',
        'github-app-id': '515151',
        'github-app-private-key': key.pkcs1,
      },
    });
    expect(noPerms.code).not.toBe(0);
    const msg = noPerms.commands.find((c) => c.command === 'error')?.message ?? '';
    expect(msg).toContain('run: input github-app-permissions is empty');
    expect(msg).not.toContain('github-token:');
    expect(msg).toContain('github-app-permissions');
    for (const l of key.pkcs1.split('\n').slice(1, -2))
      expect(noPerms.stdout.replace(/^::add-mask::.*$/gm, '')).not.toContain(l);
  });

  test("a bad github-app-private-key or a key of another app fails the broker's start naming run's inputs; the key is in no error, log or ledger", async () => {
    const lines = key.pkcs1.trim().split('\n');
    // Armour intact, the inside cut short: it does not decode.
    const cut = [...lines.slice(0, 8), lines[lines.length - 1]].join('\n') + '\n';
    const other = makeAppKey();
    const cases: [string, string, string[]][] = [
      [cut, 'run: input github-app-private-key is malformed', lines.slice(1, 8)],
      [
        other.pkcs1,
        'github-app-private-key is not a key of the app with github-app-id 515151',
        other.pkcs1.trim().split('\n').slice(1, -1),
      ],
    ];
    for (const [pem, says, body] of cases) {
      const j = newJob();
      j.env.GITHUB_API_URL = github.url;
      const r = await j.run('run', 'main', {
        inputs: {
          run: 'echo ran',
          credentials: 'broker',
          'github-app-id': '515151',
          'github-app-private-key': pem,
          'github-app-permissions': 'contents: read',
        },
        timeoutMs: 90000,
      });
      expect(r.code).not.toBe(0);
      expect(r.stdout).not.toContain('ran\n');
      const msg = r.commands.find((c) => c.command === 'error')?.message ?? '';
      expect(msg).toContain('run: the credential broker did not start');
      expect(msg).toContain(says);
      expect(msg).not.toContain('github-token');
      expect(msg).not.toMatch(/(?<![\w-])(private-key|app-id)(?![\w-])/);
      expectNoSecrets(j, r, body);
    }
  }, 200000);

  test('credentials: broker without a role is refused before anything runs', async () => {
    const j = newJob();
    const r = await j.run('run', 'main', { inputs: { run: 'echo ran', credentials: 'broker' } });
    expect(r.code).not.toBe(0);
    expect(r.stdout).not.toContain('\nran\n');
    expect(r.commands.find((c) => c.command === 'error')?.message).toContain(
      'credentials: broker was given without aws-role-to-assume',
    );
    expect(events(j, 'broker.started')).toHaveLength(0);
  });

  test('a wrong refresh-before-seconds names the input', async () => {
    const j = newJob();
    const r = await j.run('run', 'main', {
      inputs: {
        run: 'echo ran',
        credentials: 'broker',
        'aws-role-to-assume': ROLE,
        'aws-region': 'us-east-1',
        'aws-allow': '*',
        'refresh-before-seconds': 'soon',
      },
    });
    expect(r.code).not.toBe(0);
    expect(r.commands.find((c) => c.command === 'error')?.message).toContain('refresh-before-seconds');
  });

  test("hostile: a role without a session policy is refused before the command runs; aws-allow: '*' hands it over, recorded UNSCOPED", async () => {
    const j = newJob();
    const marker = join(j.root, 'ran');
    const refused = await j.run('run', 'main', {
      inputs: {
        run: `touch ${marker}`,
        'aws-role-to-assume': ROLE,
        'aws-region': 'us-east-1',
      },
    });
    expect(refused.code).not.toBe(0);
    expect(existsSync(marker)).toBe(false);
    const error = refused.commands.find((c) => c.command === 'error')?.message ?? '';
    expect(error).toContain('run: aws-role-to-assume was given without a session policy');
    expect(error).toContain("aws-allow: '*'");
    expect(events(j, 'credentials.issued')).toHaveLength(0);

    for (const credentials of ['static', 'broker']) {
      const k = newJob();
      const r = await k.run('run', 'main', {
        inputs: {
          run: 'echo ran',
          'aws-role-to-assume': ROLE,
          'aws-region': 'us-east-1',
          'aws-allow': '*',
          credentials,
        },
        timeoutMs: 60000,
      });
      if (r.code !== 0) throw new Error(`run (${credentials}) failed:\n${r.stdout}\n${r.stderr}`);
      expect(r.stdout).toContain('UNSCOPED');
      const issued = events(k, credentials === 'static' ? 'credentials.issued' : 'credentials.refreshed');
      expect(issued.length).toBeGreaterThanOrEqual(1);
      for (const e of issued) expect(e.data).toMatchObject({ role: ROLE, unscoped: 'chosen' });
    }
  }, 150000);
});
