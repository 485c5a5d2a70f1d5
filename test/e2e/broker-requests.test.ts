/**
 * Hostile requests to the credential broker (dist/broker/main.js, as `actions/run` starts
 * it) from a command that holds the bearer token, against moto, the loopback OIDC issuer
 * and the loopback GitHub API. Every trick in the request line (query strings, repeated
 * parameters, encoded or doubled slashes, dot segments, trailing dots, absolute-form
 * targets, overlong paths, other methods, doubled headers) is either refused with a clear
 * status or answered with exactly what the plain request gets: the same bytes, and no new
 * STS call or installation token.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { connect } from 'node:net';
import { join } from 'node:path';
import { parseAwsSessionInputs, type AwsSessionInputs } from '../../src/aws/inputs.js';
import { Inputs } from '../../src/platform/inputs.js';
import { Ledger, ledgerPath } from '../../src/ledger/ledger.js';
import { makeAppKey, startGithubApi, type GithubApiServer } from '../../src/devkit/github-api.js';
import { motoAvailable, startMoto, type Moto } from '../../src/devkit/moto.js';
import { startOidcIssuer, type OidcIssuer } from '../../src/devkit/oidc-issuer.js';
import { Job, REPO_ROOT } from '../../src/devkit/run-action.js';
import { parseGithubTokenInputs } from '../../src/github/inputs.js';
import { startBroker, type StartedBroker } from '../../src/broker/start.js';

const ROLE = 'arn:aws:iam::111122223333:role/cordon-agent';
const BROKER = join(REPO_ROOT, 'dist', 'broker', 'main.js');
const available = motoAvailable();
if (!available && process.env.CI === 'true')
  throw new Error('moto_server is not on PATH; CI must provide it (.ci/run checks)');
if (!available) console.log('broker-requests e2e skipped: moto_server is not on PATH and CI is unset');
const maybe = available ? describe : describe.skip;

let moto: Moto;
let issuer: OidcIssuer;
let github: GithubApiServer;
let job: Job;
let broker: StartedBroker;
let port: number;
let token: string;

beforeAll(async () => {
  if (!available) return;
  const key = makeAppKey();
  [moto, issuer, github] = await Promise.all([
    startMoto(),
    startOidcIssuer(),
    startGithubApi({
      appId: 424242,
      slug: 'cordon-agent',
      botId: 9100001,
      publicKey: key.publicKey,
      installations: [
        {
          id: 777,
          account: 'octo-org',
          repositories: ['octo-repo', 'docs'],
          permissions: {
            contents: 'write',
            pull_requests: 'write',
            administration: 'write',
            metadata: 'read',
          },
        },
      ],
    }),
  ]);
  job = new Job({
    env: { ...issuer.env, AWS_ENDPOINT_URL: moto.endpoint, GITHUB_API_URL: github.url },
  });
  const env = { ...job.env, 'INPUT_AWS-ROLE-TO-ASSUME': ROLE, 'INPUT_AWS-REGION': 'eu-west-1' };
  const aws = parseAwsSessionInputs(new Inputs('run', env), { prefix: 'aws-' }) as AwsSessionInputs;
  const gh = parseGithubTokenInputs({
    ...job.env,
    'INPUT_APP-ID': '424242',
    'INPUT_PRIVATE-KEY': key.pkcs1,
    'INPUT_PERMISSION-CONTENTS': 'write',
    INPUT_REPOSITORIES: 'octo-repo',
    'INPUT_GITHUB-API-URL': github.url,
  });
  broker = await startBroker({ action: 'run', env: job.env, aws, github: gh }, { brokerScript: BROKER });
  port = Number(new URL(broker.url).port);
  token = broker.env.CORDON_BROKER_TOKEN;
}, 60000);

afterAll(async () => {
  await broker?.stop().catch(() => undefined);
  await Promise.all([moto?.stop(), issuer?.close(), github?.close()]);
});

interface Raw {
  status: number;
  body: string;
  /** The bytes as they came, for a close that sent nothing. */
  text: string;
}

