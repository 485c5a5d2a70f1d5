/**
 * The workflow's OIDC ID token: requested from the runner's token service for one
 * audience, masked at once, and decoded (not verified: the relying party verifies) for display.
 */
import { decodeJwt, type JWTPayload } from 'jose';
import { CordonError } from './errors.js';
import type { Env } from './runner.js';
import { retry } from './retry.js';
import type { SecretRegistry } from './mask.js';
import { httpGetFor, type HttpGet } from './http-get.js';

export const ID_TOKEN_PERMISSION_YAML = 'permissions:\n  id-token: write\n  contents: read';

export interface OidcDeps {
  env: Env;
  fetch?: HttpGet;
  registry?: SecretRegistry;
  /** The action the user wrote (`run`, `aws`, `start`): the error's prefix; default `oidc`. */
  action?: string;
  /** The input that set the audience as the user wrote it (`aws-audience`, `audience`), for the error. */
  audienceInput?: string;
}

export function hasIdTokenAccess(env: Env): boolean {
  return Boolean(env.ACTIONS_ID_TOKEN_REQUEST_URL && env.ACTIONS_ID_TOKEN_REQUEST_TOKEN);
}

export function missingIdTokenError(action: string): CordonError {
  return new CordonError({
    what: `${action}: the workflow's OIDC token is not available (ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set)`,
    why: 'the job was not granted the id-token permission, so the runner cannot mint an ID token for it',
    fix: `add to the job (or workflow):\n${ID_TOKEN_PERMISSION_YAML}\n(pull requests from forks never get an ID token)`,
  });
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Fetches an ID token for `audience`; masks it before returning. */
export async function getIdToken(audience: string, deps: OidcDeps): Promise<string> {
  const { env } = deps;
  if (!hasIdTokenAccess(env)) throw missingIdTokenError('oidc');
  // Node's fetch ignores HTTPS_PROXY; this GET goes through the proxy `env` names, if any.
  const doFetch = deps.fetch ?? httpGetFor(env);
  const url = new URL(env.ACTIONS_ID_TOKEN_REQUEST_URL as string);
  if (audience) url.searchParams.set('audience', audience);
  const token = await retry(
    async () => {
      const res = await doFetch(url, {
        headers: {
          Authorization: `Bearer ${env.ACTIONS_ID_TOKEN_REQUEST_TOKEN}`,
          Accept: 'application/json',
        },
        signal: AbortSignal.timeout(10000),
      });
      if (!res.ok) throw new HttpError(res.status, `the ID token service answered HTTP ${res.status}`);
      const body = (await res.json()) as { value?: unknown };
      if (typeof body.value !== 'string' || body.value.split('.').length !== 3) {
        throw new HttpError(0, 'the ID token service answered without a token');
      }
      return body.value;
    },
    {
      maxAttempts: 4,
      isRetryable: (e) => !(e instanceof HttpError) || e.status >= 500 || e.status === 429,
    },
  ).catch((e: unknown) => {
    const input = deps.audienceInput;
    throw new CordonError({
      what: `${deps.action ?? 'oidc'}: could not get an ID token for audience "${audience}"${input ? ` (set by input ${input})` : ''}`,
      why: e instanceof Error ? e.message : String(e),
      fix: input
        ? `check that the job has \`permissions: id-token: write\` and that ${input} is the audience meant (the one the role's trust policy or the relying party expects; not given, it takes its default); retry the job if the service was down`
        : 'check that the job has `permissions: id-token: write`; retry the job if the service was down',
      ...(input ? { input } : {}),
    });
  });
  deps.registry?.register(token, { name: 'OIDC ID token' });
  return token;
}

/** The claims GitHub puts in the token that are worth showing (no signature check). */
export interface IdTokenClaims extends JWTPayload {
  repository?: string;
  repository_owner?: string;
  ref?: string;
  sha?: string;
  workflow_ref?: string;
  job_workflow_ref?: string;
  run_id?: string;
  run_attempt?: string;
  actor?: string;
  event_name?: string;
  environment?: string;
}

export function decodeClaims(token: string): IdTokenClaims {
  return decodeJwt(token) as IdTokenClaims;
}

/** The claims safe to record: identity, never the token. */
export function displayClaims(c: IdTokenClaims): Record<string, unknown> {
  const keep = [
    'iss',
    'sub',
    'aud',
    'repository',
    'repository_owner',
    'ref',
    'sha',
    'workflow_ref',
    'job_workflow_ref',
    'run_id',
    'run_attempt',
    'actor',
    'event_name',
    'environment',
    'exp',
    'iat',
  ];
  const out: Record<string, unknown> = {};
  for (const k of keep) if (c[k] !== undefined) out[k] = c[k];
  return out;
}
