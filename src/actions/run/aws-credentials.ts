/**
 * `run`'s own AWS credentials (without the broker): the workflow's ID token exchanged for a
 * role session scoped to the command, recorded as `credentials.issued`.
 */
import { assumeRoleWithWebIdentity, type AwsCredentials } from '../../aws/sts.js';
import type { CredentialsIssued } from '../../ledger/events.js';
import { Ledger } from '../../ledger/ledger.js';
import type { SecretRegistry } from '../../platform/mask.js';
import { getIdToken, hasIdTokenAccess, missingIdTokenError, type OidcDeps } from '../../platform/oidc.js';
import type { Env, Runner } from '../../platform/runner.js';
import type { RunInputs } from './inputs.js';
import { RUN_AWS_INPUT_NAMES } from './broker.js';

export interface MintDeps {
  env: Env;
  runner: Runner;
  registry: SecretRegistry;
  fetch?: OidcDeps['fetch'];
}

export async function mintAwsCredentials(
  inputs: RunInputs,
  deps: MintDeps,
): Promise<AwsCredentials | undefined> {
  const aws = inputs.aws;
  if (!aws) return undefined;
  if (!hasIdTokenAccess(deps.env)) throw missingIdTokenError('run');
  const token = await getIdToken(aws.audience, {
    env: deps.env,
    fetch: deps.fetch,
    registry: deps.registry,
    action: 'run',
    audienceInput: RUN_AWS_INPUT_NAMES.audience,
  });
  const creds = await assumeRoleWithWebIdentity(
    {
      roleArn: aws.role.arn,
      sessionName: aws.sessionName,
      durationSeconds: aws.durationSeconds,
      webIdentityToken: token,
      region: aws.region,
      policy: aws.policy.json,
      managedPolicyArns: aws.policy.managedPolicyArns,
    },
    {
      env: deps.env,
      registry: deps.registry,
      action: 'run',
      inputNames: RUN_AWS_INPUT_NAMES,
      onRetry: (reason, attempt, delay) =>
        deps.runner.info(`run: STS call ${attempt} failed (${reason}); retrying in ${delay} ms`),
    },
  );
  const event: CredentialsIssued = {
    provider: 'aws',
    role: aws.role.arn,
    assumedRoleArn: creds.assumedRoleArn,
    sessionName: aws.sessionName,
    expiration: creds.expiration.toISOString(),
    durationSeconds: aws.durationSeconds,
    account: creds.account,
    region: aws.region,
    export: 'command',
    statements: aws.policy.statements,
    managedPolicies: aws.policy.managedPolicyArns,
    ...(aws.policy.unscoped ? { unscoped: aws.policy.unscoped } : {}),
  };
  Ledger.forEnv(deps.env, { action: 'run', registry: deps.registry }).append('credentials.issued', event);
  if (aws.policy.unscoped)
    deps.runner.info(
      `run: the command's AWS credentials are UNSCOPED (aws-allow: '*'): every permission ${aws.role.arn} has`,
    );
  return creds;
}
