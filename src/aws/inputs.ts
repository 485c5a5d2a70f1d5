/**
 * The AWS session inputs, typed and validated in one place. `actions/aws` reads them without
 * a prefix (`role-to-assume`); `actions/run` reads the same with `aws-` (`aws-role-to-assume`,
 * `aws-region`, `aws-allow`); `cordon check` validates a workflow's `with:` map offline
 * through `envFromWith`.
 */
import { CordonError } from '../platform/errors.js';
import { inputVariable, Inputs } from '../platform/inputs.js';
import type { Env } from '../platform/runner.js';
import { checkRefreshBefore, DEFAULT_REFRESH_BEFORE_SECONDS } from '../broker/config.js';
import { buildSessionPolicy, type SessionPolicy } from './policy.js';

export const DEFAULT_AUDIENCE = 'sts.amazonaws.com';
export const DEFAULT_DURATION_SECONDS = 900;
export const MIN_DURATION_SECONDS = 900;
export const MAX_DURATION_SECONDS = 43200;
export const EXPORT_MODES = ['env', 'profile', 'outputs', 'none', 'broker'] as const;
export type ExportMode = (typeof EXPORT_MODES)[number];

export interface RoleArn {
  arn: string;
  partition: string;
  account: string;
  /** Path and name, e.g. `ci/agent-role`. */
  name: string;
}

export interface AwsSessionInputs {
  role: RoleArn;
  region: string;
  audience: string;
  sessionName: string;
  durationSeconds: number;
  policy: SessionPolicy;
}

export interface AwsActionInputs extends AwsSessionInputs {
  export: ExportMode;
  profileName: string;
  retryMaxAttempts: number;
  maskAccountId: boolean;
  /** export: broker: get new credentials when fewer seconds than this remain. */
  refreshBeforeSeconds: number;
  /** configure-aws-credentials' inputs, kept so its users keep their `with:` block. */
  dropIn: {
    /** AssumeRole signed with the AWS_* credentials already in the environment, not the ID token. */
    roleChaining: boolean;
    externalId?: string;
    /** Chained only: no session tags (GitHub, Repository, Workflow, Action, Actor, Commit, Branch). */
    skipSessionTagging: boolean;
    /** Also set the credentials as masked step outputs, whatever `export` is. */
    outputCredentials: boolean;
    /** Empty AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN for later steps first. */
    unsetCurrentCredentials: boolean;
    /** Ask again (within the attempts) while the secret key holds a character other than a letter or digit. */
    specialCharactersWorkaround: boolean;
  };
}

/** configure-aws-credentials' default; Cordon's is lower, its ceiling the same. */
export const MAX_RETRY_ATTEMPTS = 12;
/** AWS caps a chained role session at one hour. */
export const MAX_CHAINED_DURATION_SECONDS = 3600;

const PARTITIONS = [
  'aws',
  'aws-cn',
  'aws-us-gov',
  'aws-iso',
  'aws-iso-b',
  'aws-iso-e',
  'aws-iso-f',
  'aws-eusc',
];
const ROLE_ARN_RE = /^arn:([a-z-]+):iam::(\d+):role\/(.+)$/;
const SESSION_NAME_RE = /^[\w+=,.@-]{2,64}$/;
const REGION_RE = /^[a-z]{2}(-[a-z]+)+-\d+$/;

/**
 * Parses an IAM role ARN in any partition; throws a CordonError saying which part is wrong.
 * `input` and `action` name the input in the message.
 */
