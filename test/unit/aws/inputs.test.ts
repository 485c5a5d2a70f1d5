import { describe, expect, test } from '@jest/globals';
import { errorOf } from '../../harness/errors.js';
import { Inputs } from '../../../src/platform/inputs.js';
import {
  defaultSessionName,
  envFromWith,
  parseAwsActionInputs,
  parseAwsSessionInputs,
  parseRoleArn,
  sanitizeSessionName,
} from '../../../src/aws/inputs.js';

const ROLE = 'arn:aws:iam::111122223333:role/agent';
const run = { GITHUB_RUN_ID: '99', GITHUB_RUN_ATTEMPT: '2', GITHUB_JOB: 'build' };

describe('role ARN', () => {
  test('accepts every partition and role paths', () => {
    expect(parseRoleArn('arn:aws-cn:iam::111122223333:role/ci/agent')).toMatchObject({
      partition: 'aws-cn',
      account: '111122223333',
      name: 'ci/agent',
    });
    expect(parseRoleArn('arn:aws-us-gov:iam::111122223333:role/x').partition).toBe('aws-us-gov');
  });

  test('says what is wrong', () => {
    expect(errorOf(() => parseRoleArn('arn:aws:iam::12345:role/x')).message).toContain(
      'must have 12 digits; "12345" has 5',
    );
    expect(errorOf(() => parseRoleArn('agent')).message).toContain('a bare role name is not enough');
    expect(errorOf(() => parseRoleArn('arn:aws:sts::111122223333:assumed-role/x/s')).message).toContain(
      'assumed-role (session) ARN',
    );
    expect(errorOf(() => parseRoleArn('arn:aws:iam::111122223333:user/x')).message).toContain('IAM user ARN');
    expect(errorOf(() => parseRoleArn('arn:azure:iam::111122223333:role/x')).message).toContain(
      '"azure" is not an AWS partition',
    );
    expect(errorOf(() => parseRoleArn('arn:aws:iam::111122223333:role/a b')).message).toContain(
      'characters IAM does not allow',
    );
    expect(errorOf(() => parseRoleArn('x', 'aws-role-to-assume', 'run')).input).toBe('aws-role-to-assume');
  });
});

describe('session name', () => {
  test('defaults to cordon-<run_id>-<run_attempt>-<job>, cut to STS rules', () => {
    expect(defaultSessionName(run)).toBe('cordon-99-2-build');
    expect(defaultSessionName({ ...run, GITHUB_JOB: 'build (ubuntu, 20)' })).toBe(
      'cordon-99-2-build--ubuntu,-20-',
    );
    expect(defaultSessionName({ ...run, GITHUB_JOB: 'j'.repeat(100) })).toHaveLength(64);
    expect(sanitizeSessionName('a')).toHaveLength(2);
  });

  test('a given name is validated, not silently changed', () => {
    const i = new Inputs('aws', {
      ...run,
      'INPUT_ROLE-TO-ASSUME': ROLE,
      'INPUT_AWS-REGION': 'us-east-1',
      'INPUT_ROLE-SESSION-NAME': 'my session',
    });
    expect(errorOf(() => parseAwsSessionInputs(i)).message).toContain(
      'role-session-name "my session" is not valid',
    );
  });
});

