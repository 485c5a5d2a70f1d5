/** `aws`'s main: ID token -> STS -> masked credentials, exported the way the step asks, and recorded. */
import type { CredentialsIssued } from '../../ledger/events.js';
import { httpGetFor } from '../../platform/http-get.js';
import { Ledger } from '../../ledger/ledger.js';
import type { SecretRegistry } from '../../platform/mask.js';
import { getIdToken, hasIdTokenAccess, missingIdTokenError } from '../../platform/oidc.js';
import type { Env, Runner } from '../../platform/runner.js';
import type { AwsActionInputs } from '../../aws/inputs.js';
import { profilePaths, sectionHeader, writeSection } from '../../aws/profile-files.js';
import { assumeRoleWithWebIdentity, type AssumeRequest, type AwsCredentials } from '../../aws/sts.js';
import { CordonError } from '../../platform/errors.js';

const KEY_VARIABLES = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN'] as const;

/** The session tags configure-aws-credentials puts on a chained session, from the run's variables. */
export function sessionTags(env: Env): { Key: string; Value: string }[] {
  const from: [string, string | undefined][] = [
    ['GitHub', 'Actions'],
    ['Repository', env.GITHUB_REPOSITORY],
    ['Workflow', env.GITHUB_WORKFLOW],
    ['Action', env.GITHUB_ACTION],
    ['Actor', env.GITHUB_ACTOR],
    ['Commit', env.GITHUB_SHA],
    ['Branch', env.GITHUB_REF],
  ];
  // STS allows letters, digits, spaces and _.:/=+-@ in a tag value, 256 at most.
  return from.flatMap(([Key, v]) =>
    v ? [{ Key, Value: v.replace(/[^\p{L}\p{Z}\p{N}_.:/=+\-@]/gu, '*').slice(0, 256) }] : [],
  );
}

/** role-chaining: the credentials an earlier step left in the environment, registered as secrets. */
function chainFrom(inputs: AwsActionInputs, env: Env, registry: SecretRegistry): AssumeRequest['chain'] {
  const [id, key, token] = KEY_VARIABLES.map((k) => env[k] ?? '');
  if (!id || !key) {
    throw new CordonError({
      what: 'aws: role-chaining found no AWS credentials in the environment',
      why: 'role-chaining signs AssumeRole with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) set by an earlier step',
      fix: 'put a Cordon aws step with `export: env` for the first role before this one, or remove role-chaining',
      input: 'role-chaining',
    });
  }
  registry.register(key, { name: 'AWS secret access key' });
  if (token) registry.register(token, { name: 'AWS session token' });
  return {
    credentials: { accessKeyId: id, secretAccessKey: key, sessionToken: token || undefined },
    externalId: inputs.dropIn.externalId,
    tags: inputs.dropIn.skipSessionTagging ? undefined : sessionTags(env),
  };
}

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
  const chain = inputs.dropIn.roleChaining ? chainFrom(inputs, env, registry) : undefined;
  if (!chain && !hasIdTokenAccess(env)) throw missingIdTokenError('aws');
  if (inputs.dropIn.unsetCurrentCredentials) for (const k of KEY_VARIABLES) runner.exportVariable(k, '');
  // node:http is loaded for the SDK anyway; global fetch would load undici just for this GET.
  const token = chain
    ? ''
    : await getIdToken(inputs.audience, {
        env,
        fetch: deps.fetch ?? httpGetFor(env),
        registry,
        action: 'aws',
        audienceInput: 'audience',
      });
  const request: AssumeRequest = {
    roleArn: inputs.role.arn,
    sessionName: inputs.sessionName,
    durationSeconds: inputs.durationSeconds,
    webIdentityToken: token,
    region: inputs.region,
    policy: inputs.policy.json,
    managedPolicyArns: inputs.policy.managedPolicyArns,
    chain,
  };
  const sts = {
    env,
    registry,
    maxAttempts: inputs.retryMaxAttempts,
    onRetry: (reason: string, attempt: number, delay: number) =>
      runner.info(
        `aws: STS call ${attempt} of ${inputs.retryMaxAttempts} failed (${reason}); retrying in ${delay} ms`,
      ),
  };
  let creds = await assumeRoleWithWebIdentity(request, sts);
  // special-characters-workaround: some tools choke on a secret key with + or /; ask again,
  // within the attempts allowed, for one of letters and digits only.
  for (
    let asked = 1;
    inputs.dropIn.specialCharactersWorkaround && /[^A-Za-z0-9]/.test(creds.secretAccessKey);
    asked++
  ) {
    if (asked >= inputs.retryMaxAttempts) {
      throw new CordonError({
        what: `aws: every one of ${asked} sessions had a secret access key with special characters`,
        why: 'special-characters-workaround asks STS again until the key holds only letters and digits, at most retry-max-attempts times',
        fix: 'raise retry-max-attempts (up to 12), or remove special-characters-workaround (Cordon exports any key safely)',
        input: 'special-characters-workaround',
      });
    }
    creds = await assumeRoleWithWebIdentity(request, sts);
  }
  if (inputs.maskAccountId && creds.account !== inputs.role.account) runner.setSecret(creds.account);
  const files = exportCredentials(inputs, creds, runner);
  const expiration = creds.expiration.toISOString();
  runner.setOutput('aws-account-id', creds.account);
  runner.setOutput('assumed-role-arn', creds.assumedRoleArn);
  runner.setOutput('session-name', inputs.sessionName);
  runner.setOutput('expiration', expiration);
  runner.setOutput('aws-expiration', expiration);
  if (inputs.dropIn.outputCredentials && inputs.export !== 'outputs') {
    runner.setOutput('aws-access-key-id', creds.accessKeyId);
    runner.setOutput('aws-secret-access-key', creds.secretAccessKey);
    runner.setOutput('aws-session-token', creds.sessionToken);
  }
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
    ...(inputs.policy.unscoped ? { unscoped: inputs.policy.unscoped } : {}),
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
  const scope = inputs.policy.unscoped
    ? `UNSCOPED: no session policy, every permission the role has${inputs.policy.unscoped === 'chosen' ? ' (allow: *)' : ''}`
    : `session policy: ${inputs.policy.statements.length} statement(s), ${inputs.policy.managedPolicyArns.length} managed`;
  if (inputs.policy.unscoped === 'default') runner.warning(unscopedWarning(inputs.role.arn));
  const where = {
    env: 'as AWS_* variables',
    profile: `as profile ${inputs.profileName}`,
    outputs: 'as step outputs',
    none: 'nowhere (export: none)',
    broker: 'through the credential broker',
  }[inputs.export];
  runner.info(
    `aws: ${chain ? 'chained to' : 'assumed'} ${creds.assumedRoleArn} until ${expiration} (${inputs.durationSeconds} s; ${scope}); exported ${where}`,
  );
  return creds;
}

/** The warning for credentials no session policy narrows, when nobody said that was meant. */
export function unscopedWarning(role: string): string {
  return `aws: no session policy: the credentials carry every permission ${role} has (unscoped). Add \`allow\` lines (or inline-session-policy / managed-session-policies) for what the later steps need, or \`allow: '*'\` to say unscoped is meant`;
}
