import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { decodeClaims, displayClaims, getIdToken } from '../../../src/platform/oidc.js';
import { SecretRegistry } from '../../../src/platform/mask.js';
import { CordonError } from '../../../src/platform/errors.js';
import { startOidcIssuer, type OidcIssuer } from '../../../src/devkit/oidc-issuer.js';

let issuer: OidcIssuer;
beforeAll(async () => {
  issuer = await startOidcIssuer({ claims: { environment: 'prod' } });
});
afterAll(() => issuer.close());

describe('oidc', () => {
  test('gets a token for the audience, signed and verifiable against the JWKS, and masks it', async () => {
    const masked: string[] = [];
    const registry = new SecretRegistry((v) => masked.push(v));
    const token = await getIdToken('sts.amazonaws.com', { env: issuer.env, registry });
    expect(issuer.requests).toContain('sts.amazonaws.com');
    const jwks = createRemoteJWKSet(new URL(`${issuer.url}/.well-known/jwks`));
    const { payload } = await jwtVerify(token, jwks, { issuer: issuer.url, audience: 'sts.amazonaws.com' });
    expect(payload.repository).toBe('octo-org/octo-repo');
    expect(masked).toContain(token);
    const claims = displayClaims(decodeClaims(token));
    expect(claims).toMatchObject({
      sub: 'repo:octo-org/octo-repo:ref:refs/heads/main',
      environment: 'prod',
      run_id: '4242',
    });
    expect(JSON.stringify(claims)).not.toContain(token);
  });

  test('missing request variables explain the id-token permission with YAML', async () => {
    const err = await getIdToken('x', { env: {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CordonError);
    expect((err as Error).message).toContain('permissions:\n  id-token: write');
  });

  test('retries a 5xx from the token service, and reports a 401 without the request token', async () => {
    issuer.failNext(503, 1);
    await expect(getIdToken('aud1', { env: issuer.env })).resolves.toMatch(/^ey/);
    const err = await getIdToken('aud2', {
      env: { ...issuer.env, ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'wrong-request-token' },
    }).catch((e: unknown) => e);
    expect((err as Error).message).toContain('HTTP 401');
    expect((err as Error).message).not.toContain('wrong-request-token');
  });
});
