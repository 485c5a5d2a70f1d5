/**
 * The parent's side of the broker: start it, hand the command its environment, stop it.
 * `actions/run` starts it before the agent's command; `actions/aws` with `export: broker`
 * starts it for later steps and stops it in post through `stopBrokerByState`.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import type { AwsSessionInputs } from '../aws/inputs.js';
import { CordonError, describeError } from '../platform/errors.js';
import { dataOf, type BrokerStopped } from '../ledger/events.js';
import { DetachedError, startDetached } from '../platform/detached.js';
import { Ledger, ledgerDir, ledgerPath } from '../ledger/ledger.js';
import type { Env } from '../platform/runner.js';
import type { GithubTokenInputs } from '../github/inputs.js';
import {
  AWS_PATH,
  CONFIG_VERSION,
  DEFAULT_MAX_LIFETIME_SECONDS,
  DEFAULT_REFRESH_BEFORE_SECONDS,
  ENV_BROKER_TOKEN,
  ENV_BROKER_URL,
  STOP_PATH,
  assertLoopback,
  checkRefreshBefore,
  type BrokerAwsInputNames,
  type BrokerConfig,
  type BrokerGithubConfig,
} from './config.js';
import { writeHelperScripts } from './scripts.js';
import { proxyEnv } from '../platform/proxy.js';

export interface StartBrokerConfig {
  /** Ledger `action` for the broker's events: `run` or `aws`. */
  action: string;
  /**
   * The step's environment: ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN (AWS), RUNNER_TEMP (ledger
   * and broker dir), PATH, HOME, GITHUB_SERVER_URL, AWS_ENDPOINT_URL(_STS).
   */
  env: Env;
  /** The AWS session to keep fresh (same role, session policy and name on every refresh). */
  aws?: AwsSessionInputs;
  /** The GitHub App token to keep fresh (same repositories and permissions). */
  github?: GithubTokenInputs;
  /**
   * Re-exchange when fewer seconds than this remain (default 300); at most the shortest
   * credential lifetime less 60 s (checkRefreshBefore), refused otherwise.
   */
  refreshBeforeSeconds?: number;
  /** The input that set `aws.durationSeconds`, for the refresh-before error (default `role-duration-seconds`). */
  awsDurationInput?: string;
  /** The AWS session inputs as the user wrote them (run's `aws-*`), for the broker's STS errors; default actions/aws's. */
  awsInputNames?: BrokerAwsInputNames;
  /**
   * How long a request waits for a refresh while the current credentials are still valid
   * (default 800 ms); after that it gets the current ones and the refresh goes on.
   */
  refreshWaitMs?: number;
  /** Loopback address to bind (default 127.0.0.1); anything else is refused. */
  bind?: string;
  port?: number;
  /** Stop the broker when this process exits (default true; false for `actions/aws`, whose broker outlives its step). */
  watchParent?: boolean;
  maxLifetimeSeconds?: number;
}

export interface StartBrokerDeps {
  /** dist/broker/main.js (default: next to the running bundle's folder). */
  brokerScript?: string;
  /** dist/broker/helper.js (default: beside brokerScript). */
  helperScript?: string;
  /** Node binary (default: this one). */
  node?: string;
  /** How long to wait for the broker to serve, ms (default 30000). */
  timeoutMs?: number;
  /**
   * Called with every secret value the broker issues after start (new AWS keys, new
   * installation tokens), so the parent can mask them and scrub the command's output.
   * Without it the broker sends none.
   */
  onSecret?: (value: string) => void;
}

/** What the parent keeps in saved state to stop the broker from another process (post). */
export interface BrokerState {
  url: string;
  pid: number;
  controlToken: string;
  ledgerPath: string;
}

export interface StartedBroker {
  url: string;
  port: number;
  pid: number;
  /** Variables to set on the agent's command (merge over its environment, after removing `unset`). */
  env: Record<string, string>;
  /** Variables the command must NOT have: static AWS keys and profiles, the ID-token pair. */
  unset: string[];
  /** Global git config that includes the user's own and adds the credential helper. */
  gitConfigPath?: string;
  /** Folder with `cordon-gh-token` and a `gh` wrapper; already first on env.PATH. */
  binDir: string;
  /** The broker's log (no secrets). */
  logPath: string;
  state: BrokerState;
  /** Stops serving, revokes every minted token, records `broker.stopped`; returns its counts. */
  stop(): Promise<BrokerStopped>;
}

