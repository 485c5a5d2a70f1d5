/**
 * `run` with `credentials: broker`: the credential broker (src/broker) is started before the
 * command and stopped once its processes are gone. The command gets the container-credentials
 * variables (`AWS_CONTAINER_CREDENTIALS_FULL_URI` + `AWS_CONTAINER_AUTHORIZATION_TOKEN`) in
 * place of static `AWS_*` keys, so its SDKs refresh on their own; the ID-token request pair
 * stays in the broker's memory.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AwsSessionInputs } from '../../aws/inputs.js';
import type { AwsCredentials } from '../../aws/sts.js';
import { startBroker, type StartedBroker } from '../../broker/start.js';
import { AWS_PATH, checkRefreshBefore, type BrokerAwsInputNames } from '../../broker/config.js';
import { CordonError, describeError } from '../../platform/errors.js';
import type { Inputs } from '../../platform/inputs.js';
import { StreamScrubber, type SecretRegistry } from '../../platform/mask.js';
import { hasIdTokenAccess, missingIdTokenError } from '../../platform/oidc.js';
import type { Env, Runner } from '../../platform/runner.js';
import {
  parseGithubApp as parseGithubAppInputs,
  type GithubAppNaming,
  type GithubTokenInputs,
} from '../../github/inputs.js';
import type { SecretSpec } from '../../secrets/spec.js';

export const CREDENTIAL_MODES = ['static', 'broker'] as const;
export type CredentialMode = (typeof CREDENTIAL_MODES)[number];

export interface RunBrokerInputs {
  /** `static`: keys minted once, in the command's environment. `broker`: refreshed through the broker. */
  mode: CredentialMode;
  refreshBeforeSeconds: number;
  /** `github-app-*`: the app whose installation tokens the broker mints (with `broker` only). */
  github?: GithubTokenInputs;
}

const PERMISSIONS_INPUT = 'github-app-permissions';

/** run's AWS session inputs, as STS errors name them (the broker's too). */
export const RUN_AWS_INPUT_NAMES: BrokerAwsInputNames = {
  roleToAssume: 'aws-role-to-assume',
  duration: 'aws-role-duration-seconds',
  audience: 'aws-audience',
  inline: 'aws-inline-session-policy',
  // run has no retry-max-attempts: its STS errors do not say to raise it.
  retryMaxAttempts: '',
};

/**
 * run's `github-app-*` inputs, for `actions/github-token`'s parser (one set of checks, each
 * message naming run's input from the start). Permissions are one `name: level` a line.
 */
