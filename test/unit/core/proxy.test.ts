/**
 * HTTPS_PROXY / HTTP_PROXY / NO_PROXY: every outbound client (the ID-token GET, the GitHub
 * API, STS, Secrets Manager and SSM) goes through a loopback CONNECT proxy when the passed
 * env names one, and around it for the hosts NO_PROXY names. The stand-ins speak plain
 * HTTP, so those clients go through HTTP_PROXY; a TLS server with a test-made certificate
 * proves the HTTPS tunnel (CONNECT, then TLS to the real host inside it).
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer, get as httpsGet } from 'node:https';
import type { AddressInfo } from 'node:net';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { startConnectProxy, type ConnectProxy } from '../../../src/devkit/connect-proxy.js';
import { motoAvailable, startMoto, type Moto } from '../../../src/devkit/moto.js';
import { startOidcIssuer, type OidcIssuer } from '../../../src/devkit/oidc-issuer.js';
import { GithubApi } from '../../../src/github/api.js';
import { assumeRoleWithWebIdentity } from '../../../src/aws/sts.js';
import { fetchSecrets } from '../../../src/secrets/fetch.js';
import { parseSecretSpecs } from '../../../src/secrets/spec.js';
import { SecretRegistry } from '../../../src/platform/mask.js';
import { getIdToken } from '../../../src/platform/oidc.js';
import { bypassesProxy, proxyAgents, proxyFor } from '../../../src/platform/proxy.js';
import { CordonError } from '../../../src/platform/errors.js';
import { tempDir } from '../../harness/tmp.js';
import { selfSignedCert } from '../../harness/tls.js';

const available = motoAvailable();
if (!available && process.env.CI === 'true')
  throw new Error('moto_server is not on PATH; CI must provide it');
const maybe = available ? describe : describe.skip;

const registry = (): SecretRegistry => new SecretRegistry(() => {});

describe('NO_PROXY and the proxy URL', () => {
  test('NO_PROXY matches a host, its subdomains, `*`, and host:port; not a longer name', () => {
    const env = { NO_PROXY: 'internal.example, .corp.test,localhost:8080' };
    expect(bypassesProxy('internal.example', 443, env)).toBe(true);
    expect(bypassesProxy('sts.internal.example', 443, env)).toBe(true);
    expect(bypassesProxy('notinternal.example', 443, env)).toBe(false);
    expect(bypassesProxy('a.corp.test', 443, env)).toBe(true);
    expect(bypassesProxy('localhost', 8080, env)).toBe(true);
    expect(bypassesProxy('localhost', 8081, env)).toBe(false);
    expect(bypassesProxy('anything.test', 1, { no_proxy: '*' })).toBe(true);
    expect(bypassesProxy('sts.us-east-1.amazonaws.com', 443, {})).toBe(false);
  });

  test('lower-case variables win; a proxy URL that is not http:// is an error that keeps its password out', () => {
    expect(proxyFor('https:', { https_proxy: 'http://a:1', HTTPS_PROXY: 'http://b:2' })?.host).toBe('a:1');
    expect(proxyFor('https:', { HTTPS_PROXY: 'proxy.example:3128' })?.host).toBe('proxy.example:3128');
    expect(proxyFor('http:', { HTTPS_PROXY: 'http://a:1' })).toBeUndefined();
    let e: unknown;
    try {
      proxyFor('https:', { HTTPS_PROXY: 'https://user:pw-9f8e7d@proxy.example:3128' });
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(CordonError);
    expect(String((e as Error).message)).toContain('HTTPS_PROXY');
    expect(JSON.stringify(e) + String((e as Error).message)).not.toContain('pw-9f8e7d');
  });
});

describe('the HTTPS tunnel', () => {
  let proxy: ConnectProxy;
  let server: ReturnType<typeof createHttpsServer>;
  let port = 0;
  let ca = '';

  beforeAll(async () => {
    const dir = tempDir('cordon-proxy-tls-');
    const { key, cert } = selfSignedCert(dir, ['localhost']);
    ca = readFileSync(cert, 'utf8');
    server = createHttpsServer({ key: readFileSync(key), cert: ca }, (_req, res) => res.end('tls-ok'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
    proxy = await startConnectProxy({ requireAuth: `Basic ${Buffer.from('u:p-3c4d').toString('base64')}` });
  });

  afterAll(async () => {
    await proxy?.close();
    await new Promise((r) => server?.close(r));
  });

  const get = (env: Record<string, string>): Promise<string> =>
    new Promise((resolve, reject) => {
      const { httpsAgent } = proxyAgents(env, { ca });
      httpsGet(`https://localhost:${port}/`, { agent: httpsAgent, ca }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve(body));
      }).on('error', reject);
    });

  test('CONNECT localhost:port with the proxy password, then TLS checked against the real name', async () => {
    const at = proxy.connects.length;
    const url = new URL(proxy.url);
    expect(await get({ HTTPS_PROXY: `http://u:p-3c4d@${url.host}` })).toBe('tls-ok');
    expect(proxy.connects.slice(at)).toEqual([`localhost:${port}`]);
  });

  test('a proxy refusing CONNECT (407) is an error naming its host, never its password', async () => {
    const url = new URL(proxy.url);
    const e = await get({ HTTPS_PROXY: `http://u:wrong-7a6b@${url.host}` }).catch((err: Error) => err);
    expect(String(e)).toContain(`proxy ${url.host}: CONNECT localhost:${port} was answered HTTP 407`);
    expect(String(e)).not.toContain('wrong-7a6b');
  });

  test('NO_PROXY=localhost goes around the proxy', async () => {
    const at = proxy.connects.length;
    expect(await get({ HTTPS_PROXY: proxy.url, NO_PROXY: 'localhost' })).toBe('tls-ok');
    expect(proxy.connects.length).toBe(at);
  });
});

maybe('each client through the proxy', () => {
  let proxy: ConnectProxy;
  let moto: Moto;
  let issuer: OidcIssuer;
  let api: Server;
  let apiHost = '';

  beforeAll(async () => {
    proxy = await startConnectProxy();
    moto = await startMoto();
    issuer = await startOidcIssuer();
    api = createHttpServer((_req, res) => res.setHeader('content-type', 'application/json').end('{"ok":1}'));
    await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
    apiHost = `127.0.0.1:${(api.address() as AddressInfo).port}`;
    const sm = new SecretsManagerClient({
      region: 'us-east-1',
      endpoint: moto.endpoint,
      credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    });
    await sm.send(new CreateSecretCommand({ Name: 'via/proxy', SecretString: 'proxied-value-1a2b' }));
    sm.destroy();
  }, 60000);

  afterAll(async () => {
    await proxy?.close();
    await issuer?.close();
    await moto?.stop();
    await new Promise((r) => api?.close(r));
  });

  const hostOf = (u: string): string => new URL(u).host;
  /** What each client tunnels to, with and without NO_PROXY naming the stand-ins' address. */
  async function connectsOf(fn: (env: Record<string, string>) => Promise<unknown>): Promise<string[][]> {
    const out: string[][] = [];
    for (const extra of [{}, { NO_PROXY: '127.0.0.1' }] as Record<string, string>[]) {
      const at = proxy.connects.length;
      await fn({ HTTP_PROXY: proxy.url, ...extra });
      out.push(proxy.connects.slice(at));
    }
    return out;
  }

  test('the ID-token GET', async () => {
    const seen = await connectsOf((env) =>
      getIdToken('sts.amazonaws.com', { env: { ...issuer.env, ...env }, registry: registry() }),
    );
    expect(seen).toEqual([[hostOf(issuer.requestUrl)], []]);
  });

  test('the GitHub API client', async () => {
    const seen = await connectsOf((env) =>
      new GithubApi(`http://${apiHost}`, { env }).once('GET', '/x', 'token t'),
    );
    expect(seen).toEqual([[apiHost], []]);
  });

  test('STS (AssumeRoleWithWebIdentity)', async () => {
    const token = await getIdToken('sts.amazonaws.com', { env: issuer.env, registry: registry() });
    const seen = await connectsOf((env) =>
      assumeRoleWithWebIdentity(
        {
          roleArn: 'arn:aws:iam::111122223333:role/proxied',
          sessionName: 'proxied',
          durationSeconds: 900,
          webIdentityToken: token,
          region: 'us-east-1',
        },
        { env: { ...env, AWS_ENDPOINT_URL_STS: moto.endpoint }, registry: registry(), action: 'aws' },
      ),
    );
    expect(seen).toEqual([[hostOf(moto.endpoint)], []]);
  });

  test('Secrets Manager', async () => {
    const values: string[] = [];
    const seen = await connectsOf(async (env) => {
      const got = await fetchSecrets(parseSecretSpecs('A=aws-sm:via/proxy'), {
        env: {
          ...env,
          AWS_REGION: 'us-east-1',
          AWS_ENDPOINT_URL: moto.endpoint,
          AWS_ACCESS_KEY_ID: 'testing',
          AWS_SECRET_ACCESS_KEY: 'testing',
        },
      });
      values.push(got[0].value);
    });
    expect(values).toEqual(['proxied-value-1a2b', 'proxied-value-1a2b']);
    expect(seen[0].length).toBeGreaterThan(0);
    expect(new Set(seen[0])).toEqual(new Set([hostOf(moto.endpoint)]));
    expect(seen[1]).toEqual([]);
  });
});