/** Variables that would make an SDK or tool use something other than the broker. */
const AWS_UNSET = [
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AWS_SECURITY_TOKEN',
  'AWS_PROFILE',
  'AWS_DEFAULT_PROFILE',
  'AWS_SHARED_CREDENTIALS_FILE',
  'AWS_WEB_IDENTITY_TOKEN_FILE',
  'AWS_ROLE_ARN',
  'AWS_ROLE_SESSION_NAME',
  'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI',
  'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE',
];
const ALWAYS_UNSET = ['ACTIONS_ID_TOKEN_REQUEST_URL', 'ACTIONS_ID_TOKEN_REQUEST_TOKEN'];
const STS_ENV = [
  'AWS_ENDPOINT_URL',
  'AWS_ENDPOINT_URL_STS',
  'AWS_USE_FIPS_ENDPOINT',
  'AWS_USE_DUALSTACK_ENDPOINT',
];

/** The broker's `READY {json}` line. */
type Ready = { pid: number; port: number };

/**
 * Starts the credential broker as a detached process and waits (bounded) until it serves.
 *
 * The broker holds the ID-token request pair and the app key in its own memory only: they
 * go down its stdin pipe, which it closes after reading; its argv and environment carry
 * neither. It binds loopback only, fetches the first credentials before it answers READY
 * (a wrong role or app fails here), and refreshes them when fewer than
 * `refreshBeforeSeconds` remain.
 *
 * The returned `env` is what the agent's command gets: `AWS_CONTAINER_CREDENTIALS_FULL_URI`
 * + `AWS_CONTAINER_AUTHORIZATION_TOKEN` (+ region) for AWS; `GIT_CONFIG_GLOBAL` (a credential
 * helper) and a `PATH` led by a `gh` wrapper and `cordon-gh-token` for GitHub; and
 * `CORDON_BROKER_URL`/`CORDON_BROKER_TOKEN`. Remove the names in `unset` from the command's
 * environment first: no static AWS keys, no ID-token variables, never the app key.
 *
 * Throws a CordonError when the bind address is not loopback or the broker does not serve.
 */
