/** `actions/run`'s inputs, typed and validated in one place. */
import { parseAwsSessionInputs, type AwsSessionInputs } from '../../aws/inputs.js';
import { CordonError } from '../../platform/errors.js';
import { Inputs } from '../../platform/inputs.js';
import type { Env } from '../../platform/runner.js';
import { parseSecretSourceInputs, type SecretSourceInputs } from '../../secrets/inputs.js';
import { parseRunBrokerInputs, type RunBrokerInputs } from './broker.js';

export const LEAK_SCAN_MODES = ['fail', 'warn', 'off'] as const;
export type LeakScanMode = (typeof LEAK_SCAN_MODES)[number];

export const HOME_MODES = ['fresh', 'keep'] as const;
export type HomeMode = (typeof HOME_MODES)[number];

export const USER_MODES = ['auto', 'agent', 'runner'] as const;
export type UserMode = (typeof USER_MODES)[number];

export interface RunInputs extends SecretSourceInputs {
  run: string;
  shell: string;
  workingDirectory: string;
  githubToken: string;
  keepEnv: string[];
  /** 0 = no limit. */
  timeoutMs: number;
  scrubOutput: boolean;
  leakScan: LeakScanMode;
  /** `fresh`: a new HOME, credential-file variables dropped, the checkout token withheld. */
  home: HomeMode;
  /**
   * `agent`: a Unix user made for this step runs the command; `runner`: the runner user;
   * `auto`: agent wherever root or passwordless sudo is there, else runner (said so).
   */
  user: UserMode;
  aws?: AwsSessionInputs;
  /** `credentials` and `refresh-before-seconds`: static keys or the credential broker. */
  broker?: RunBrokerInputs;
}

export function parseRunInputs(env: Env): RunInputs {
  const i = new Inputs('run', env);
  const run = i.multiline('run', { required: true });
  const timeoutRaw = i.raw('timeout-minutes');
  let timeoutMs = 0;
  if (timeoutRaw !== '') {
    const minutes = Number(timeoutRaw);
    if (!/^\d+(\.\d+)?$/.test(timeoutRaw) || !(minutes > 0) || minutes > 360 * 24) {
      i.fail(
        'timeout-minutes',
        timeoutRaw,
        'expected a number of minutes above 0',
        'write e.g. `timeout-minutes: 30`',
      );
    }
    timeoutMs = Math.round(minutes * 60000);
  }
  const aws = parseAwsSessionInputs(i, { prefix: 'aws-', optional: true, env });
  if (aws?.policy.unscoped === 'default') throw unscopedAwsError(aws);
  return {
    ...parseSecretSourceInputs(i),
    run,
    shell: i.string('shell'),
    workingDirectory: i.string('working-directory'),
    githubToken: i.string('github-token'),
    keepEnv: i.list('keep-env'),
    timeoutMs,
    scrubOutput: i.boolean('scrub-output', true),
    leakScan: i.enumeration('leak-scan', LEAK_SCAN_MODES, 'fail'),
    home: i.enumeration('home', HOME_MODES, 'fresh'),
    user: i.enumeration('user', USER_MODES, 'auto'),
    aws,
    broker: parseRunBrokerInputs(i, aws),
  };
}

/**
 * The command is the agent: the AWS credentials run hands it are narrowed by a session
 * policy, or handed over unscoped only when the workflow says so (`aws-allow: '*'`).
 */
function unscopedAwsError(aws: AwsSessionInputs): CordonError {
  return new CordonError({
    what: 'run: aws-role-to-assume was given without a session policy',
    why:
      `the command would get every permission ${aws.role.arn} has; run's AWS credentials go to the agent, ` +
      'so they are narrowed by aws-allow, aws-inline-session-policy or aws-managed-session-policies, ' +
      'or handed over unscoped only when the workflow says so',
    fix:
      'add `aws-allow` lines for what the command needs (e.g. `secretsmanager:GetSecretValue ' +
      `arn:aws:secretsmanager:${aws.region}:${aws.role.account}:secret:<name>-*\` for its aws-sm: secrets), ` +
      "or `aws-allow: '*'` to hand it the role's own permissions, recorded as unscoped",
    input: 'aws-allow',
  });
}
