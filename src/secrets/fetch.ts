/**
 * Fetches every secret named in the `secrets` input, in parallel with a bound on requests
 * in flight and backoff on throttling. All or nothing: when one fails the caller gets one
 * error naming every failed secret (never a value) and starts nothing.
 */
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import {
  awsErrorName,
  awsHttpStatus,
  classifyAwsError,
  isRetryableAwsError,
} from '../platform/aws-errors.js';
import { CordonError } from '../platform/errors.js';
import { mapBounded } from '../platform/map-bounded.js';
import { retry, type RetryOptions } from '../platform/retry.js';
import type { Env } from '../platform/runner.js';
import { proxyAgents, type ProxyAgents } from '../platform/proxy.js';
import { checkTarget, describeSource, expandedName, type SecretSpec } from './spec.js';

export interface FetchedSecret {
  /** The variable name the command sees. */
  name: string;
  value: string;
  /** `aws-sm:prod/db#password`: where it came from, for the ledger. */
  source: string;
  notSecret: boolean;
}

export interface AwsCredentialValues {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface FetchDeps {
  /** Variables for `env:` sources and the AWS settings (region, AWS_ENDPOINT_URL, keys). */
  env: Env;
  /** The parsed `secrets-json` map, for `json:` sources. */
  secretsJson?: Record<string, string>;
  /** Credentials to use instead of the ones in `env` (minted for `run`). */
  credentials?: AwsCredentialValues;
  /** Requests in flight at once (default 8). */
  concurrency?: number;
  /** How long one request may go unanswered before it is abandoned and retried (ms). */
  requestTimeoutMs?: number;
  /** Backoff overrides (tests, benchmarks). */
  retry?: Partial<
    Pick<RetryOptions, 'maxAttempts' | 'baseMs' | 'maxDelayMs' | 'maxTotalMs' | 'sleep' | 'random'>
  >;
  /** Called before each retry, for a log line (names only). */
  onRetry?: (source: string, reason: string, attempt: number, delayMs: number) => void;
  /** Input name for messages. */
  input?: string;
}

export const DEFAULT_CONCURRENCY = 8;
/** One request to Secrets Manager or SSM, unanswered this long, is abandoned and retried. */
export const REQUEST_TIMEOUT_MS = 10000;

/** Region for a call: the environment's, else the one in an ARN. */
function regionFor(env: Env, ref: string): string | undefined {
  return (
    env.AWS_REGION ||
    env.AWS_DEFAULT_REGION ||
    /^arn:aws[a-z-]*:[a-z-]+:([a-z0-9-]+):/.exec(ref)?.[1] ||
    undefined
  );
}

interface ClientConfig {
  region: string;
  endpoint?: string;
  credentials?: AwsCredentialValues;
  maxAttempts: number;
  ignoreConfiguredEndpointUrls: boolean;
  requestHandler: {
    connectionTimeout: number;
    requestTimeout: number;
    throwOnRequestTimeout: boolean;
    socketTimeout: number;
  } & ProxyAgents;
}

function clientConfig(
  env: Env,
  ref: string,
  service: 'SECRETS_MANAGER' | 'SSM',
  deps: FetchDeps,
): ClientConfig {
  const region = regionFor(env, ref);
  if (!region) {
    throw new CordonError({
      what: `secrets: no AWS region for ${ref}`,
      why: 'neither AWS_REGION nor AWS_DEFAULT_REGION is set, and the reference is not an ARN',
      fix: 'give run aws-role-to-assume and aws-region, or run actions/aws (which exports AWS_REGION) before this step, or set AWS_REGION in the step env, or use the secret ARN',
      input: deps.input,
    });
  }
  const endpoint = env[`AWS_ENDPOINT_URL_${service}`] || env.AWS_ENDPOINT_URL || undefined;
  const fromEnv =
    env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
      ? {
          accessKeyId: env.AWS_ACCESS_KEY_ID,
          secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
          sessionToken: env.AWS_SESSION_TOKEN || undefined,
        }
      : undefined;
  const timeout = deps.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  // Cordon retries with its own backoff, so the SDK's retries are off; the passed env, not
  // process.env or ~/.aws, decides the endpoint.
  return {
    region,
    endpoint,
    credentials: deps.credentials ?? fromEnv,
    maxAttempts: 1,
    ignoreConfiguredEndpointUrls: true,
    // HTTPS_PROXY / NO_PROXY of the passed env (the SDK's Node handler ignores them).
    // A request that gets no answer ends and is retried: without throwOnRequestTimeout the
    // SDK's Node handler only logs the timeout, and an endpoint that accepts and never
    // answers would hold the step until the job's own timeout.
    requestHandler: {
      connectionTimeout: Math.min(timeout, 5000),
      requestTimeout: timeout,
      throwOnRequestTimeout: true,
      socketTimeout: timeout,
      ...proxyAgents(env, { keepAlive: true }),
    },
  };
}

/** One client per service and region for the whole batch, so connections are reused. */
class Clients {
  private readonly sm = new Map<string, SecretsManagerClient>();
  private readonly ssm = new Map<string, SSMClient>();
  constructor(private readonly deps: FetchDeps) {}

