/**
 * `run` with `credentials: broker`: the credential broker (src/broker) is started before the
 * command and stopped once its processes are gone. The command gets the container-credentials
 * variables (`AWS_CONTAINER_CREDENTIALS_FULL_URI` + `AWS_CONTAINER_AUTHORIZATION_TOKEN`) in
 * place of static `AWS_*` keys, so its SDKs refresh on their own; the ID-token request pair
 * stays in the broker's memory.
 */
import type { AwsSessionInputs } from '../aws/inputs.js';
import type { AwsCredentials } from '../aws/sts.js';
import { startBroker, type StartedBroker } from '../broker/start.js';
import { AWS_PATH } from '../broker/config.js';
import { CordonError, describeError } from '../core/errors.js';
import type { Inputs } from '../core/inputs.js';
import { StreamScrubber, type SecretRegistry } from '../core/mask.js';
import { hasIdTokenAccess, missingIdTokenError } from '../core/oidc.js';
import type { Env, Runner } from '../core/runner.js';
import type { SecretSpec } from '../secrets/spec.js';

export const CREDENTIAL_MODES = ['static', 'broker'] as const;
export type CredentialMode = (typeof CREDENTIAL_MODES)[number];

export interface RunBrokerInputs {
  /** `static`: keys minted once, in the command's environment. `broker`: refreshed through the broker. */
  mode: CredentialMode;
  refreshBeforeSeconds: number;
}

/** Reads `credentials` and `refresh-before-seconds`; `broker` needs `aws-role-to-assume`. */
export function parseRunBrokerInputs(i: Inputs, aws: AwsSessionInputs | undefined): RunBrokerInputs {
  const mode = i.enumeration('credentials', CREDENTIAL_MODES, 'static');
  const refreshBeforeSeconds = i.integer('refresh-before-seconds', 300, { min: 0, max: 43200 });
  if (mode === 'broker' && !aws) {
    throw new CordonError({
      what: 'run: credentials: broker was given without aws-role-to-assume',
      why: 'the broker keeps credentials fresh for a role; without one it has nothing to serve',
      fix: 'add `aws-role-to-assume` and `aws-region`, or remove `credentials: broker`',
      input: 'credentials',
    });
  }
  return { mode, refreshBeforeSeconds };
}

export interface RunBroker {
  started: StartedBroker;
  /** The broker's current credentials, fetched once for `aws-sm:`/`ssm:` secrets (when there are any). */
  credentials?: AwsCredentials;
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
  if (inputs.broker?.mode !== 'broker' || !inputs.aws) return undefined;
  if (!hasIdTokenAccess(env)) throw missingIdTokenError('run');
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
      refreshBeforeSeconds: inputs.broker.refreshBeforeSeconds,
    },
    { onSecret, ...(deps.brokerScript ? { brokerScript: deps.brokerScript } : {}) },
  );
  const broker: RunBroker = { started };
  try {
    onSecret(started.env.AWS_CONTAINER_AUTHORIZATION_TOKEN);
    if (inputs.specs.some((s) => s.source === 'aws-sm' || s.source === 'ssm')) {
      broker.credentials = await fetchFromBroker(started, inputs.aws);
      for (const v of [broker.credentials.secretAccessKey, broker.credentials.sessionToken]) onSecret(v);
    }
  } catch (e) {
    await stopRunBroker(broker, runner);
    throw e;
  }
  runner.info(
    `run: credential broker serving ${inputs.aws.role.arn} on ${started.url} (pid ${started.pid}); it refreshes when fewer than ${inputs.broker.refreshBeforeSeconds} s remain`,
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
  return { ...out, ...broker.started.env };
}

/** Stops the broker (it revokes what it minted and records `broker.stopped`); never throws. */
export async function stopRunBroker(broker: RunBroker, runner: Runner): Promise<void> {
  try {
    const r = await broker.started.stop();
    runner.info(
      `run: credential broker stopped after ${r.requests} request(s), ${r.unauthorized} refused, ${r.awsRefreshes} AWS issuance(s)${r.handedOutValidUntil ? `; credentials it handed out stay valid until ${r.handedOutValidUntil}` : ''}`,
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
