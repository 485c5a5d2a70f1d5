/**
 * What the broker process is told at start, on its stdin pipe (never argv, never its
 * environment, never a file): the ID-token request pair and the app key live only in this
 * object, in the broker's memory.
 */
import { isIP } from 'node:net';
import { CordonError } from '../platform/errors.js';
import type { GithubTokenInputs } from '../github/inputs.js';

export const CONFIG_VERSION = 1;
export const DEFAULT_REFRESH_BEFORE_SECONDS = 300;
/**
 * How long a request waits for a refresh while the current credentials are still valid:
 * under the JavaScript SDK's 1 s container-credentials timeout (botocore allows 2 s).
 */
export const DEFAULT_REFRESH_WAIT_MS = 800;
/**
 * How long stop waits for a refresh already on its way (and the requests waiting on it)
 * before it revokes: under the 20 s the parent gives the stop request.
 */
export const DEFAULT_STOP_WAIT_MS = 5000;
/**
 * The least time a credential is handed out before the broker fetches the next:
 * `refresh-before-seconds` must be at most its lifetime less this. At or above the lifetime
 * a credential is never fresh, so every request would mint a new STS session or
 * installation token (thousands over a long run, each a token to revoke at stop).
 */
export const MIN_FRESH_SECONDS = 60;
/** GitHub gives an installation token one hour, whatever is asked. */
export const GITHUB_TOKEN_LIFETIME_SECONDS = 3600;
/** A GitHub-hosted job runs at most 6 hours; the broker never outlives that on its own. */
export const DEFAULT_MAX_LIFETIME_SECONDS = 6 * 3600 + 600;

/** Variables the broker hands the command. */
export const ENV_BROKER_URL = 'CORDON_BROKER_URL';
export const ENV_BROKER_TOKEN = 'CORDON_BROKER_TOKEN';

/** Paths served to the command (bearer token required). */
export const AWS_PATH = '/aws/credentials';
export const GITHUB_TOKEN_PATH = '/github/token';
/** Served to the parent only (control token required). */
export const STOP_PATH = '/control/stop';

export interface BrokerAwsConfig {
  roleArn: string;
  region: string;
  audience: string;
  sessionName: string;
  durationSeconds: number;
  /** Inline session policy, compact JSON. */
  policy?: string;
  managedPolicyArns?: string[];
  /** What the session policy allows, for the ledger (the first issuance's event). */
  statements?: { effect: string; actions: string[]; resources: string[] }[];
  /** No session policy: recorded on every issuance. */
  unscoped?: 'default' | 'chosen';
  /** ACTIONS_ID_TOKEN_REQUEST_URL / _TOKEN: held in memory only. */
  idTokenRequestUrl: string;
  idTokenRequestToken: string;
  /** AWS_ENDPOINT_URL(_STS), AWS_USE_FIPS_ENDPOINT, ...: steers STS (tests aim it at moto). */
  stsEnv?: Record<string, string>;
  /**
   * The session inputs as the user wrote them (run's `aws-*`), for STS errors; absent:
   * actions/aws's own (`role-to-assume`, ...).
   */
  inputNames?: BrokerAwsInputNames;
}

/** The inputs an STS error names: role, duration, audience, inline policy. */
export interface BrokerAwsInputNames {
  roleToAssume: string;
  duration: string;
  audience: string;
  inline: string;
  /** '' when the action has no input for it (run). */
  retryMaxAttempts?: string;
}

/** The app token to keep minting: the github-token inputs, the private key held in memory only. */
export type BrokerGithubConfig = Omit<GithubTokenInputs, 'skipTokenRevoke' | 'configureGit'>;

export interface BrokerConfig {
  v: number;
  /** Must be a loopback address; anything else is refused. */
  bind: string;
  /** 0 (default) for any free port. */
  port?: number;
  /** The per-run token the command presents (hex). */
  bearer: string;
  /** The token the parent presents to stop the broker (hex); the command never sees it. */
  controlToken: string;
  ledgerPath: string;
  /** Ledger `action` name for the broker's events (`run` or `aws`). */
  action: string;
  /** Log file for the broker's own lines (no secret reaches it); none when absent. */
  logPath?: string;
  refreshBeforeSeconds: number;
  /** See DEFAULT_REFRESH_WAIT_MS. */
  refreshWaitMs?: number;
  /** See DEFAULT_STOP_WAIT_MS. */
  stopWaitMs?: number;
  maxLifetimeSeconds: number;
  /** Stop when this process is gone (the parent step), checked every 2 s. */
  parentPid?: number;
  /** Write `MASK <json>` lines with every new secret value to stdout, for the parent to mask. */
  maskChannel?: boolean;
  aws?: BrokerAwsConfig;
  github?: BrokerGithubConfig;
  /** HTTPS_PROXY, NO_PROXY, ...: the step's, so the broker's STS, ID-token and GitHub calls take the same way out. */
  proxyEnv?: Record<string, string>;
}