export const RUN_GITHUB_APP_NAMING: GithubAppNaming = {
  input: {
    'app-id': 'github-app-id',
    'client-id': 'github-app-client-id',
    'private-key': 'github-app-private-key',
    owner: 'github-app-owner',
    repositories: 'github-app-repositories',
  },
  permissions: (i) =>
    i.lines(PERMISSIONS_INPUT).map(({ text }) => {
      const m = /^([a-z][a-z_-]*)\s*[:=]\s*([a-z]+)$/i.exec(text);
      if (!m) {
        return i.fail(
          PERMISSIONS_INPUT,
          text,
          'each line is `<permission>: <level>`',
          'write e.g. `contents: write` and `pull-requests: write`, one a line',
        );
      }
      return { name: m[1].replace(/_/g, '-').toLowerCase(), level: m[2].toLowerCase(), text };
    }),
  permissionsInput: PERMISSIONS_INPUT,
  permissionInput: () => PERMISSIONS_INPUT,
  writePermission: (name, level) => `\`${name}: ${level}\` in ${PERMISSIONS_INPUT}`,
  writePermissions: (p) =>
    `${p.map(([n, l]) => `\`${n}: ${l}\``).join(' and ')}, one a line in ${PERMISSIONS_INPUT}`,
  unknownFix:
    'use a name from the permission list in docs/github-token.md, with dashes (e.g. `pull-requests: write`)',
  // The API the broker mints at: the input when given (actions/agent passes the one
  // github-token used, so on GHES both reach the same server), else the runner's GITHUB_API_URL.
  apiUrlInput: 'github-api-url',
};

/** Parses the `github-app-*` inputs (undefined when no app is named). */
function parseGithubApp(i: Inputs): GithubTokenInputs | undefined {
  const n = RUN_GITHUB_APP_NAMING.input;
  if (!i.has(n['app-id']) && !i.has(n['client-id'])) {
    const stray = [n['private-key'], n.owner, n.repositories, PERMISSIONS_INPUT].find((x) => i.has(x));
    if (stray) {
      throw new CordonError({
        what: `run: ${stray} was given without github-app-id or github-app-client-id`,
        why: 'the github-app-* inputs describe an app whose tokens the broker mints; no app is named',
        fix: 'add `github-app-id` (or `github-app-client-id`) and `github-app-private-key`, or remove it',
        input: stray,
      });
    }
    return undefined;
  }
  return { ...parseGithubAppInputs(i, RUN_GITHUB_APP_NAMING), skipTokenRevoke: false, configureGit: true };
}

/** Reads `credentials` and `refresh-before-seconds`; `broker` needs `aws-role-to-assume`. */
export function parseRunBrokerInputs(i: Inputs, aws: AwsSessionInputs | undefined): RunBrokerInputs {
  const mode = i.enumeration('credentials', CREDENTIAL_MODES, 'static');
  const refreshBeforeSeconds = i.integer('refresh-before-seconds', 300, { min: 0, max: 43200 });
  if (mode !== 'broker' && (i.has('github-app-id') || i.has('github-app-client-id'))) {
    throw new CordonError({
      what: 'run: github-app-id was given without credentials: broker',
      why: 'the app key is held by the credential broker only; run never hands it to the command',
      fix: 'add `credentials: broker`, or mint a token with actions/github-token and pass it as github-token',
      input: 'github-app-id',
    });
  }
  const github = parseGithubApp(i);
  if (github && i.has('github-token')) {
    throw new CordonError({
      what: 'run: github-token and github-app-id were both given',
      why: 'the command gets one GitHub credential: a fixed token, or fresh ones from the broker',
      fix: 'remove one of the two',
      input: 'github-token',
    });
  }
  if (mode === 'broker' && !aws && !github) {
    throw new CordonError({
      what: 'run: credentials: broker was given without aws-role-to-assume or github-app-id',
      why: 'the broker keeps credentials fresh for a role or an app; without one it has nothing to serve',
      fix: 'add `aws-role-to-assume` and `aws-region` (or `github-app-id` and `github-app-private-key`), or remove `credentials: broker`',
      input: 'credentials',
    });
  }
  if (mode === 'broker') {
    checkRefreshBefore(refreshBeforeSeconds, {
      action: 'run',
      ...(aws ? { aws: { durationSeconds: aws.durationSeconds, input: 'aws-role-duration-seconds' } } : {}),
      github: github !== undefined,
    });
  }
  return { mode, refreshBeforeSeconds, ...(github ? { github } : {}) };
}

export interface RunBroker {
  started: StartedBroker;
  /** The broker's current credentials, fetched once for `aws-sm:`/`ssm:` secrets (when there are any). */
  credentials?: AwsCredentials;
  /** What it serves, for `run.started`'s credentials: `aws-broker:<role>`, `github-app-broker:app-id=<id>`. */
  given: string[];
}

export interface RunBrokerDeps {
  env: Env;
  runner: Runner;
  registry: SecretRegistry;
  /** dist/broker/main.js (default: next to the running bundle). */
  brokerScript?: string;
}

interface ContainerCredentials {
  AccessKeyId: string;
  SecretAccessKey: string;
  Token: string;
  Expiration: string;
}

/** Asks the broker for its current credentials, as an SDK would. */
async function fetchFromBroker(started: StartedBroker, aws: AwsSessionInputs): Promise<AwsCredentials> {
  const res = await fetch(`${started.url}${AWS_PATH}`, {
    headers: { authorization: started.env.AWS_CONTAINER_AUTHORIZATION_TOKEN },
    signal: AbortSignal.timeout(30000),
  });
  if (!res.ok) {
    throw new CordonError({
      what: 'run: the credential broker did not hand out credentials for the secrets',
      why: `it answered HTTP ${res.status}`,
      fix: `see the broker log ${started.logPath}`,
      input: 'credentials',
    });
  }
  const c = (await res.json()) as ContainerCredentials;
  return {
    accessKeyId: c.AccessKeyId,
    secretAccessKey: c.SecretAccessKey,
    sessionToken: c.Token,
    expiration: new Date(c.Expiration),
    assumedRoleArn: '',
    account: aws.role.account,
  };
}

/**
 * Starts the broker for `credentials: broker` (undefined otherwise). Every value it issues
 * (the first credentials and each refresh) is registered, so it is masked and scrubbed from
 * the command's output; the bearer token too.
 */
export async function startRunBroker(
  inputs: { aws?: AwsSessionInputs; broker?: RunBrokerInputs; specs: SecretSpec[] },
  deps: RunBrokerDeps,
): Promise<RunBroker | undefined> {
  const { env, runner, registry } = deps;
  if (inputs.broker?.mode !== 'broker' || !(inputs.aws || inputs.broker.github)) return undefined;
  if (inputs.aws && !hasIdTokenAccess(env)) throw missingIdTokenError('run');
  const onSecret = (v: string): void => {
    try {
      registry.register(v, { name: 'broker credential' });
    } catch {
      // A value too short to mask is not a credential (the forms of real ones are long).
    }
  };
  const started = await startBroker(
    {
      action: 'run',
      env,
      aws: inputs.aws,
      github: inputs.broker.github,
      refreshBeforeSeconds: inputs.broker.refreshBeforeSeconds,
      awsDurationInput: 'aws-role-duration-seconds',
      awsInputNames: RUN_AWS_INPUT_NAMES,
    },
    { onSecret, ...(deps.brokerScript ? { brokerScript: deps.brokerScript } : {}) },
  );
  const broker: RunBroker = { started, given: [] };
  try {
    onSecret(started.env.CORDON_BROKER_TOKEN);
    if (inputs.aws && inputs.specs.some((s) => s.source === 'aws-sm' || s.source === 'ssm')) {
      broker.credentials = await fetchFromBroker(started, inputs.aws);
      for (const v of [broker.credentials.secretAccessKey, broker.credentials.sessionToken]) onSecret(v);
    }
  } catch (e) {
    await stopRunBroker(broker, runner);
    throw e;
  }
  const gh = inputs.broker.github;
  broker.given = [
    ...(inputs.aws ? [`aws-broker:${inputs.aws.role.arn}`] : []),
    ...(gh ? [`github-app-broker:${gh.issuerInput}=${gh.issuer}`] : []),
  ];
  runner.info(
    `run: credential broker serving ${broker.given.join(', ')} on ${started.url} (pid ${started.pid}); it refreshes when fewer than ${inputs.broker.refreshBeforeSeconds} s remain${inputs.aws?.policy.unscoped ? `; its AWS credentials are UNSCOPED (aws-allow: '*'): every permission ${inputs.aws.role.arn} has` : ''}`,
  );
  return broker;
}

/**
 * The command's environment with the broker: the names the broker says to drop removed
 * (and added to `removed`), its variables set (container-credentials URI and token, region,
 * PATH led by its helpers).
 */
export function withBrokerEnv(
  env: Record<string, string>,
  removed: string[],
  broker: RunBroker,
): Record<string, string> {
  const out: Record<string, string> = { ...env };
  for (const k of broker.started.unset) {
    if (out[k] !== undefined) {
      delete out[k];
      if (!removed.includes(k)) removed.push(k);
    }
  }
  removed.sort();
  const gitConfig = broker.started.gitConfigPath;
  if (gitConfig && out.HOME) {
    // The broker's global git config includes the user's own: make that the command's HOME
    // (a fresh one under `home: fresh`), not the step's, then adds the credential helper.
    const text = readFileSync(gitConfig, 'utf8');
    const helper = text.indexOf('[credential ');
    const quoted = `"${join(out.HOME, '.gitconfig').replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
    if (helper >= 0)
      writeFileSync(gitConfig, `[include]\n\tpath = ${quoted}\n${text.slice(helper)}`, { mode: 0o600 });
  }
  return { ...out, ...broker.started.env };
}

