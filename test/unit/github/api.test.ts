import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { GithubApi, GithubApiError } from '../../../src/github/api.js';
import { loadAppKey, signAppJwt } from '../../../src/github/app-jwt.js';
import { makeAppKey, startGithubApi, type GithubApiServer } from '../../../src/devkit/github-api.js';

let key: ReturnType<typeof makeAppKey>;
let server: GithubApiServer;

beforeAll(async () => {
  key = makeAppKey();
  server = await startGithubApi({
    appId: 7,
    slug: 'unit-app',
    botId: 70,
    publicKey: key.publicKey,
    installations: [{ id: 1, account: 'o', repositories: ['r'], permissions: { contents: 'read' } }],
  });
});

afterAll(() => server.close());

describe('app JWT', () => {
  test('RS256 with iat backdated 60 s, exp 9 min ahead, numeric iss for an app id', async () => {
    const jwt = await signAppJwt(loadAppKey(key.pkcs1), '7', 1_700_000_000);
    expect(decodeProtectedHeader(jwt)).toMatchObject({ alg: 'RS256', typ: 'JWT' });
    expect(decodeJwt(jwt)).toEqual({ iss: 7, iat: 1_700_000_000 - 60, exp: 1_700_000_000 + 540 });
    expect(decodeJwt(await signAppJwt(loadAppKey(key.pkcs8), 'Iv23abc', 1)).iss).toBe('Iv23abc');
  });

  test('keys: PKCS#1 and PKCS#8 load; EC, encrypted and garbage are refused naming the input only', () => {
    expect(loadAppKey(key.pkcs1).asymmetricKeyType).toBe('rsa');
    expect(loadAppKey(key.pkcs8).asymmetricKeyType).toBe('rsa');
    expect(() =>
      loadAppKey('-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n'),
    ).toThrow(/encrypted PKCS#8/);
    expect(() => loadAppKey('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n')).toThrow(
      /private-key is malformed/,
    );
  });

  test('the loopback server checks the signature: a key of another app is refused', async () => {
    const api = new GithubApi(server.url);
    const good = await signAppJwt(loadAppKey(key.pkcs1), '7', Date.now() / 1000);
    expect((await api.once<{ slug: string }>('GET', '/app', `Bearer ${good}`)).body.slug).toBe('unit-app');
    const other = await signAppJwt(loadAppKey(makeAppKey().pkcs1), '7', Date.now() / 1000);
    const e = await api.once('GET', '/app', `Bearer ${other}`).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(GithubApiError);
    expect(e).toMatchObject({
      status: 401,
      apiMessage: 'A JSON web token could not be decoded',
      documentationUrl: 'https://docs.github.com/rest',
    });
  });
});

describe('retries', () => {
  test('5xx and secondary rate limits are retried, waiting what retry-after says; 4xx is not', async () => {
    const waits: number[] = [];
    const api = new GithubApi(server.url, { sleep: async (ms) => void waits.push(ms), maxAttempts: 5 });
    const jwt = await signAppJwt(loadAppKey(key.pkcs1), '7', Date.now() / 1000);
    server.rateLimitNext(1, 7);
    server.failNext(503, 1);
    const before = server.calls.length;
    const r = await api.request<{ id: number }>('GET', '/app', () => `Bearer ${jwt}`);
    expect(r.body.id).toBe(7);
    expect(server.calls.length - before).toBe(3);
    expect(waits[0]).toBe(7000);
    expect(waits[1]).toBeLessThan(1000);

    const n = server.calls.length;
    await expect(
      api.request('GET', '/repos/o/missing/installation', () => `Bearer ${jwt}`),
    ).rejects.toMatchObject({ status: 404 });
    expect(server.calls.length - n).toBe(1);
  });

  test('a secondary rate limit without retry-after waits a minute, as GitHub asks', async () => {
    const waits: number[] = [];
    const api = new GithubApi(server.url, { sleep: async (ms) => void waits.push(ms) });
    server.rateLimitNext(1, undefined);
    await api.request('GET', '/users/unit-app%5Bbot%5D', () => '');
    expect(waits).toEqual([60000]);
  });

  test('gives up after maxAttempts', async () => {
    const api = new GithubApi(server.url, { sleep: async () => undefined, maxAttempts: 2 });
    server.failNext(500, 2);
    const before = server.calls.length;
    await expect(api.request('GET', '/app', () => 'Bearer x')).rejects.toMatchObject({ status: 500 });
    expect(server.calls.length - before).toBe(2);
  });

  test('no answer at all is status 0 and retryable', async () => {
    const waits: number[] = [];
    const api = new GithubApi('http://127.0.0.1:1', {
      sleep: async (ms) => void waits.push(ms),
      maxAttempts: 2,
    });
    await expect(api.request('GET', '/app', () => 'Bearer x')).rejects.toMatchObject({ status: 0 });
    expect(waits).toHaveLength(1);
  });
});