/** Throws unless `host` is a loopback address: the broker must not be reachable from elsewhere. */
export function assertLoopback(host: string): void {
  const v = isIP(host);
  const loopback = (v === 4 && /^127\./.test(host)) || (v === 6 && host === '::1');
  if (!loopback) {
    throw new CordonError({
      what: `broker: refused to bind ${JSON.stringify(host)}`,
      why: 'the broker hands out credentials and must be reachable from this host only; it binds a loopback address (127.0.0.1 or ::1), never a name, a wildcard or another interface',
      fix: 'bind 127.0.0.1 (the default)',
      input: 'bind',
    });
  }
}

function bad(why: string): never {
  throw new CordonError({
    what: 'broker: the configuration on stdin is not valid',
    why,
    fix: 'start the broker through startBroker(); this is a bug in Cordon if it did',
  });
}

/** Parses and checks the JSON the broker reads from stdin. Error messages never quote values. */
export function parseBrokerConfig(text: string): BrokerConfig {
  let c: BrokerConfig;
  try {
    c = JSON.parse(text) as BrokerConfig;
  } catch {
    return bad('it is not JSON');
  }
  if (typeof c !== 'object' || c === null) bad('it is not an object');
  if (c.v !== CONFIG_VERSION) bad(`version ${String(c.v)} is not ${CONFIG_VERSION}`);
  if (typeof c.bind !== 'string') bad('bind is missing');
  assertLoopback(c.bind);
  if (typeof c.bearer !== 'string' || c.bearer.length < 32) bad('bearer is missing or shorter than 32');
  if (typeof c.controlToken !== 'string' || c.controlToken.length < 32)
    bad('controlToken is missing or shorter than 32');
  if (typeof c.ledgerPath !== 'string' || !c.ledgerPath) bad('ledgerPath is missing');
  if (!(c.refreshBeforeSeconds >= 0)) bad('refreshBeforeSeconds must be a number >= 0');
  if (!(c.maxLifetimeSeconds > 0)) bad('maxLifetimeSeconds must be a number > 0');
  if (!c.aws && !c.github) bad('neither aws nor github is configured');
  if (c.aws && (!c.aws.idTokenRequestUrl || !c.aws.idTokenRequestToken))
    bad('aws needs the ID-token request URL and token');
  if (c.github && !c.github.privateKey) bad('github needs the private key');
  if (c.github && !(typeof c.github.names?.action === 'string' && c.github.names.input))
    bad('github needs the names of the inputs it came from');
  return c;
}

/**
 * Refuses a `refresh-before-seconds` that is not a whole number >= 0, or that leaves a
 * credential fresh for less than MIN_FRESH_SECONDS of its lifetime: the AWS role duration
 * (named by `aws.input`), the GitHub token's hour, or both (the smaller decides). The
 * inputs of `run` and `aws` and `startBroker` itself check by this one rule.
 */
export function checkRefreshBefore(
  refreshBeforeSeconds: number,
  opts: {
    action: string;
    aws?: { durationSeconds: number; input: string };
    github?: boolean;
  },
): void {
  const input = 'refresh-before-seconds';
  const lifetimes = [
    ...(opts.aws
      ? [
          {
            seconds: opts.aws.durationSeconds,
            what: `AWS credentials live ${opts.aws.durationSeconds} s (${opts.aws.input})`,
            raise: opts.aws.input,
          },
        ]
      : []),
    ...(opts.github
      ? [
          {
            seconds: GITHUB_TOKEN_LIFETIME_SECONDS,
            what: `an installation token lives ${GITHUB_TOKEN_LIFETIME_SECONDS} s (GitHub's fixed hour)`,
            raise: undefined,
          },
        ]
      : []),
  ].sort((a, b) => a.seconds - b.seconds);
  const shortest = lifetimes[0];
  if (!(Number.isInteger(refreshBeforeSeconds) && refreshBeforeSeconds >= 0)) {
    throw new CordonError({
      what: `${opts.action}: input ${input} "${refreshBeforeSeconds}" is not valid`,
      why: 'it must be a whole number of seconds, 0 or more',
      fix: `use ${input}: 300 (the default)`,
      input,
    });
  }
  if (!shortest) return;
  const most = shortest.seconds - MIN_FRESH_SECONDS;
  if (refreshBeforeSeconds <= most) return;
  const every = refreshBeforeSeconds >= shortest.seconds ? 'every' : 'almost every';
  throw new CordonError({
    what: `${opts.action}: input ${input} "${refreshBeforeSeconds}" is not valid`,
    why:
      `it must be at most ${most}, the credentials' lifetime less ${MIN_FRESH_SECONDS} s: ${shortest.what}, ` +
      `and the broker replaces them once fewer than ${refreshBeforeSeconds} s remain, so it would replace them on ${every} request ` +
      '(a new session or token each time, each one to revoke or outlive at stop)',
    // Raising the AWS role duration helps only when it, not GitHub's hour, is the shorter.
    fix: `use ${input}: 300 (the default) or anything up to ${most}${shortest.raise ? `, or raise ${shortest.raise}` : ''}`,
    input,
  });
}
