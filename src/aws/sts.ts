/**
 * The one STS call: AssumeRoleWithWebIdentity through @aws-sdk/client-sts. Region, endpoint
 * and timeouts come from the caller's env, never from process globals, so `actions/run` can
 * mint credentials for one command and the tests can aim it at moto through a fault proxy.
 * The SDK's own retries are off: Cordon retries throttling, 5xx, timeouts and resets with
 * backoff and jitter, and never AccessDenied or a validation error (platform/aws-errors.ts).
 */
import { AssumeRoleCommand, AssumeRoleWithWebIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { awsErrorCode, awsHttpStatus, isRetryableAwsError } from '../platform/aws-errors.js';
import { CordonError, describeError } from '../platform/errors.js';
import type { SecretRegistry } from '../platform/mask.js';
import { decodeClaims } from '../platform/oidc.js';
import { retry, type RetryOptions } from '../platform/retry.js';
import type { Env } from '../platform/runner.js';
import { proxyAgents } from '../platform/proxy.js';

export interface AssumeRequest {
  roleArn: string;
  sessionName: string;
  durationSeconds: number;
  /** The OIDC ID token (already masked by `getIdToken`); '' with `chain`. */
  webIdentityToken: string;
  /**
   * `role-chaining`: AssumeRole signed with credentials the job already holds, instead of
   * the ID token; with the role's ExternalId and session tags if given.
   */
  chain?: {
    credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
    externalId?: string;
    tags?: { Key: string; Value: string }[];
  };
  region: string;
  /** Inline session policy, compact JSON (`SessionPolicy.json`). */
  policy?: string;
  managedPolicyArns?: string[];
}

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  expiration: Date;
  assumedRoleArn: string;
  account: string;
}

export interface StsDeps {
  /** Reads AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, AWS_USE_FIPS_ENDPOINT, AWS_USE_DUALSTACK_ENDPOINT. */
  env: Env;
  /** Every credential value is registered (masked) here before the function returns. */
  registry: SecretRegistry;
  /** Attempts in all, including the first (default 5). */
  maxAttempts?: number;
  /** Per-attempt timeout for the HTTP request, in ms (default 10000). */
  timeoutMs?: number;
  /** Called before each retry, for a log line. */
  onRetry?: (reason: string, attempt: number, delayMs: number) => void;
  /** Backoff overrides (tests). */
  retry?: Partial<Pick<RetryOptions, 'baseMs' | 'maxDelayMs' | 'maxTotalMs' | 'sleep' | 'random'>>;
  /** Input names for error messages (`actions/run` passes `aws-role-to-assume`, ...). */
  inputNames?: {
    roleToAssume?: string;
    duration?: string;
    audience?: string;
    inline?: string;
    /** The input that sets how often STS is tried; '' when the action has none (run). */
    retryMaxAttempts?: string;
  };
  /** Prefix for messages (default `aws`). */
  action?: string;
}

/** `Throttling, HTTP 400` or `Error, ECONNRESET`: the code and status, never a response body. */
function reasonOf(e: unknown): string {
  const status = awsHttpStatus(e);
  const code = (e as { code?: string } | undefined)?.code;
  return [awsErrorCode(e), code, status ? `HTTP ${status}` : undefined].filter(Boolean).join(', ');
}

/** The STS endpoint the passed env asks for: AWS_ENDPOINT_URL_STS, then AWS_ENDPOINT_URL. */
export function stsEndpoint(env: Env): string | undefined {
  return env.AWS_ENDPOINT_URL_STS || env.AWS_ENDPOINT_URL || undefined;
}

function envFlag(v: string | undefined): boolean {
  return /^(true|1)$/i.test(v ?? '');
}

/**
 * Exchanges the ID token for role credentials. Retries per `isRetryableAwsError`; every
 * failure ends as a CordonError that names the input to change (for AccessDenied and
 * InvalidIdentityToken it shows the token's iss/aud/sub and the trust-policy condition that
 * would match). The access key id, secret key and session token are registered with
 * `deps.registry` before the credentials are returned.
 */