describe('session inputs', () => {
  test('defaults: 900 s, sts.amazonaws.com, env export, 5 attempts, account masked', () => {
    const a = parseAwsActionInputs(
      new Inputs('aws', { ...run, 'INPUT_ROLE-TO-ASSUME': ROLE, 'INPUT_AWS-REGION': 'eu-west-1' }),
    );
    expect(a).toMatchObject({
      region: 'eu-west-1',
      audience: 'sts.amazonaws.com',
      sessionName: 'cordon-99-2-build',
      durationSeconds: 900,
      export: 'env',
      profileName: 'cordon',
      retryMaxAttempts: 5,
      maskAccountId: true,
      policy: { statements: [], managedPolicyArns: [] },
    });
  });

  test('duration accepts units and is bounded to 900..43200', () => {
    const d = (v: string) =>
      new Inputs('aws', {
        'INPUT_ROLE-TO-ASSUME': ROLE,
        'INPUT_AWS-REGION': 'us-east-1',
        'INPUT_ROLE-DURATION-SECONDS': v,
      });
    expect(parseAwsSessionInputs(d('1h'))?.durationSeconds).toBe(3600);
    expect(errorOf(() => parseAwsSessionInputs(d('43201'))).message).toContain('900..43200');
    expect(errorOf(() => parseAwsSessionInputs(d('899'))).message).toContain('900..43200');
  });

  test('region is required and checked', () => {
    const r = (v?: string) => new Inputs('aws', { 'INPUT_ROLE-TO-ASSUME': ROLE, 'INPUT_AWS-REGION': v });
    expect(errorOf(() => parseAwsSessionInputs(r())).message).toContain('input aws-region is required');
    expect(errorOf(() => parseAwsSessionInputs(r('Ireland'))).message).toContain(
      'aws-region "Ireland" is not valid',
    );
  });

  test('with the aws- prefix, as actions/run reads them; optional when no role is given', () => {
    const env = envFromWith(
      {
        'aws-role-to-assume': ROLE,
        'aws-region': 'us-east-1',
        'aws-allow': 's3:GetObject arn:aws:s3:::b/*',
        'aws-role-duration-seconds': 1800,
      },
      run,
    );
    const s = parseAwsSessionInputs(new Inputs('run', env), { prefix: 'aws-', optional: true });
    expect(s).toMatchObject({
      durationSeconds: 1800,
      policy: { statements: [{ actions: ['s3:GetObject'] }] },
    });
    expect(parseAwsSessionInputs(new Inputs('run', {}), { prefix: 'aws-', optional: true })).toBeUndefined();
    const stray = errorOf(() =>
      parseAwsSessionInputs(new Inputs('run', envFromWith({ 'aws-allow': 's3:GetObject *' })), {
        prefix: 'aws-',
        optional: true,
      }),
    );
    expect(stray.message).toContain('run: aws-allow was given without aws-role-to-assume');
    const bad = errorOf(() =>
      parseAwsSessionInputs(
        new Inputs(
          'run',
          envFromWith({ 'aws-role-to-assume': ROLE, 'aws-region': 'us-east-1', 'aws-allow': 's3:GetObject' }),
        ),
        { prefix: 'aws-' },
      ),
    );
    expect(bad.message).toContain('run: aws-allow: line 1');
    expect(bad.input).toBe('aws-allow');
  });

  test('export and profile-name are validated', () => {
    const base = { 'INPUT_ROLE-TO-ASSUME': ROLE, 'INPUT_AWS-REGION': 'us-east-1' };
    expect(
      errorOf(() => parseAwsActionInputs(new Inputs('aws', { ...base, INPUT_EXPORT: 'file' }))).message,
    ).toContain('env | profile | outputs | none');
    expect(
      errorOf(() => parseAwsActionInputs(new Inputs('aws', { ...base, 'INPUT_PROFILE-NAME': 'a b' })))
        .message,
    ).toContain('profile-name');
  });
});

describe('refresh-before-seconds against the credential lifetime', () => {
  const base = { 'INPUT_ROLE-TO-ASSUME': ROLE, 'INPUT_AWS-REGION': 'us-east-1', INPUT_EXPORT: 'broker' };
  const parse = (extra: Record<string, string>) =>
    parseAwsActionInputs(new Inputs('aws', { ...base, ...extra }));

  test('at or above the role duration (a new session on every request) is refused, naming the input and the fix', () => {
    const e = errorOf(() => parse({ 'INPUT_REFRESH-BEFORE-SECONDS': '1000' }));
    expect(e.input).toBe('refresh-before-seconds');
    expect(e.message).toContain('aws: input refresh-before-seconds "1000" is not valid');
    expect(e.message).toContain('AWS credentials live 900 s (role-duration-seconds)');
    expect(e.message).toContain('every request');
    expect(e.message).toMatch(/up to 840, or raise role-duration-seconds/);
    expect(errorOf(() => parse({ 'INPUT_REFRESH-BEFORE-SECONDS': '900' })).message).toContain(
      'every request',
    );
    // Under a minute of freshness is as bad in practice.
    expect(errorOf(() => parse({ 'INPUT_REFRESH-BEFORE-SECONDS': '899' })).message).toContain(
      'it must be at most 840',
    );
    expect(
      errorOf(() => parse({ 'INPUT_REFRESH-BEFORE-SECONDS': '3600', 'INPUT_ROLE-DURATION-SECONDS': '3600' }))
        .message,
    ).toContain('up to 3540');
  });

  test('a minute short of the duration, or a longer duration, is accepted; other export modes do not use it', () => {
    expect(parse({ 'INPUT_REFRESH-BEFORE-SECONDS': '840' }).refreshBeforeSeconds).toBe(840);
    expect(parse({}).refreshBeforeSeconds).toBe(300);
    expect(
      parse({ 'INPUT_REFRESH-BEFORE-SECONDS': '1000', 'INPUT_ROLE-DURATION-SECONDS': '3600' })
        .refreshBeforeSeconds,
    ).toBe(1000);
    expect(parse({ INPUT_EXPORT: 'env', 'INPUT_REFRESH-BEFORE-SECONDS': '1000' }).refreshBeforeSeconds).toBe(
      1000,
    );
  });
});
