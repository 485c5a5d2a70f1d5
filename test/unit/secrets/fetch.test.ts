/**
 * fetchSecrets against the moto server, through a loopback proxy that answers the way
 * Secrets Manager and SSM do when they throttle or deny (moto does neither).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from '@jest/globals';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { motoAvailable, startMoto, type Moto } from '../../../src/devkit/moto.js';
import { fetchSecrets } from '../../../src/secrets/fetch.js';
import { mapBounded } from '../../../src/platform/map-bounded.js';
import { parseSecretSpecs } from '../../../src/secrets/spec.js';

const available = motoAvailable();
if (!available && process.env.CI === 'true')
  throw new Error('moto_server is not on PATH; CI must provide it');
if (!available) console.log('secrets fetch tests skipped: moto_server is not on PATH and CI is unset');
const maybe = available ? describe : describe.skip;

const VALUE = 'sm-value-5d1e2f3a4b';
const PARAM = 'param-value-9a8b7c';

/** Faults for the next requests, as the JSON-protocol services send them. */
type JsonFault = { status: number; type: string } | 'stall' | undefined;

let moto: Moto;
let proxy: Server;
let proxyUrl: string;
let plan: JsonFault[] = [];
let always: JsonFault;
let inFlight = 0;
let maxInFlight = 0;
let requests = 0;
/** Requests held open and never answered (a service that accepts and then stalls). */
const stalled: import('node:http').ServerResponse[] = [];

beforeAll(async () => {
  if (!available) return;
  moto = await startMoto();
  const cfg = {
    region: 'us-east-1',
    endpoint: moto.endpoint,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  };
  const sm = new SecretsManagerClient(cfg);
  const ssm = new SSMClient(cfg);
  await sm.send(new CreateSecretCommand({ Name: 'app/one', SecretString: VALUE }));
  for (let i = 0; i < 20; i++)
    await sm.send(new CreateSecretCommand({ Name: `bulk/${i}`, SecretString: `bulk-value-${i}-xyzw` }));
  await ssm.send(new PutParameterCommand({ Name: '/p/one', Value: PARAM, Type: 'SecureString' }));
  await sm.send(
    new CreateSecretCommand({ Name: 'bin/text', SecretBinary: Buffer.from('bïnary-but-utf8 ✓') }),
  );
  await sm.send(
    new CreateSecretCommand({
      Name: 'bin/raw',
      SecretBinary: Buffer.from([0, 1, 2, 0xff, 0xfe, 0x80, 0x41, 0x42]),
    }),
  );
  await sm.send(
    new CreateSecretCommand({
      Name: 'json/nested',
      SecretString: JSON.stringify({ db: { password: 'nested-pass-1234', port: 5432 } }),
    }),
  );
  sm.destroy();
  ssm.destroy();
  const upstream = new URL(moto.endpoint);
  proxy = createServer((req, res) => {
    requests++;
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const fault = plan.length ? plan.shift() : always;
      // Hold each request a little so that concurrency shows.
      setTimeout(() => {
        if (fault === 'stall') {
          inFlight--;
          stalled.push(res);
          return;
        }
        if (fault) {
          inFlight--;
          res.writeHead(fault.status, {
            'content-type': 'application/x-amz-json-1.1',
            'x-amzn-errortype': fault.type,
          });
          res.end(JSON.stringify({ __type: fault.type, message: 'Rate exceeded or denied' }));
          return;
        }
        const body = Buffer.concat(chunks);
        const up = request(
          {
            host: upstream.hostname,
            port: upstream.port,
            method: req.method,
            path: req.url,
            headers: { ...req.headers, host: upstream.host },
          },
          (upRes) => {
            res.writeHead(upRes.statusCode ?? 502, upRes.headers);
            upRes.pipe(res);
            upRes.on('end', () => inFlight--);
          },
        );
        up.end(body);
      }, 20);
    });
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
}, 60000);