export async function assumeRoleWithWebIdentity(req: AssumeRequest, deps: StsDeps): Promise<AwsCredentials> {
  const endpoint = stsEndpoint(deps.env);
  const timeoutMs = deps.timeoutMs ?? 10000;
  const client = new STSClient({
    region: req.region,
    endpoint,
    // The passed env decides the endpoint; the SDK must not read process.env or ~/.aws for it.
    ignoreConfiguredEndpointUrls: true,
    useFipsEndpoint: envFlag(deps.env.AWS_USE_FIPS_ENDPOINT),
    useDualstackEndpoint: envFlag(deps.env.AWS_USE_DUALSTACK_ENDPOINT),
    maxAttempts: 1,
    retryMode: 'standard',
    defaultsMode: 'legacy',
    // With the ID token the call is unsigned: an auth_scheme_preference in ~/.aws/config or
    // the environment must not send the SDK looking for credentials first. Chained, it is
    // signed with the credentials given, never with whatever the SDK would find itself.
    ...(req.chain ? { credentials: req.chain.credentials } : { authSchemePreference: ['noAuth'] }),
    userAgentAppId: 'cordon',
    // requestTimeout only logs a warning unless throwOnRequestTimeout is set (smithy node-http-handler).
    requestHandler: {
      connectionTimeout: Math.min(timeoutMs, 5000),
      requestTimeout: timeoutMs,
      throwOnRequestTimeout: true,
      socketTimeout: timeoutMs,
      // HTTPS_PROXY / NO_PROXY of the passed env (the SDK's Node handler ignores them).
      ...proxyAgents(deps.env, { keepAlive: true }),
    },
  });
  const common = {
    RoleArn: req.roleArn,
    RoleSessionName: req.sessionName,
    DurationSeconds: req.durationSeconds,
    Policy: req.policy,
    PolicyArns: req.managedPolicyArns?.length ? req.managedPolicyArns.map((arn) => ({ arn })) : undefined,
  };
  const chain = req.chain;
  const send = chain
    ? () =>
        client.send(
          new AssumeRoleCommand({
            ...common,
            ExternalId: chain.externalId,
            Tags: chain.tags?.length ? chain.tags : undefined,
          }),
        )
    : () =>
        client.send(
          new AssumeRoleWithWebIdentityCommand({ ...common, WebIdentityToken: req.webIdentityToken }),
        );
  let out;
  try {
    out = await retry(send, {
      maxAttempts: deps.maxAttempts ?? 5,
      baseMs: 250,
      maxDelayMs: 5000,
      maxTotalMs: 60000,
      ...deps.retry,
      isRetryable: isRetryableAwsError,
      onRetry: (e, attempt, delay) => deps.onRetry?.(reasonOf(e), attempt, delay),
    });
  } catch (e) {
    throw explainStsError(e, req, deps);
  } finally {
    client.destroy();
  }
  const c = out.Credentials;
  const arn = out.AssumedRoleUser?.Arn;
  if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken || !c.Expiration || !arn) {
    throw new CordonError({
      what: `${deps.action ?? 'aws'}: STS answered ${chain ? 'AssumeRole' : 'AssumeRoleWithWebIdentity'} without credentials`,
      why: 'the response lacked Credentials or AssumedRoleUser',
      fix: 'retry the job; if it persists, check AWS_ENDPOINT_URL_STS points at STS',
    });
  }
  deps.registry.register(c.AccessKeyId, { name: 'AWS access key id' });
  deps.registry.register(c.SecretAccessKey, { name: 'AWS secret access key' });
  deps.registry.register(c.SessionToken, { name: 'AWS session token' });
  return {
    accessKeyId: c.AccessKeyId,
    secretAccessKey: c.SecretAccessKey,
    sessionToken: c.SessionToken,
    expiration: c.Expiration,
    assumedRoleArn: arn,
    account: arn.split(':')[4] ?? '',
  };
}

/**
 * The trust-policy statement (with the condition) that would let this run's token assume the
 * role: the issuer host is the condition key prefix, as IAM names it.
 */