/** Stops the broker (it revokes what it minted and records `broker.stopped`); never throws. */
export async function stopRunBroker(broker: RunBroker, runner: Runner): Promise<void> {
  try {
    const r = await broker.started.stop();
    runner.info(
      `run: credential broker stopped after ${r.requests} request(s), ${r.unauthorized} refused, ${r.awsRefreshes} AWS issuance(s), ${r.tokenRefreshes} installation token(s) (${r.revocations.revoked} revoked, ${r.revocations.failed} not)${r.handedOutValidUntil ? `; credentials it handed out stay valid until ${r.handedOutValidUntil}` : ''}`,
    );
  } catch (e) {
    runner.warning(`run: the credential broker did not stop cleanly: ${describeError(e)}`);
  }
}

/**
 * A stream scrubber that picks up values registered while the command runs (the broker's
 * refreshed credentials): when the registry grows it flushes the current scrubber and
 * continues with one built on the whole registry.
 */
export class RefreshingScrubber extends StreamScrubber {
  private inner: StreamScrubber;
  private size: number;
  private before = 0;

  constructor(private readonly registry: SecretRegistry) {
    super(registry.matcher());
    this.inner = new StreamScrubber(registry.matcher());
    this.size = registry.size;
  }

  override push(chunk: Buffer): Buffer {
    let head: Buffer | undefined;
    if (this.registry.size !== this.size) {
      head = this.inner.flush();
      this.before += this.inner.scrubbed;
      this.inner = new StreamScrubber(this.registry.matcher());
      this.size = this.registry.size;
    }
    const out = this.inner.push(chunk);
    this.scrubbed = this.before + this.inner.scrubbed;
    return head?.length ? Buffer.concat([head, out]) : out;
  }

  override flush(): Buffer {
    const out = this.inner.flush();
    this.scrubbed = this.before + this.inner.scrubbed;
    return out;
  }
}