afterAll(async () => {
  for (const res of stalled) res.destroy();
  proxy?.closeAllConnections();
  await new Promise((r) => (proxy ? proxy.close(r) : r(undefined)));
  await moto?.stop();
});

beforeEach(() => {
  plan = [];
  always = undefined;
  maxInFlight = 0;
  requests = 0;
});

function env(): Record<string, string> {
  return { ...moto.env, AWS_ENDPOINT_URL: proxyUrl };
}

const fast = { baseMs: 5, maxDelayMs: 20 };

maybe('fetchSecrets', () => {
  test('fetches aws-sm, ssm, json and env sources', async () => {
    const specs = parseSecretSpecs('A=aws-sm:app/one\nB=ssm:/p/one\nC=json:C_KEY\nD=env:D_SRC');
    const got = await fetchSecrets(specs, {
      env: { ...env(), D_SRC: 'from-env-1234' },
      secretsJson: { C_KEY: 'from-json-1234' },
    });
    expect(got.map((g) => [g.name, g.value, g.source])).toEqual([
      ['A', VALUE, 'aws-sm:app/one'],
      ['B', PARAM, 'ssm:/p/one'],
      ['C', 'from-json-1234', 'json:C_KEY'],
      ['D', 'from-env-1234', 'env:D_SRC'],
    ]);
  });

  test('backs off on throttling and succeeds', async () => {
    plan = [
      { status: 400, type: 'ThrottlingException' },
      { status: 400, type: 'ThrottlingException' },
    ];
    const retries: string[] = [];
    const got = await fetchSecrets(parseSecretSpecs('A=aws-sm:app/one'), {
      env: env(),
      retry: fast,
      onRetry: (source, reason) => retries.push(`${source} ${reason}`),
    });
    expect(got[0].value).toBe(VALUE);
    expect(retries).toEqual(['aws-sm:app/one ThrottlingException', 'aws-sm:app/one ThrottlingException']);
  });

  test('a request the service never answers is abandoned and retried; one that never ends fails by name', async () => {
    plan = ['stall'];
    const retries: string[] = [];
    const got = await fetchSecrets(parseSecretSpecs('A=aws-sm:app/one'), {
      env: env(),
      retry: fast,
      requestTimeoutMs: 400,
      onRetry: (source, reason) => retries.push(`${source} ${reason}`),
    });
    expect(got[0].value).toBe(VALUE);
    expect(retries).toEqual(['aws-sm:app/one TimeoutError']);

    always = 'stall';
    await expect(
      fetchSecrets(parseSecretSpecs('B=ssm:/p/one'), {
        env: env(),
        retry: { ...fast, maxAttempts: 2 },
        requestTimeoutMs: 400,
      }),
    ).rejects.toThrow(/B.*ssm:\/p\/one.*the request failed \(TimeoutError, 2 attempts\)/s);
  });

  test('throttling that never ends, AccessDenied and a missing secret each give a clear error by name', async () => {
    always = { status: 400, type: 'ThrottlingException' };
    await expect(
      fetchSecrets(parseSecretSpecs('A=aws-sm:app/one'), { env: env(), retry: { ...fast, maxAttempts: 3 } }),
    ).rejects.toThrow(
      'A (aws-sm:app/one): AWS kept throttling the request (ThrottlingException, HTTP 400, 3 attempts)',
    );
    always = { status: 400, type: 'AccessDeniedException' };
    const denied = fetchSecrets(parseSecretSpecs('A=aws-sm:app/one\nB=ssm:/p/one'), {
      env: env(),
      retry: fast,
    });
    await expect(denied).rejects.toThrow(
      'A (aws-sm:app/one): access was denied (AccessDeniedException, HTTP 400)',
    );
    await expect(denied).rejects.toThrow('B (ssm:/p/one): access was denied');
    expect(requests).toBe(3 + 2);
    always = undefined;
    const missing = fetchSecrets(parseSecretSpecs('A=aws-sm:app/one\nM=aws-sm:app/missing'), {
      env: env(),
      retry: fast,
    });
    await expect(missing).rejects.toThrow('could not get 1 secret, so nothing was started');
    await expect(missing).rejects.toThrow(
      'M (aws-sm:app/missing): it was not found (ResourceNotFoundException',
    );
    await missing.catch((e: Error) => expect(e.message).not.toContain(VALUE));
  });

  test('fetches in parallel, never more than the bound at once, and each source once', async () => {
    const lines = Array.from({ length: 20 }, (_, i) => `B${i}=aws-sm:bulk/${i}`);
    lines.push('AGAIN=aws-sm:bulk/0');
    const got = await fetchSecrets(parseSecretSpecs(lines.join('\n')), { env: env(), concurrency: 4 });
    expect(got).toHaveLength(21);
    expect(got[20]).toMatchObject({ name: 'AGAIN', value: 'bulk-value-0-xyzw' });
    expect(requests).toBe(20);
    expect(maxInFlight).toBeLessThanOrEqual(4);
    expect(maxInFlight).toBeGreaterThan(1);
  });

  test('binary secrets: UTF-8 text arrives unchanged; other bytes are refused by name, not altered', async () => {
    const got = await fetchSecrets(parseSecretSpecs('T=aws-sm:bin/text'), { env: env() });
    expect(got[0].value).toBe('bïnary-but-utf8 ✓');
    await expect(fetchSecrets(parseSecretSpecs('R=aws-sm:bin/raw'), { env: env() })).rejects.toThrow(
      'secrets: aws-sm:bin/raw is a binary secret that is not UTF-8 text',
    );
  });

  test('follows a dotted JSON path; non-string leaves come as JSON', async () => {
    const got = await fetchSecrets(
      parseSecretSpecs('P=aws-sm:json/nested#db.password\nN=aws-sm:json/nested#db.port'),
      { env: env() },
    );
    expect(got.map((g) => g.value)).toEqual(['nested-pass-1234', '5432']);
    expect(requests).toBe(1);
  });

  test('a missing region is a clear error', async () => {
    const e = { ...env(), AWS_REGION: '', AWS_DEFAULT_REGION: '' };
    await expect(fetchSecrets(parseSecretSpecs('A=aws-sm:app/one'), { env: e })).rejects.toThrow(
      'no AWS region for app/one',
    );
  });
});