export function trustPolicyFor(
  claims: { iss?: string; aud?: string | string[]; sub?: string },
  roleArn: string,
): string {
  const host = (claims.iss ?? 'https://token.actions.githubusercontent.com')
    .replace(/^https?:\/\//, '')
    .replace(/\/$/, '');
  const partition = roleArn.split(':')[1] || 'aws';
  const account = roleArn.split(':')[4] || '<account>';
  const aud = Array.isArray(claims.aud) ? claims.aud[0] : claims.aud;
  const statement = {
    Effect: 'Allow',
    Principal: { Federated: `arn:${partition}:iam::${account}:oidc-provider/${host}` },
    Action: 'sts:AssumeRoleWithWebIdentity',
    Condition: {
      StringEquals: { [`${host}:aud`]: aud ?? 'sts.amazonaws.com' },
      StringLike: { [`${host}:sub`]: claims.sub ?? 'repo:<owner>/<repo>:*' },
    },
  };
  return JSON.stringify(statement, null, 2);
}

function tokenFacts(token: string): { iss?: string; aud?: string | string[]; sub?: string } {
  try {
    const c = decodeClaims(token);
    return { iss: c.iss, aud: c.aud, sub: c.sub };
  } catch {
    return {};
  }
}

/** Turns an STS or network failure into a CordonError with the input to change; never quotes a secret. */
export function explainStsError(
  e: unknown,
  req: AssumeRequest,
  deps: Pick<StsDeps, 'env' | 'inputNames' | 'action'>,
): CordonError {
  if (e instanceof CordonError) return e;
  const action = deps.action ?? 'aws';
  const names = {
    roleToAssume: 'role-to-assume',
    duration: 'role-duration-seconds',
    audience: 'audience',
    inline: 'inline-session-policy',
    retryMaxAttempts: 'retry-max-attempts',
    ...deps.inputNames,
  };
  const name = awsErrorCode(e);
  const message = describeError(e);
  if (req.chain && (name === 'AccessDenied' || name === 'InvalidClientTokenId' || name === 'ExpiredToken')) {
    return new CordonError({
      what: `${action}: STS refused to chain to ${req.roleArn} (${name}: ${message})`,
      why: "role-chaining signs AssumeRole with the credentials already in the step's environment: they must be valid, allowed sts:AssumeRole (and sts:TagSession unless role-skip-session-tagging), and trusted by the role, with its ExternalId if it asks for one",
      fix: `check ${names.roleToAssume} and role-external-id, and the trust policy of ${req.roleArn}`,
      input: names.roleToAssume,
    });
  }
  if (name === 'AccessDenied' || name === 'InvalidIdentityToken' || name === 'IDPRejectedClaim') {
    const t = tokenFacts(req.webIdentityToken);
    const aud = Array.isArray(t.aud) ? t.aud.join(', ') : t.aud;
    return new CordonError({
      what: `${action}: STS refused to let this run assume ${req.roleArn} (${name}: ${message})`,
      why:
        `the role's trust policy does not accept this token. The token says iss=${t.iss ?? '?'} aud=${aud ?? '?'} sub=${t.sub ?? '?'}` +
        (name === 'InvalidIdentityToken'
          ? '; STS could not verify it: is the OIDC provider for that issuer created in the account, with this audience in its client IDs?'
          : ''),
      fix: `check ${names.roleToAssume} and ${names.audience}, and make the role's trust policy hold a statement like:\n${trustPolicyFor(t, req.roleArn)}`,
      input: names.roleToAssume,
    });
  }
  if (name === 'ValidationError' && /DurationSeconds|MaxSessionDuration/i.test(message)) {
    return new CordonError({
      what: `${action}: ${names.duration} ${req.durationSeconds} is above the maximum session duration of ${req.roleArn}`,
      why: message,
      fix: `lower ${names.duration} (the default, 900, always works) or raise the role's "Maximum session duration" in IAM`,
      input: names.duration,
    });
  }
  if (name === 'MalformedPolicyDocument' || name === 'PackedPolicyTooLarge') {
    return new CordonError({
      what: `${action}: STS rejected the session policy (${name}: ${message})`,
      why: 'the policy passed local checks but STS has further rules (unknown actions, packed size)',
      fix: `shorten or correct ${names.inline} / allow lines, or move permissions into managed-session-policies`,
      input: names.inline,
    });
  }
  if (name === 'RegionDisabled') {
    return new CordonError({
      what: `${action}: STS is not activated in region ${req.region} for this account`,
      why: message,
      fix: 'activate the region under IAM > Account settings > Security Token Service, or use another aws-region',
    });
  }
  if (name === 'ExpiredToken') {
    return new CordonError({
      what: `${action}: the OIDC token expired before STS saw it`,
      why: message,
      fix: 'retry the job; check the runner clock if this repeats',
    });
  }
  const endpoint = stsEndpoint(deps.env) ?? `the STS endpoint of ${req.region}`;
  return new CordonError({
    what: `${action}: ${req.chain ? 'AssumeRole' : 'AssumeRoleWithWebIdentity'} failed for ${req.roleArn} (${reasonOf(e)}: ${message})`,
    why: isRetryableAwsError(e)
      ? `${endpoint} kept failing after the retries allowed`
      : `${endpoint} answered with an error Cordon does not retry`,
    fix: isRetryableAwsError(e)
      ? `retry the job later${names.retryMaxAttempts ? `, or raise ${names.retryMaxAttempts}` : ''}`
      : 'read the STS message above; check the role ARN and region',
  });
}