/**
 * Sends `head` (the request line and headers, without the blank line) as it is, with the
 * bearer token unless `auth` is false, and reads until the broker closes (bounded).
 */
function raw(head: string, opts: { auth?: boolean | string[] } = {}): Promise<Raw> {
  const auth =
    opts.auth === false
      ? []
      : Array.isArray(opts.auth)
        ? opts.auth.map((a) => `authorization: ${a}`)
        : [`authorization: ${token}`];
  const request = [head, 'host: 127.0.0.1', ...auth, 'connection: close', '', ''].join('\r\n');
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(
      () => socket.destroy(new Error(`no close within 10 s: ${head.slice(0, 80)}`)),
      10000,
    );
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', (e) => {
      clearTimeout(timer);
      // A reset after a refused request counts as a close with what arrived.
      if ((e as NodeJS.ErrnoException).code === 'ECONNRESET')
        resolve(parse(Buffer.concat(chunks).toString()));
      else reject(e);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(parse(Buffer.concat(chunks).toString()));
    });
    socket.end(request);
  });
}

function parse(text: string): Raw {
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
  const [headers, ...rest] = text.split('\r\n\r\n');
  let body = rest.join('\r\n\r\n');
  if (/\r\ntransfer-encoding: chunked/i.test(headers)) {
    let out = '';
    for (let i = 0, left = body; i < 100 && left.length; i++) {
      const n = parseInt(left, 16);
      if (!n) break;
      const start = left.indexOf('\r\n') + 2;
      out += left.slice(start, start + n);
      left = left.slice(start + n + 2);
    }
    body = out;
  }
  return { status, body, text };
}

const count = (type: string): number =>
  new Ledger(ledgerPath(job.env), { action: 'test' }).events().filter((e) => e.type === type).length;