describe('values', () => {
  test('an empty value is refused by name unless marked not secret', async () => {
    const specs = parseSecretSpecs('EMPTY=env:E\nFINE=env:F', { notSecret: ['FINE'] });
    await expect(fetchSecrets(specs, { env: { E: '', F: '' } })).rejects.toThrow(
      'EMPTY (env:E): the value is empty',
    );
    const ok = await fetchSecrets(parseSecretSpecs('FINE=env:F', { notSecret: ['FINE'] }), {
      env: { F: '' },
    });
    expect(ok[0]).toMatchObject({ name: 'FINE', value: '', notSecret: true });
  });

  test('a missing env or json source names the secret', async () => {
    const specs = parseSecretSpecs('A=env:NOT_SET\nB=json:NOPE');
    const p = fetchSecrets(specs, { env: {}, secretsJson: { OTHER: 'other-value-123' } });
    await expect(p).rejects.toThrow('A (env:NOT_SET): the variable is not set in this step');
    await expect(p).rejects.toThrow('B (json:NOPE): secrets-json has no such key');
    await p.catch((e: Error) => expect(e.message).not.toContain('other-value-123'));
  });
});

describe('mapBounded', () => {
  test('keeps order and reports each failure', async () => {
    const r = await mapBounded([1, 2, 3], 2, async (n) => {
      if (n === 2) throw new Error('two');
      return n * 10;
    });
    expect(r.map((x) => x.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
  });
});
