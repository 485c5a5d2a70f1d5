/**
 * The STS exchange against moto through the fault proxy, called as a library (as actions/run
 * does): retries and their bounds, timeouts, endpoint steering from the passed env only, and
 * masking before return.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { CordonError } from '../../../src/platform/errors.js';
import { SecretRegistry } from '../../../src/platform/mask.js';
import { getIdToken } from '../../../src/platform/oidc.js';
import { assumeRoleWithWebIdentity, trustPolicyFor, type AssumeRequest } from '../../../src/aws/sts.js';
import { startFaultProxy, STS_FAULTS, type FaultProxy } from '../../../src/devkit/fault-proxy.js';
import { motoAvailable, startMoto, type Moto } from '../../../src/devkit/moto.js';
import { startOidcIssuer, type OidcIssuer } from '../../../src/devkit/oidc-issuer.js';
import { httpGetFor } from '../../../src/platform/http-get.js';

const available = motoAvailable();
if (!available && process.env.CI === 'true')
  throw new Error('moto_server is not on PATH; CI must provide it');
if (!available) console.log('aws sts tests skipped: moto_server is not on PATH and CI is unset');
const maybe = available ? describe : describe.skip;

let moto: Moto;
let issuer: OidcIssuer;
let proxy: FaultProxy;
let token: string;

beforeAll(async () => {
  if (!available) return;
  moto = await startMoto();
  issuer = await startOidcIssuer();
  proxy = await startFaultProxy(moto.endpoint);
  token = await getIdToken('sts.amazonaws.com', {
    env: issuer.env,
    fetch: httpGetFor({}),
    registry: new SecretRegistry(() => {}),
  });
}, 60000);

afterAll(async () => {
  await proxy?.close();
  await issuer?.close();
  await moto?.stop();
});

const request = (): AssumeRequest => ({
  roleArn: 'arn:aws:iam::111122223333:role/lib',
  sessionName: 'lib-test',
  durationSeconds: 900,
  webIdentityToken: token,
  region: 'us-east-1',
});
const fast = { baseMs: 5, maxDelayMs: 20 };

describe('retry classification', () => {
  test('the trust policy names the issuer host as the condition key prefix', () => {
    const t = JSON.parse(
      trustPolicyFor(
        {
          iss: 'https://token.actions.githubusercontent.com',
          aud: 'sts.amazonaws.com',
          sub: 'repo:o/r:ref:refs/heads/main',
        },
        'arn:aws-cn:iam::111122223333:role/x',
      ),
    );
    expect(t.Principal.Federated).toBe(
      'arn:aws-cn:iam::111122223333:oidc-provider/token.actions.githubusercontent.com',
    );
    expect(t.Condition.StringLike['token.actions.githubusercontent.com:sub']).toBe(
      'repo:o/r:ref:refs/heads/main',
    );
    expect(t.Condition.StringEquals['token.actions.githubusercontent.com:aud']).toBe('sts.amazonaws.com');
  });
});

maybe('assumeRoleWithWebIdentity against moto', () => {
  test('masks the three values before returning and parses the account', async () => {
    const masked: string[] = [];
    const registry = new SecretRegistry((v) => masked.push(v));
    const c = await assumeRoleWithWebIdentity(request(), {
      env: { AWS_ENDPOINT_URL: moto.endpoint },
      registry,
    });
    expect(c.account).toBe('111122223333');
    expect(c.assumedRoleArn).toBe('arn:aws:sts::111122223333:assumed-role/lib/lib-test');
    for (const v of [c.accessKeyId, c.secretAccessKey, c.sessionToken]) expect(masked).toContain(v);
    expect(
      registry.scrub(`x ${c.secretAccessKey} ${Buffer.from(c.sessionToken).toString('base64')}`),
    ).not.toContain(c.secretAccessKey);
  });

  test('AWS_ENDPOINT_URL_STS wins over AWS_ENDPOINT_URL; process.env is not read', async () => {
    const before = proxy.requests.length;
    const saved = process.env.AWS_ENDPOINT_URL_STS;
    process.env.AWS_ENDPOINT_URL_STS = 'http://127.0.0.1:1';
    try {
      await assumeRoleWithWebIdentity(request(), {
        env: { AWS_ENDPOINT_URL_STS: proxy.url, AWS_ENDPOINT_URL: 'http://127.0.0.1:1' },
        registry: new SecretRegistry(() => {}),
      });
    } finally {
      if (saved === undefined) delete process.env.AWS_ENDPOINT_URL_STS;
      else process.env.AWS_ENDPOINT_URL_STS = saved;
    }
    expect(proxy.requests.length).toBe(before + 1);
  });

  test('a response slower than the timeout is retried', async () => {
    const before = proxy.requests.length;
    proxy.plan({ kind: 'delay', ms: 1500 });
    const reasons: string[] = [];
    const c = await assumeRoleWithWebIdentity(request(), {
      env: proxy.env,
      registry: new SecretRegistry(() => {}),
      timeoutMs: 400,
      retry: fast,
      onRetry: (r) => reasons.push(r),
    });
    expect(c.sessionToken).toBeTruthy();
    expect(proxy.requests.length - before).toBe(2);
    expect(reasons[0]).toMatch(/Timeout|ECONNRESET|abort/i);
  });

  test('retries stop at maxAttempts and the error says so', async () => {
    const before = proxy.requests.length;
    proxy.plan({ kind: 'status', status: 503 }, { kind: 'status', status: 503 });
    const e = await assumeRoleWithWebIdentity(request(), {
      env: proxy.env,
      registry: new SecretRegistry(() => {}),
      maxAttempts: 2,
      retry: fast,
    }).catch((x) => x);
    expect(e).toBeInstanceOf(CordonError);
    expect((e as CordonError).message).toContain('ServiceUnavailable');
    expect(proxy.requests.length - before).toBe(2);
  });

  test('AccessDenied is tried once, with the input names the caller passed', async () => {
    const before = proxy.requests.length;
    proxy.plan(STS_FAULTS.accessDenied);
    const e = (await assumeRoleWithWebIdentity(request(), {
      env: proxy.env,
      registry: new SecretRegistry(() => {}),
      retry: fast,
      action: 'run',
      inputNames: { roleToAssume: 'aws-role-to-assume', audience: 'aws-audience' },
    }).catch((x) => x)) as CordonError;
    expect(proxy.requests.length - before).toBe(1);
    expect(e.input).toBe('aws-role-to-assume');
    expect(e.message).toMatch(/^run: STS refused/);
    expect(e.message).toContain('check aws-role-to-assume and aws-audience');
    expect(e.message).not.toContain(token);
  });
});
