/** `aws`'s main: ID token -> STS -> masked credentials, exported the way the step asks, and recorded. */
import type { CredentialsIssued } from '../../ledger/events.js';
import { httpGetFor } from '../../platform/http-get.js';
import { Ledger } from '../../ledger/ledger.js';
import type { SecretRegistry } from '../../platform/mask.js';
import { getIdToken, hasIdTokenAccess, missingIdTokenError } from '../../platform/oidc.js';
import type { Env, Runner } from '../../platform/runner.js';
import type { AwsActionInputs } from '../../aws/inputs.js';
import { profilePaths, sectionHeader, writeSection } from '../../aws/profile-files.js';
import { assumeRoleWithWebIdentity, type AwsCredentials } from '../../aws/sts.js';

export interface IssueDeps {
  env: Env;
  runner: Runner;
  registry: SecretRegistry;
  fetch?: typeof fetch;
}

/** What main leaves for post in saved state. */
export interface AwsState {
  export: string;
  role: string;
  expiration: string;
  profile?: string;
  files?: string[];
}

function exportCredentials(inputs: AwsActionInputs, creds: AwsCredentials, runner: Runner): string[] {
  switch (inputs.export) {
    case 'env':
      runner.exportVariable('AWS_ACCESS_KEY_ID', creds.accessKeyId);
      runner.exportVariable('AWS_SECRET_ACCESS_KEY', creds.secretAccessKey);
      runner.exportVariable('AWS_SESSION_TOKEN', creds.sessionToken);
      runner.exportVariable('AWS_REGION', inputs.region);
      runner.exportVariable('AWS_DEFAULT_REGION', inputs.region);
      return [];
    case 'profile': {
      const paths = profilePaths(runner.tempDir);
      writeSection(paths.config, sectionHeader('config', inputs.profileName), { region: inputs.region });
      writeSection(paths.credentials, sectionHeader('credentials', inputs.profileName), {
        aws_access_key_id: creds.accessKeyId,
        aws_secret_access_key: creds.secretAccessKey,
        aws_session_token: creds.sessionToken,
      });
      runner.exportVariable('AWS_CONFIG_FILE', paths.config);
      runner.exportVariable('AWS_SHARED_CREDENTIALS_FILE', paths.credentials);
      runner.exportVariable('AWS_PROFILE', inputs.profileName);
      return [paths.config, paths.credentials];
    }
    case 'outputs':
      runner.setOutput('aws-access-key-id', creds.accessKeyId);
      runner.setOutput('aws-secret-access-key', creds.secretAccessKey);
      runner.setOutput('aws-session-token', creds.sessionToken);
      return [];
    case 'none':
    case 'broker':
      return [];
  }
}

/**
 * Runs the whole exchange for `actions/aws`: masks the account id (unless told not to), gets
 * the ID token, calls STS with retries, exports, sets the outputs, records
 * `credentials.issued` and saves what post needs.
 */
export async function issueCredentials(inputs: AwsActionInputs, deps: IssueDeps): Promise<AwsCredentials> {
  const { env, runner, registry } = deps;
  // The account id is masked in the log, not refused by the ledger: the recorded ARNs name it.
  if (inputs.maskAccountId) runner.setSecret(inputs.role.account);
  if (!hasIdTokenAccess(env)) throw missingIdTokenError('aws');
  // node:http is loaded for the SDK anyway; global fetch would load undici just for this GET.
  const token = await getIdToken(inputs.audience, { env, fetch: deps.fetch ?? httpGetFor(env), registry });
  const creds = await assumeRoleWithWebIdentity(
    {
      roleArn: inputs.role.arn,
      sessionName: inputs.sessionName,
      durationSeconds: inputs.durationSeconds,
      webIdentityToken: token,
      region: inputs.region,
      policy: inputs.policy.json,
      managedPolicyArns: inputs.policy.managedPolicyArns,
    },
    {
      env,
      registry,
      maxAttempts: inputs.retryMaxAttempts,
      onRetry: (reason, attempt, delay) =>
        runner.info(
          `aws: STS call ${attempt} of ${inputs.retryMaxAttempts} failed (${reason}); retrying in ${delay} ms`,
        ),
    },
  );
  if (inputs.maskAccountId && creds.account !== inputs.role.account) runner.setSecret(creds.account);
  const files = exportCredentials(inputs, creds, runner);
  const expiration = creds.expiration.toISOString();
  runner.setOutput('aws-account-id', creds.account);
  runner.setOutput('assumed-role-arn', creds.assumedRoleArn);
  runner.setOutput('session-name', inputs.sessionName);
  runner.setOutput('expiration', expiration);
  const event: CredentialsIssued = {
    provider: 'aws',
    role: inputs.role.arn,
    assumedRoleArn: creds.assumedRoleArn,
    sessionName: inputs.sessionName,
    expiration,
    durationSeconds: inputs.durationSeconds,
    account: creds.account,
    region: inputs.region,
    export: inputs.export,
    statements: inputs.policy.statements,
    managedPolicies: inputs.policy.managedPolicyArns,
  };
  Ledger.forEnv(env, { action: 'aws', registry }).append('credentials.issued', event);
  const state: AwsState = {
    export: inputs.export,
    role: inputs.role.arn,
    expiration,
    profile: inputs.profileName,
    files,
  };
  runner.saveState('aws', JSON.stringify(state));
  const scope =
    inputs.policy.statements.length || inputs.policy.managedPolicyArns.length
      ? `session policy: ${inputs.policy.statements.length} statement(s), ${inputs.policy.managedPolicyArns.length} managed`
      : "no session policy: the role's own permissions apply";
  const where = {
    env: 'as AWS_* variables',
    profile: `as profile ${inputs.profileName}`,
    outputs: 'as step outputs',
    none: 'nowhere (export: none)',
    broker: 'through the credential broker',
  }[inputs.export];
  runner.info(
    `aws: assumed ${creds.assumedRoleArn} until ${expiration} (${inputs.durationSeconds} s; ${scope}); exported ${where}`,
  );
  return creds;
}
