/**
 * `actions/aws` with `export: broker`: starts the credential broker (src/broker) for the
 * steps after this one and exports only its address and bearer token (the container-
 * credentials variables every AWS SDK and the CLI read); post stops it.
 */
import { startBroker, stopBrokerByState, type BrokerState } from '../../broker/start.js';
import { AWS_PATH, ENV_BROKER_TOKEN, ENV_BROKER_URL } from '../../broker/config.js';
import { CordonError, describeError } from '../../platform/errors.js';
import type { SecretRegistry } from '../../platform/mask.js';
import { hasIdTokenAccess, missingIdTokenError } from '../../platform/oidc.js';
import type { Env, Runner } from '../../platform/runner.js';
import type { AwsActionInputs } from '../../aws/inputs.js';
import { unscopedWarning, type AwsState } from './issue.js';

export interface ExportBrokerDeps {
  env: Env;
  runner: Runner;
  registry: SecretRegistry;
  /** dist/broker/main.js (default: next to the running bundle). */
  brokerScript?: string;
}

/** Variables exported to later steps: never PATH, never the control token. */
const EXPORTED = [
  'AWS_CONTAINER_CREDENTIALS_FULL_URI',
  'AWS_CONTAINER_AUTHORIZATION_TOKEN',
  'AWS_REGION',
  'AWS_DEFAULT_REGION',
  ENV_BROKER_URL,
  ENV_BROKER_TOKEN,
];

/** Saved-state key holding the broker's `BrokerState` for post. */
export const BROKER_STATE = 'broker';

/** `arn:<partition>:sts::<account>:assumed-role/<role name>/<session>`: what STS returns for a web-identity session. */
function assumedRoleArn(inputs: AwsActionInputs): string {
  const name = inputs.role.name.split('/').pop() as string;
  return `arn:${inputs.role.partition}:sts::${inputs.role.account}:assumed-role/${name}/${inputs.sessionName}`;
}

/**
 * Starts the broker with this step's ID-token pair (it keeps it in memory; the step's own
 * environment is not exported), exports the container-credentials variables, blanks static
 * keys an earlier step exported (an SDK would use them first), sets the outputs and saves
 * the broker's state for post.
 */
export async function exportThroughBroker(inputs: AwsActionInputs, deps: ExportBrokerDeps): Promise<void> {
  const { env, runner, registry } = deps;
  if (inputs.maskAccountId) runner.setSecret(inputs.role.account);
  if (!hasIdTokenAccess(env)) throw missingIdTokenError('aws');
  const onSecret = (v: string): void => {
    try {
      registry.register(v, { name: 'broker credential' });
    } catch {
      // A value too short to mask is not a credential.
    }
  };
  const broker = await startBroker(
    {
      action: 'aws',
      env,
      aws: inputs,
      refreshBeforeSeconds: inputs.refreshBeforeSeconds,
      // The broker serves the steps after this one: it outlives this process.
      watchParent: false,
    },
    { onSecret, ...(deps.brokerScript ? { brokerScript: deps.brokerScript } : {}) },
  );
  // Only post may stop it; the control token never reaches a later step's environment.
  runner.setSecret(broker.state.controlToken);
  onSecret(broker.env.AWS_CONTAINER_AUTHORIZATION_TOKEN);
  runner.saveState(BROKER_STATE, JSON.stringify(broker.state));
  let expiration: string;
  try {
    const res = await fetch(`${broker.url}${AWS_PATH}`, {
      headers: { authorization: broker.env.AWS_CONTAINER_AUTHORIZATION_TOKEN },
      signal: AbortSignal.timeout(30000),
    });
    if (!res.ok) throw new Error(`it answered HTTP ${res.status}`);
    expiration = ((await res.json()) as { Expiration: string }).Expiration;
  } catch (e) {
    await broker.stop().catch(() => undefined);
    throw new CordonError({
      what: 'aws: the credential broker started but did not hand out credentials',
      why: describeError(e),
      fix: `see the broker log ${broker.logPath}`,
      input: 'export',
    });
  }
  const blanked: string[] = [];
  for (const k of broker.unset) {
    // The runner's own ID-token pair cannot be taken from later steps (docs/broker.md says so).
    if (k.startsWith('ACTIONS_ID_TOKEN_REQUEST_')) continue;
    if (env[k] !== undefined && env[k] !== '') {
      runner.exportVariable(k, '');
      blanked.push(k);
    }
  }
  for (const k of EXPORTED) if (broker.env[k] !== undefined) runner.exportVariable(k, broker.env[k]);
  const arn = assumedRoleArn(inputs);
  runner.setOutput('aws-account-id', inputs.role.account);
  runner.setOutput('assumed-role-arn', arn);
  runner.setOutput('session-name', inputs.sessionName);
  runner.setOutput('expiration', expiration);
  runner.setOutput('aws-expiration', expiration);
  runner.setOutput('broker-url', broker.url);
  const state: AwsState = { export: 'broker', role: inputs.role.arn, expiration };
  runner.saveState('aws', JSON.stringify(state));
  runner.info(
    `aws: credential broker for ${arn} on ${broker.url} (pid ${broker.pid}); later steps get credentials through AWS_CONTAINER_CREDENTIALS_FULL_URI, refreshed when fewer than ${inputs.refreshBeforeSeconds} s remain, until post stops it${inputs.policy.unscoped ? '; UNSCOPED: no session policy, every permission the role has' : ''}${blanked.length ? `; blanked ${blanked.join(', ')}` : ''}`,
  );
  if (inputs.policy.unscoped === 'default') runner.warning(unscopedWarning(inputs.role.arn));
}

/**
 * Post: stops the broker main started (it records `broker.stopped`). Returns when the
 * credentials it handed out stay valid until, if any; undefined when there was no broker.
 */
export async function stopExportedBroker(runner: Runner): Promise<string | undefined> {
  const raw = runner.getState(BROKER_STATE);
  if (!raw) return undefined;
  const state = JSON.parse(raw) as BrokerState;
  runner.setSecret(state.controlToken);
  try {
    const r = await stopBrokerByState(state);
    runner.info(
      `aws: credential broker stopped after ${r.requests} request(s), ${r.unauthorized} refused, ${r.awsRefreshes} AWS issuance(s)${r.handedOutValidUntil ? `; credentials it handed out stay valid until ${r.handedOutValidUntil}` : ''}`,
    );
    return r.handedOutValidUntil;
  } catch (e) {
    runner.warning(`aws: the credential broker did not stop cleanly: ${describeError(e)}`);
    return undefined;
  }
}