  secretsManager(ref: string): SecretsManagerClient {
    const cfg = clientConfig(this.deps.env, ref, 'SECRETS_MANAGER', this.deps);
    let c = this.sm.get(cfg.region);
    if (!c) this.sm.set(cfg.region, (c = new SecretsManagerClient(cfg)));
    return c;
  }

  parameterStore(ref: string): SSMClient {
    const cfg = clientConfig(this.deps.env, ref, 'SSM', this.deps);
    let c = this.ssm.get(cfg.region);
    if (!c) this.ssm.set(cfg.region, (c = new SSMClient(cfg)));
    return c;
  }

  destroy(): void {
    for (const c of this.sm.values()) c.destroy();
    for (const c of this.ssm.values()) c.destroy();
  }
}

/** A value an environment variable can hold: UTF-8 without NUL bytes. */
function binaryToText(bytes: Uint8Array, source: string, input?: string): string {
  const text = Buffer.from(bytes).toString('utf8');
  if (
    text.includes('\0') ||
    text.includes('\uFFFD') ||
    !Buffer.from(text, 'utf8').equals(Buffer.from(bytes))
  ) {
    throw new CordonError({
      what: `secrets: ${source} is a binary secret that is not UTF-8 text`,
      why: 'an environment variable cannot hold NUL bytes or invalid UTF-8, and Cordon never alters a value',
      fix: 'store the value base64-encoded as a SecretString and decode it in the command',
      input,
    });
  }
  return text;
}

async function fetchRaw(spec: SecretSpec, clients: Clients, deps: FetchDeps): Promise<string> {
  const source = `${spec.source}:${spec.ref}`;
  switch (spec.source) {
    case 'env': {
      const v = deps.env[spec.ref];
      if (v === undefined)
        throw new FetchFailure(source, 'not-found', 'the variable is not set in this step');
      return v;
    }
    case 'json': {
      const map = deps.secretsJson ?? {};
      if (!Object.prototype.hasOwnProperty.call(map, spec.ref)) {
        throw new FetchFailure(
          source,
          'not-found',
          'secrets-json has no such key (is the secret defined for this repository or environment?)',
        );
      }
      return map[spec.ref];
    }
    case 'aws-sm': {
      const client = clients.secretsManager(spec.ref);
      const res = await callAws(source, deps, () =>
        client.send(new GetSecretValueCommand({ SecretId: spec.ref })),
      );
      if (typeof res.SecretString === 'string') return res.SecretString;
      if (res.SecretBinary) return binaryToText(res.SecretBinary, source, deps.input);
      throw new FetchFailure(source, 'empty', 'the secret has no value in its current version');
    }
    case 'ssm': {
      const client = clients.parameterStore(spec.ref);
      const res = await callAws(source, deps, () =>
        client.send(new GetParameterCommand({ Name: spec.ref, WithDecryption: true })),
      );
      const v = res.Parameter?.Value;
      if (typeof v !== 'string') throw new FetchFailure(source, 'empty', 'the parameter has no value');
      return v;
    }
  }
}

type FailureKind = 'not-found' | 'denied' | 'throttled' | 'empty' | 'json' | 'failed';

/** A fetch error that carries only names and a reason. */
class FetchFailure extends Error {
  constructor(
    readonly source: string,
    readonly kind: FailureKind,
    readonly reason: string,
  ) {
    super(`${source}: ${reason}`);
  }
}

async function callAws<T>(source: string, deps: FetchDeps, call: () => Promise<T>): Promise<T> {
  let attempts = 0;
  try {
    return await retry(
      async () => {
        attempts++;
        return await call();
      },
      {
        maxAttempts: 6,
        baseMs: 250,
        maxDelayMs: 5000,
        maxTotalMs: 60000,
        ...deps.retry,
        isRetryable: isRetryableAwsError,
        onRetry: (e, attempt, delay) => deps.onRetry?.(source, awsErrorName(e), attempt, delay),
      },
    );
  } catch (e) {
    // Only the error's name and status: an SDK message or a body can hold response bytes.
    const status = awsHttpStatus(e);
    const detail = `${awsErrorName(e)}${status ? `, HTTP ${status}` : ''}`;
    switch (classifyAwsError(e)) {
      case 'not-found':
        throw new FetchFailure(source, 'not-found', `it was not found (${detail})`);
      case 'denied':
        throw new FetchFailure(source, 'denied', `access was denied (${detail})`);
      case 'throttled':
        throw new FetchFailure(
          source,
          'throttled',
          `AWS kept throttling the request (${detail}, ${attempts} attempts)`,
        );
      default:
        throw new FetchFailure(
          source,
          'failed',
          `the request failed (${detail}${attempts > 1 ? `, ${attempts} attempts` : ''})`,
        );
    }
  }
}

/** Follows a dotted path into a JSON value; non-string leaves are given as JSON. */
export function extractKey(raw: string, key: string, source: string): string {
  let node: unknown;
  try {
    node = JSON.parse(raw);
  } catch {
    throw new FetchFailure(source, 'json', `#${key} was asked for, but the value is not JSON`);
  }
  for (const part of key.split('.')) {
    if (typeof node !== 'object' || node === null || !Object.prototype.hasOwnProperty.call(node, part)) {
      throw new FetchFailure(source, 'json', `the JSON value has no key ${key}`);
    }
    node = (node as Record<string, unknown>)[part];
  }
  return typeof node === 'string' ? node : JSON.stringify(node);
}

function expandJson(spec: SecretSpec, raw: string, source: string): [string, string][] {
  let node: unknown;
  try {
    node = JSON.parse(raw);
  } catch {
    throw new FetchFailure(
      source,
      'json',
      `${spec.target}* expands a JSON object, but the value is not JSON`,
    );
  }
  if (typeof node !== 'object' || node === null || Array.isArray(node)) {
    throw new FetchFailure(
      source,
      'json',
      `${spec.target}* expands a JSON object, but the value is not an object`,
    );
  }
  return Object.keys(node)
    .sort()
    .map((k) => {
      const v = (node as Record<string, unknown>)[k];
      return [k, typeof v === 'string' ? v : JSON.stringify(v)];
    });
}

/**
 * Fetches every spec's value. Each distinct source is fetched once; JSON keys are then
 * extracted and `PREFIX_*` lines expanded in key order. Throws one CordonError listing
 * every failure, by secret name and source, when anything failed.
 */
export async function fetchSecrets(specs: SecretSpec[], deps: FetchDeps): Promise<FetchedSecret[]> {
  const input = deps.input ?? 'secrets';
  const unique = new Map<string, SecretSpec>();
  for (const s of specs) unique.set(`${s.source}:${s.ref}`, s);
  const keys = [...unique.keys()];
  const clients = new Clients(deps);
  let settled: PromiseSettledResult<string>[];
  try {
    settled = await mapBounded(keys, deps.concurrency ?? DEFAULT_CONCURRENCY, (k) =>
      fetchRaw(unique.get(k) as SecretSpec, clients, deps),
    );
  } finally {
    clients.destroy();
  }
  const raw = new Map<string, string>();
  const failures: string[] = [];
  const failedSources = new Set<string>();
  settled.forEach((r, i) => {
    if (r.status === 'fulfilled') raw.set(keys[i], r.value);
    else failedSources.add(keys[i]);
  });
  for (const s of specs) {
    const k = `${s.source}:${s.ref}`;
    if (!failedSources.has(k)) continue;
    const r = settled[keys.indexOf(k)] as PromiseRejectedResult;
    failures.push(`${s.expand ? `${s.target}*` : s.target} (${k}): ${reasonOf(r.reason)}`);
  }
  const out: FetchedSecret[] = [];
  const owner = new Map<string, string>();
  const claim = (name: string, source: string, line: number): void => {
    checkTarget(name, input, `line ${line}`);
    const prev = owner.get(name);
    if (prev !== undefined) {
      throw new CordonError({
        what: `secrets: ${name} would be set twice, from ${prev} and from ${source}`,
        why: 'expanded JSON keys must not collide with each other or with another target',
        fix: 'rename a target, use another expansion prefix, or pick single keys with #key',
        input,
      });
    }
    owner.set(name, source);
  };
  for (const s of specs) {
    const k = `${s.source}:${s.ref}`;
    const value = raw.get(k);
    if (value === undefined) continue;
    const source = describeSource(s);
    try {
      if (s.expand) {
        const base = s.key ? extractKey(value, s.key, k) : value;
        for (const [jsonKey, v] of expandJson(s, base, source)) {
          const name = expandedName(s.target, jsonKey);
          claim(name, `${source}#${jsonKey}`, s.line);
          out.push({ name, value: v, source: `${source}#${jsonKey}`, notSecret: s.notSecret });
        }
      } else {
        claim(s.target, source, s.line);
        out.push({
          name: s.target,
          value: s.key ? extractKey(value, s.key, k) : value,
          source,
          notSecret: s.notSecret,
        });
      }
    } catch (e) {
      if (!(e instanceof FetchFailure)) throw e;
      failures.push(`${s.expand ? `${s.target}*` : s.target} (${source}): ${e.reason}`);
    }
  }
  for (const f of out) {
    if (f.value === '' && !f.notSecret) failures.push(`${f.name} (${f.source}): the value is empty`);
  }
  if (failures.length) {
    throw new CordonError({
      what: `secrets: could not get ${failures.length} secret${failures.length > 1 ? 's' : ''}, so nothing was started`,
      why: failures.join('; '),
      fix: 'check each name and the role or token permissions; a missing secret must be created or removed from the list',
      input,
    });
  }
  return out;
}

function reasonOf(e: unknown): string {
  if (e instanceof FetchFailure) return e.reason;
  if (e instanceof CordonError) return e.what;
  return `unexpected ${awsErrorName(e)}`;
}