export async function startBroker(
  cfg: StartBrokerConfig,
  deps: StartBrokerDeps = {},
): Promise<StartedBroker> {
  const bind = cfg.bind ?? '127.0.0.1';
  assertLoopback(bind);
  if (!cfg.aws && !cfg.github) {
    throw new CordonError({
      what: `${cfg.action}: the broker was asked to start with nothing to serve`,
      fix: 'give it an AWS role, a GitHub App, or both',
    });
  }
  const refreshBeforeSeconds = cfg.refreshBeforeSeconds ?? DEFAULT_REFRESH_BEFORE_SECONDS;
  checkRefreshBefore(refreshBeforeSeconds, {
    action: cfg.action,
    ...(cfg.aws
      ? {
          aws: {
            durationSeconds: cfg.aws.durationSeconds,
            input: cfg.awsDurationInput ?? 'role-duration-seconds',
          },
        }
      : {}),
    github: cfg.github !== undefined,
  });
  const env = cfg.env;
  if (cfg.aws && !(env.ACTIONS_ID_TOKEN_REQUEST_URL && env.ACTIONS_ID_TOKEN_REQUEST_TOKEN)) {
    throw new CordonError({
      what: `${cfg.action}: the broker needs the workflow's OIDC token to refresh AWS credentials`,
      why: 'ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set',
      fix: 'add `permissions: id-token: write` to the job',
    });
  }
  const brokerScript = deps.brokerScript ?? join(dirname(process.argv[1] ?? '.'), '..', 'broker', 'main.js');
  const helperScript = deps.helperScript ?? join(dirname(brokerScript), 'helper.js');
  const node = deps.node ?? process.execPath;
  for (const f of [brokerScript, helperScript]) {
    if (!existsSync(f)) {
      throw new CordonError({
        what: `${cfg.action}: the broker's program ${f} is missing`,
        fix: 'run `node scripts/bundle.mjs broker`; the dist/broker folder ships with the actions',
      });
    }
  }
  const id = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const dir = join(ledgerDir(env), `broker-${id}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const logPath = join(dir, 'broker.log');
  const bearer = randomBytes(32).toString('hex');
  const controlToken = randomBytes(32).toString('hex');
  const config: BrokerConfig = {
    v: CONFIG_VERSION,
    bind,
    port: cfg.port ?? 0,
    bearer,
    controlToken,
    ledgerPath: ledgerPath(env),
    action: cfg.action,
    logPath,
    refreshBeforeSeconds,
    refreshWaitMs: cfg.refreshWaitMs,
    maxLifetimeSeconds: cfg.maxLifetimeSeconds ?? DEFAULT_MAX_LIFETIME_SECONDS,
    parentPid: cfg.watchParent === false ? undefined : process.pid,
    maskChannel: Boolean(deps.onSecret),
    proxyEnv: proxyEnv(env),
    ...(cfg.aws
      ? {
          aws: {
            roleArn: cfg.aws.role.arn,
            region: cfg.aws.region,
            audience: cfg.aws.audience,
            sessionName: cfg.aws.sessionName,
            durationSeconds: cfg.aws.durationSeconds,
            policy: cfg.aws.policy.json,
            managedPolicyArns: cfg.aws.policy.managedPolicyArns,
            statements: cfg.aws.policy.statements,
            ...(cfg.aws.policy.unscoped ? { unscoped: cfg.aws.policy.unscoped } : {}),
            idTokenRequestUrl: env.ACTIONS_ID_TOKEN_REQUEST_URL as string,
            idTokenRequestToken: env.ACTIONS_ID_TOKEN_REQUEST_TOKEN as string,
            stsEnv: Object.fromEntries(STS_ENV.flatMap((k) => (env[k] ? [[k, env[k] as string]] : []))),
            ...(cfg.awsInputNames ? { inputNames: cfg.awsInputNames } : {}),
          },
        }
      : {}),
    ...(cfg.github
      ? {
          github: {
            issuer: cfg.github.issuer,
            issuerInput: cfg.github.issuerInput,
            privateKey: cfg.github.privateKey,
            owner: cfg.github.owner,
            repositories: cfg.github.repositories,
            permissions: cfg.github.permissions,
            apiUrl: cfg.github.apiUrl,
            // The inputs as the user wrote them, so the broker's messages name them (run's github-app-*).
            names: cfg.github.names,
          } satisfies BrokerGithubConfig,
        }
      : {}),
  };
  // The broker's own environment: nothing secret, because /proc/<pid>/environ is readable
  // by every process of the same user.
  const brokerEnv: Record<string, string> = { PATH: env.PATH || '/usr/bin:/bin' };
  for (const k of ['NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE', 'TZ']) if (env[k]) brokerEnv[k] = env[k] as string;
  const logFd = openSync(logPath, 'a', 0o600);
  let ready: Ready;
  try {
    ready = await startDetached<Ready>({
      name: 'the broker',
      argv: [node, brokerScript],
      env: brokerEnv,
      // The config goes down the pipe, which closes: nothing of it stays on disk or in argv.
      input: JSON.stringify(config),
      stderrFd: logFd,
      timeoutMs: deps.timeoutMs ?? 30000,
      killOnTimeout: true,
      // `MASK "<value>"`: a secret the broker issued, for this process to mask.
      onLine: (line) => line.startsWith('MASK ') && deps.onSecret?.(JSON.parse(line.slice(5)) as string),
      keepReading: Boolean(deps.onSecret),
    });
  } catch (e) {
    throw notStarted(cfg.action, e, logPath);
  } finally {
    closeSync(logFd);
  }
  const url = `http://${bind.includes(':') ? `[${bind}]` : bind}:${ready.port}`;
  const helpers = writeHelperScripts(dir, node, helperScript, env, Boolean(cfg.github));
  const out: Record<string, string> = {
    [ENV_BROKER_URL]: url,
    [ENV_BROKER_TOKEN]: bearer,
    PATH: `${helpers.binDir}:${env.PATH ?? '/usr/bin:/bin'}`,
  };
  if (cfg.aws) {
    out.AWS_CONTAINER_CREDENTIALS_FULL_URI = `${url}${AWS_PATH}`;
    out.AWS_CONTAINER_AUTHORIZATION_TOKEN = bearer;
    out.AWS_REGION = cfg.aws.region;
    out.AWS_DEFAULT_REGION = cfg.aws.region;
  }
  if (helpers.gitConfigPath) out.GIT_CONFIG_GLOBAL = helpers.gitConfigPath;
  const state: BrokerState = { url, pid: ready.pid, controlToken, ledgerPath: config.ledgerPath };
  return {
    url,
    port: ready.port,
    pid: ready.pid,
    env: out,
    unset: [...ALWAYS_UNSET, ...(cfg.aws ? AWS_UNSET : [])],
    gitConfigPath: helpers.gitConfigPath,
    binDir: helpers.binDir,
    logPath,
    state,
    stop: () => stopBrokerByState(state),
  };
}

/**
 * The error for a broker that did not start. When the broker's own error named an input
 * (run's github-app-private-key, aws-role-to-assume) and gave a fix, this one names the same
 * input and leads with that fix, so a caller (and its tests) sees the input the user wrote.
 */
function notStarted(action: string, e: unknown, logPath: string): CordonError {
  const logFix = `see the broker log ${logPath}`;
  if (e instanceof DetachedError && (e.input || e.fix)) {
    // The message already ends with ". Fix: <fix>": keep it once, in fix.
    const suffix = e.fix ? `. Fix: ${e.fix}` : '';
    const why = suffix && e.message.endsWith(suffix) ? e.message.slice(0, -suffix.length) : e.message;
    return new CordonError({
      what: `${action}: the credential broker did not start`,
      why,
      fix: e.fix ? `${e.fix}; ${logFix}` : `${logFix}; check the role, the app and the network`,
      ...(e.input ? { input: e.input } : {}),
    });
  }
  return new CordonError({
    what: `${action}: the credential broker did not start`,
    why: describeError(e),
    fix: `${logFix}; check the role, the app and the network`,
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function portOpen(url: string): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const s = connect({ host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port) });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function waitGone(state: BrokerState, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (let i = 0; i < 200 && Date.now() < deadline; i++) {
    if (!alive(state.pid) && !(await portOpen(state.url))) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !alive(state.pid) && !(await portOpen(state.url));
}

/**
 * Stops a broker from its saved state: asks it over HTTP with the control token (it revokes
 * every token it minted and answers with its counts), falls back to SIGTERM, then SIGKILL;
 * returns once the process is gone and its port closed (bounded, about 25 s at most).
 */
export async function stopBrokerByState(state: BrokerState): Promise<BrokerStopped> {
  let report: BrokerStopped | undefined;
  try {
    const res = await fetch(`${state.url}${STOP_PATH}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${state.controlToken}` },
      signal: AbortSignal.timeout(20000),
    });
    if (res.ok) report = (await res.json()) as BrokerStopped;
  } catch {
    // Not answering: the signal below makes it stop the same way.
  }
  if (!report && alive(state.pid)) process.kill(state.pid, 'SIGTERM');
  if (!(await waitGone(state, report ? 3000 : 20000)) && alive(state.pid)) {
    process.kill(state.pid, 'SIGKILL');
    await waitGone(state, 2000);
  }
  if (report) return report;
  const port = Number(new URL(state.url).port);
  const last = new Ledger(state.ledgerPath, { action: 'broker' })
    .events()
    .reverse()
    .map((e) => dataOf(e, 'broker.stopped'))
    .find((d) => d?.port === port);
  if (last) return last;
  throw new CordonError({
    what: 'broker: it stopped without a report',
    why: 'it did not answer the stop request and recorded no broker.stopped event (killed?)',
    fix: 'installation tokens it minted stay valid until they expire (an hour at most); AWS credentials until their expiration',
  });
}