maybe('broker: tricks in the request line widen nothing', () => {
  let plainAws: string;
  let plainGithub: string;

  beforeAll(async () => {
    if (!available) return;
    const a = await raw('GET /aws/credentials HTTP/1.1');
    const g = await raw('GET /github/token HTTP/1.1');
    expect(a.status).toBe(200);
    expect(g.status).toBe(200);
    plainAws = a.body;
    plainGithub = g.body;
  }, 30000);

  test('query strings and repeated parameters asking for another role, policy, duration, repository or permission get exactly the plain answer', async () => {
    const awsTricks = [
      `/aws/credentials?RoleArn=${encodeURIComponent('arn:aws:iam::111122223333:role/admin')}`,
      '/aws/credentials?Policy=%7B%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22*%22%2C%22Resource%22%3A%22*%22%7D%5D%7D',
      '/aws/credentials?DurationSeconds=43200&DurationSeconds=43200&refresh=1',
      '/aws/credentials?role=a&role=b&role=arn:aws:iam::999999999999:role/other',
      '/aws/credentials?',
      '/aws/credentials??/github/token',
    ];
    const githubTricks = [
      '/github/token?repositories=docs&repositories=*',
      '/github/token?permissions[administration]=write&permissions[contents]=admin',
      '/github/token?repository_ids=1&installation_id=1&refresh=true',
      '/github/token?/../aws/credentials',
    ];
    for (const path of awsTricks) {
      const r = await raw(`GET ${path} HTTP/1.1`);
      expect({ path, status: r.status }).toEqual({ path, status: 200 });
      expect(r.body).toBe(plainAws);
    }
    for (const path of githubTricks) {
      const r = await raw(`GET ${path} HTTP/1.1`);
      expect({ path, status: r.status }).toEqual({ path, status: 200 });
      expect(r.body).toBe(plainGithub);
    }
    // No new STS call, no new installation token: one issuance each, the first.
    expect(count('credentials.refreshed')).toBe(1);
    expect(count('token.refreshed')).toBe(1);
    expect(github.tokens).toHaveLength(1);
    expect(github.tokens[0].repositories).toEqual(['octo-repo']);
    // What was asked, plus the metadata: read GitHub always adds.
    expect(github.tokens[0].permissions).toEqual({ contents: 'write', metadata: 'read' });
  }, 60000);

  test('path tricks (encoded and doubled slashes, dot segments, trailing dots, case, absolute-form) are 404, never an answer', async () => {
    const tricks = [
      '/aws/credentials/',
      '/aws/credentials.',
      '/aws/credentials..',
      '/aws/credentials%2e',
      '/aws/credentials%00',
      '/aws/credentials;role=admin',
      '/aws/credentials#x',
      '//aws/credentials',
      '/aws//credentials',
      '/aws/./credentials',
      '/aws/x/../credentials',
      '/github/../aws/credentials',
      '/%2e%2e/aws/credentials',
      '/aws/%2e%2e/aws/credentials',
      '/aws%2fcredentials',
      '/aws%2Fcredentials',
      '/aws/%63redentials',
      '/aws/credentials%3f',
      '/AWS/credentials',
      '/aws\\credentials',
      '/github/token/',
      '/github//token',
      '/github/token.',
      '/github%2ftoken',
      'http://127.0.0.1/aws/credentials',
      'http://evil.example/github/token',
      '*',
    ];
    for (const path of tricks) {
      const r = await raw(`GET ${path} HTTP/1.1`);
      expect({ path, status: r.status }).toEqual({ path, status: 404 });
      expect(r.body).not.toContain('SecretAccessKey');
      expect(r.body).not.toContain('"token"');
    }
  }, 60000);

  test('an overlong path or query is refused before it is read (431); a long one under the cap is a 404', async () => {
    const over = await raw(`GET /aws/credentials?${'a'.repeat(20000)} HTTP/1.1`);
    expect(over.status).toBe(431);
    const overPath = await raw(`GET /aws/${'a'.repeat(20000)} HTTP/1.1`);
    expect(overPath.status).toBe(431);
    const long = await raw(`GET /aws/credentials/${'a'.repeat(8000)} HTTP/1.1`);
    expect(long.status).toBe(404);
  }, 60000);

  test('methods other than GET are 405 on the credential paths; a malformed method is 400; CONNECT gets nothing', async () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'HEAD', 'PROPFIND']) {
      for (const path of ['/aws/credentials', '/github/token']) {
        const r = await raw(`${method} ${path} HTTP/1.1`);
        expect({ method, path, status: r.status }).toEqual({ method, path, status: 405 });
        expect(r.text).not.toContain('SecretAccessKey');
        expect(r.text).not.toContain('"token"');
      }
    }
    const lower = await raw('get /aws/credentials HTTP/1.1');
    expect(lower.status).toBe(400);
    const tunnel = await raw('CONNECT 127.0.0.1:443 HTTP/1.1');
    expect(tunnel.text).not.toContain('SecretAccessKey');
    expect([0, 400, 404, 405]).toContain(tunnel.status);
  }, 60000);

  test('the bearer token does not stop the broker through any path or method; a wrong token ahead of the right one is 401', async () => {
    for (const head of [
      'POST /control/stop HTTP/1.1',
      'POST /control/stop?token=x HTTP/1.1',
      'POST //control/stop HTTP/1.1',
      'GET /control/stop HTTP/1.1',
    ]) {
      const r = await raw(head);
      expect({ head, refused: [401, 404, 405].includes(r.status) }).toEqual({ head, refused: true });
    }
    // Two Authorization headers: the server keeps the first.
    expect((await raw('GET /aws/credentials HTTP/1.1', { auth: ['wrong', token] })).status).toBe(401);
    expect((await raw('GET /aws/credentials?x HTTP/1.1', { auth: false })).status).toBe(401);
    // Still serving, still the same answer.
    const after = await raw('GET /aws/credentials HTTP/1.1');
    expect(after.status).toBe(200);
    expect(after.body).toBe(plainAws);
    expect(count('broker.stopped')).toBe(0);
  }, 60000);
});