export function parseRoleArn(value: string, input = 'role-to-assume', action = 'aws'): RoleArn {
  const bad = (why: string): never => {
    throw new CordonError({
      what: `${action}: ${input} "${value}" is not an IAM role ARN`,
      why,
      fix: "copy the ARN from the role's summary page in the IAM console (arn:aws:iam::123456789012:role/name)",
      input,
    });
  };
  const m = ROLE_ARN_RE.exec(value);
  if (!m) {
    if (/^arn:[^:]*:sts::\d+:assumed-role\//.test(value))
      bad('that is an assumed-role (session) ARN; give the role it came from');
    if (/^arn:[^:]*:iam::\d+:user\//.test(value))
      bad('that is an IAM user ARN; OIDC federation assumes a role');
    if (!value.startsWith('arn:'))
      bad('an ARN starts with "arn:"; a bare role name is not enough because the account is needed');
    return bad('expected arn:<partition>:iam::<12-digit account>:role/<path/name>');
  }
  const [, partition, account, name] = m;
  if (!PARTITIONS.includes(partition))
    bad(`"${partition}" is not an AWS partition (${PARTITIONS.join(', ')})`);
  if (account.length !== 12) bad(`the account id must have 12 digits; "${account}" has ${account.length}`);
  if (!/^([\w+=,.@-]+\/)*[\w+=,.@-]{1,64}$/.test(name))
    bad(`role name "${name}" has characters IAM does not allow or is longer than 64`);
  return { arn: value, partition, account, name };
}

/** Cuts a string to a valid STS RoleSessionName: `[\w+=,.@-]`, 2..64 characters. */
export function sanitizeSessionName(s: string): string {
  const cleaned = s.replace(/[^\w+=,.@-]/g, '-').slice(0, 64);
  return cleaned.length >= 2 ? cleaned : `${cleaned}--`.slice(0, 2);
}

/** `cordon-<run_id>-<run_attempt>-<job>`, sanitized: the default session name, so CloudTrail points at the run. */
export function defaultSessionName(env: Env): string {
  const parts = [
    'cordon',
    env.GITHUB_RUN_ID || 'local',
    env.GITHUB_RUN_ATTEMPT || '1',
    env.GITHUB_JOB || 'job',
  ];
  return sanitizeSessionName(parts.join('-'));
}

/** Input names for the session inputs under a prefix: `aws-` gives `aws-role-to-assume`, `aws-region`, `aws-allow`. */
export function sessionInputNames(
  prefix = '',
): Record<
  'roleToAssume' | 'region' | 'audience' | 'sessionName' | 'duration' | 'inline' | 'managed' | 'allow',
  string
> {
  const n = (base: string): string => (prefix && base.startsWith(prefix) ? base : prefix + base);
  return {
    roleToAssume: n('role-to-assume'),
    region: n('aws-region'),
    audience: n('audience'),
    sessionName: n('role-session-name'),
    duration: n('role-duration-seconds'),
    inline: n('inline-session-policy'),
    managed: n('managed-session-policies'),
    allow: n('allow'),
  };
}

/**
 * Parses the session inputs (role, region, audience, session name, duration, policies) from
 * `inputs`, under an optional name prefix. Returns undefined when `optional` is set and no
 * role was given (`actions/run` without AWS); otherwise the role and region are required.
 * `env` gives GITHUB_RUN_ID/RUN_ATTEMPT/JOB for the default session name.
 */
export function parseAwsSessionInputs(
  inputs: Inputs,
  opts: { prefix?: string; optional?: boolean; env?: Env } = {},
): AwsSessionInputs | undefined {
  const names = sessionInputNames(opts.prefix);
  const action = inputs.action;
  if (opts.optional && !inputs.has(names.roleToAssume)) {
    const stray = [names.inline, names.allow, names.managed].find((n) => inputs.has(n));
    if (stray) {
      throw new CordonError({
        what: `${action}: ${stray} was given without ${names.roleToAssume}`,
        why: 'a session policy only applies to a role Cordon assumes',
        fix: `add \`${names.roleToAssume}: arn:aws:iam::<account>:role/<name>\`, or remove ${stray}`,
        input: names.roleToAssume,
      });
    }
    return undefined;
  }
  const role = parseRoleArn(
    inputs.string(names.roleToAssume, { required: true }),
    names.roleToAssume,
    action,
  );
  const region = inputs.raw(names.region);
  if (!region) {
    throw new CordonError({
      what: `${action}: input ${names.region} is required`,
      why: 'STS and every later AWS call need a region, and Cordon does not guess one',
      fix: `add \`${names.region}: us-east-1\` (or your region) under \`with:\``,
      input: names.region,
    });
  }
  if (!REGION_RE.test(region)) {
    inputs.fail(
      names.region,
      region,
      'a region looks like us-east-1 or eu-central-2',
      'write the region code, not its display name',
    );
  }
  const sessionNameRaw = inputs.raw(names.sessionName);
  if (sessionNameRaw && !SESSION_NAME_RE.test(sessionNameRaw)) {
    inputs.fail(
      names.sessionName,
      sessionNameRaw,
      'STS allows 2 to 64 characters from letters, digits and +=,.@_-',
      'remove spaces and other characters, or leave it empty for the default',
    );
  }
  const sessionName = sessionNameRaw || defaultSessionName(opts.env ?? inputs.env);
  const durationSeconds = inputs.duration(names.duration, DEFAULT_DURATION_SECONDS, {
    min: MIN_DURATION_SECONDS,
    max: MAX_DURATION_SECONDS,
  });
  const policy = buildSessionPolicy(
    {
      inline: inputs.multiline(names.inline),
      allow: inputs.lines(names.allow),
      managed: inputs.list(names.managed),
    },
    { action, names: { inline: names.inline, allow: names.allow, managed: names.managed } },
  );
  return {
    role,
    region,
    audience: inputs.string(names.audience, { default: DEFAULT_AUDIENCE }),
    sessionName,
    durationSeconds,
    policy,
  };
}

/** Parses every input of `actions/aws`: the session inputs plus export, profile, retries and masking. */
export function parseAwsActionInputs(inputs: Inputs, env: Env = inputs.env): AwsActionInputs {
  const session = parseAwsSessionInputs(inputs, { env }) as AwsSessionInputs;
  const exportMode = inputs.enumeration('export', EXPORT_MODES, 'env');
  const profileName = inputs.string('profile-name', { default: 'cordon' });
  if (!/^[\w+=,.@-]{1,64}$/.test(profileName)) {
    inputs.fail(
      'profile-name',
      profileName,
      'a profile name may hold letters, digits and +=,.@_-',
      'use a name such as cordon or agent',
    );
  }
  const roleChaining = inputs.boolean('role-chaining', false);
  const externalId = inputs.string('role-external-id');
  if (externalId && !roleChaining) {
    inputs.fail(
      'role-external-id',
      externalId,
      'an external ID is part of AssumeRole, which Cordon calls only with role-chaining; AssumeRoleWithWebIdentity takes none',
      'add `role-chaining: true` (chain from credentials an earlier step set), or remove role-external-id',
    );
  }
  if (externalId && !/^[\w+=,.@:/-]{2,1224}$/.test(externalId)) {
    inputs.fail(
      'role-external-id',
      externalId,
      'STS allows 2 to 1224 characters from letters, digits and +=,.@:/_-',
      "copy the external ID from the role's trust policy",
    );
  }
  if (roleChaining && session.durationSeconds > MAX_CHAINED_DURATION_SECONDS) {
    inputs.fail(
      'role-duration-seconds',
      String(session.durationSeconds),
      'AWS caps a session reached by role chaining at one hour',
      'use 3600 or less with role-chaining',
    );
  }
  if (roleChaining && exportMode === 'broker') {
    inputs.fail(
      'role-chaining',
      'true',
      "the broker refreshes from the ID token, not from a job's credentials",
      'use export: env, profile, outputs or none with role-chaining',
    );
  }
  if (exportMode === 'broker') {
    // The broker hands out credentials as they are asked for, after this step: none to output or re-ask for here.
    for (const name of ['output-credentials', 'special-characters-workaround']) {
      if (inputs.boolean(name, false)) {
        inputs.fail(
          name,
          'true',
          "with export: broker no credentials exist at this step's end, only the broker's address",
          `use another export mode, or remove ${name}`,
        );
      }
    }
  }
  const refreshBeforeSeconds = inputs.integer('refresh-before-seconds', DEFAULT_REFRESH_BEFORE_SECONDS, {
    min: 0,
    max: MAX_DURATION_SECONDS,
  });
  if (exportMode === 'broker') {
    checkRefreshBefore(refreshBeforeSeconds, {
      action: inputs.action,
      aws: { durationSeconds: session.durationSeconds, input: 'role-duration-seconds' },
    });
  }
  const disableRetry = inputs.boolean('disable-retry', false);
  const attempts = inputs.integer('retry-max-attempts', 5, { min: 1, max: MAX_RETRY_ATTEMPTS });
  return {
    ...session,
    export: exportMode,
    profileName,
    retryMaxAttempts: disableRetry ? 1 : attempts,
    maskAccountId: inputs.boolean('mask-aws-account-id', true),
    refreshBeforeSeconds,
    dropIn: {
      roleChaining,
      externalId: externalId || undefined,
      skipSessionTagging: inputs.boolean('role-skip-session-tagging', false),
      outputCredentials: inputs.boolean('output-credentials', false),
      unsetCurrentCredentials: inputs.boolean('unset-current-credentials', false),
      specialCharactersWorkaround: inputs.boolean('special-characters-workaround', false),
    },
  };
}

/** The `INPUT_*` environment a step with this `with:` map would see, for offline validation. */
export function envFromWith(withMap: Record<string, unknown>, base: Env = {}): Env {
  const env: Env = { ...base };
  for (const [k, v] of Object.entries(withMap)) {
    if (v === undefined || v === null) continue;
    env[inputVariable(k)] = typeof v === 'string' ? v : String(v);
  }
  return env;
}
