/**
 * A loopback stand-in for the Actions ID-token service: RS256 tokens carrying GitHub's
 * real claim names, a JWKS and an OpenID configuration. Used by the tests and `cordon demo`.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';

export interface IssuerOptions {
  /** Claims merged over the defaults (repository, ref, sha, ...). */
  claims?: Record<string, unknown>;
  /** Token lifetime in seconds. */
  lifetime?: number;
}

export interface OidcIssuer {
  url: string;
  /** Value for ACTIONS_ID_TOKEN_REQUEST_URL. */
  requestUrl: string;
  /** Value for ACTIONS_ID_TOKEN_REQUEST_TOKEN. */
  requestToken: string;
  /** The two variables, ready to merge into a step's env. */
  env: Record<string, string>;
  /** Audiences requested, in order. */
  requests: string[];
  jwks: { keys: JWK[] };
  /** Makes the next `n` token requests answer this HTTP status. */
  failNext(status: number, n?: number): void;
  close(): Promise<void>;
}

export function defaultClaims(): Record<string, unknown> {
  return {
    sub: 'repo:octo-org/octo-repo:ref:refs/heads/main',
    repository: 'octo-org/octo-repo',
    repository_id: '123456',
    repository_owner: 'octo-org',
    repository_owner_id: '654321',
    repository_visibility: 'private',
    ref: 'refs/heads/main',
    ref_type: 'branch',
    sha: '0000000000000000000000000000000000000000',
    workflow: 'agent',
    workflow_ref: 'octo-org/octo-repo/.github/workflows/agent.yml@refs/heads/main',
    workflow_sha: '0000000000000000000000000000000000000000',
    job_workflow_ref: 'octo-org/octo-repo/.github/workflows/agent.yml@refs/heads/main',
    job_workflow_sha: '0000000000000000000000000000000000000000',
    run_id: '4242',
    run_number: '7',
    run_attempt: '1',
    runner_environment: 'github-hosted',
    actor: 'octocat',
    actor_id: '583231',
    triggering_actor: 'octocat',
    event_name: 'workflow_dispatch',
    head_ref: '',
    base_ref: '',
  };
}

export async function startOidcIssuer(opts: IssuerOptions = {}): Promise<OidcIssuer> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = randomBytes(8).toString('hex');
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  const requestToken = randomBytes(24).toString('hex');
  const requests: string[] = [];
  let failures: { status: number; left: number } | undefined;
  let base = '';

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', base);
    const send = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (url.pathname === '/.well-known/openid-configuration') {
      return send(200, {
        issuer: base,
        jwks_uri: `${base}/.well-known/jwks`,
        subject_types_supported: ['public', 'pairwise'],
        response_types_supported: ['id_token'],
        claims_supported: Object.keys(defaultClaims()),
        id_token_signing_alg_values_supported: ['RS256'],
        scopes_supported: ['openid'],
      });
    }
    if (url.pathname === '/.well-known/jwks') return send(200, { keys: [jwk] });
    if (url.pathname === '/token') {
      if (req.headers.authorization !== `Bearer ${requestToken}`)
        return send(401, { message: 'Bad credentials' });
      if (failures && failures.left > 0) {
        failures.left--;
        return send(failures.status, { message: 'injected failure' });
      }
      const audience = url.searchParams.get('audience') ?? base;
      requests.push(audience);
      const now = Math.floor(Date.now() / 1000);
      new SignJWT({ ...defaultClaims(), ...opts.claims })
        .setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' })
        .setIssuer(base)
        .setAudience(audience)
        .setIssuedAt(now)
        .setNotBefore(now - 5)
        .setExpirationTime(now + (opts.lifetime ?? 300))
        .setJti(randomBytes(8).toString('hex'))
        .sign(privateKey)
        .then(
          (value) => send(200, { value }),
          () => send(500, { message: 'signing failed' }),
        );
      return;
    }
    send(404, { message: 'Not Found' });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const requestUrl = `${base}/token?api-version=2.0`;
  return {
    url: base,
    requestUrl,
    requestToken,
    env: { ACTIONS_ID_TOKEN_REQUEST_URL: requestUrl, ACTIONS_ID_TOKEN_REQUEST_TOKEN: requestToken },
    requests,
    jwks: { keys: [jwk] },
    failNext(status: number, n = 1) {
      failures = { status, left: n };
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
