/** run's `credentials: broker` inputs, parsed as the action parses them (no broker is started). */
import { describe, expect, test } from '@jest/globals';
import { errorOf } from '../../harness/errors.js';
import { parseRunInputs } from '../../../src/actions/run/inputs.js';

const AWS = {
  INPUT_RUN: 'true',
  INPUT_CREDENTIALS: 'broker',
  'INPUT_AWS-ROLE-TO-ASSUME': 'arn:aws:iam::111122223333:role/agent',
  'INPUT_AWS-REGION': 'us-east-1',
  'INPUT_AWS-ALLOW': 's3:GetObject arn:aws:s3:::agent-scratch/*',
};
const APP = {
  INPUT_RUN: 'true',
  INPUT_CREDENTIALS: 'broker',
  GITHUB_REPOSITORY: 'octo-org/octo-repo',
  'INPUT_GITHUB-APP-ID': '123',
  'INPUT_GITHUB-APP-PRIVATE-KEY': '-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n',
  'INPUT_GITHUB-APP-PERMISSIONS': 'contents: read',
};

describe('run: refresh-before-seconds against what the broker serves', () => {
  test("at or above the AWS role duration is refused, naming run's inputs", () => {
    const e = errorOf(() => parseRunInputs({ ...AWS, 'INPUT_REFRESH-BEFORE-SECONDS': '1000' }));
    expect(e.input).toBe('refresh-before-seconds');
    expect(e.message).toContain('run: input refresh-before-seconds "1000" is not valid');
    expect(e.message).toContain('(aws-role-duration-seconds)');
    expect(e.message).toContain('raise aws-role-duration-seconds');
    expect(
      parseRunInputs({
        ...AWS,
        'INPUT_REFRESH-BEFORE-SECONDS': '1000',
        'INPUT_AWS-ROLE-DURATION-SECONDS': '1h',
      }).broker?.refreshBeforeSeconds,
    ).toBe(1000);
    // Static credentials have nothing to refresh: the value is not used, so not refused.
    expect(
      parseRunInputs({ ...AWS, INPUT_CREDENTIALS: 'static', 'INPUT_REFRESH-BEFORE-SECONDS': '1000' }).broker
        ?.mode,
    ).toBe('static');
  });

  test('at or above the installation token hour is refused (a token minted per request, each revoked at stop)', () => {
    const e = errorOf(() => parseRunInputs({ ...APP, 'INPUT_REFRESH-BEFORE-SECONDS': '4000' }));
    expect(e.message).toContain('an installation token lives 3600 s');
    expect(e.message).toContain('up to 3540');
    expect(e.message).not.toContain('raise');
    expect(
      parseRunInputs({ ...APP, 'INPUT_REFRESH-BEFORE-SECONDS': '3540' }).broker?.refreshBeforeSeconds,
    ).toBe(3540);
    // Both served: the shorter lifetime decides.
    expect(
      errorOf(() =>
        parseRunInputs({
          ...AWS,
          ...APP,
          'INPUT_AWS-ROLE-DURATION-SECONDS': '2h',
          'INPUT_REFRESH-BEFORE-SECONDS': '3600',
        }),
      ).message,
    ).toContain('an installation token lives 3600 s');
  });

  test("both served, GitHub's hour deciding: the fix does not say to raise the AWS role duration (it would not help)", () => {
    const e = errorOf(() =>
      parseRunInputs({
        ...AWS,
        ...APP,
        'INPUT_AWS-ROLE-DURATION-SECONDS': '2h',
        'INPUT_REFRESH-BEFORE-SECONDS': '3550',
      }),
    );
    expect(e.message).toContain('an installation token lives 3600 s');
    expect(e.message).toContain('up to 3540');
    expect(e.message).not.toContain('raise aws-role-duration-seconds');
  });
});

describe('run: github-app-repositories', () => {
  test("owner/repo/extra is refused under run's input name, not cut to owner/repo", () => {
    const e = errorOf(() =>
      parseRunInputs({ ...APP, 'INPUT_GITHUB-APP-REPOSITORIES': 'octo-org/octo-repo/docs' }),
    );
    expect(e.input).toBe('github-app-repositories');
    expect(e.message).toContain('run: input github-app-repositories "octo-org/octo-repo/docs" is not valid');
    expect(e.message).toContain('has 3 parts');
  });

  test("errors name run's inputs without turning the words owner and repositories into input names", () => {
    const other = errorOf(() => parseRunInputs({ ...APP, 'INPUT_GITHUB-APP-REPOSITORIES': 'other-org/x' }));
    expect(other.input).toBe('github-app-repositories');
    expect(other.message).toContain(
      "a token reaches one owner's repositories, and github-app-owner is octo-org",
    );
    expect(other.message).toContain("list only octo-org's repositories, or set github-app-owner");
    const none = errorOf(() => parseRunInputs({ ...APP, 'INPUT_GITHUB-APP-OWNER': 'elsewhere' }));
    expect(none.input).toBe('github-app-repositories');
    expect(none.message).toContain('list the repositories the agent needs in github-app-repositories');
    for (const e of [other, none]) {
      expect(e.message).not.toMatch(/github-app-owner's|github-app-repositories the|the github-app-owner/);
    }
  });

  test('github-app-permissions errors say the line to write, in its own form', () => {
    const level = errorOf(() =>
      parseRunInputs({ ...APP, 'INPUT_GITHUB-APP-PERMISSIONS': 'contents: admin' }),
    );
    expect(level.input).toBe('github-app-permissions');
    expect(level.message).toContain('run: input github-app-permissions "contents: admin" is not valid');
    expect(level.message).toContain('contents accepts read or write');
    expect(level.message).toContain('write `contents: read` in github-app-permissions');
    const unknown = errorOf(() =>
      parseRunInputs({ ...APP, 'INPUT_GITHUB-APP-PERMISSIONS': 'everything: write' }),
    );
    expect(unknown.input).toBe('github-app-permissions');
    expect(unknown.message).toContain(
      'run: input github-app-permissions names an unknown permission: everything',
    );
    expect(unknown.message).not.toContain('permission-');
    const empty = errorOf(() => parseRunInputs({ ...APP, 'INPUT_GITHUB-APP-PERMISSIONS': '' }));
    expect(empty.input).toBe('github-app-permissions');
    expect(empty.message).toContain('run: input github-app-permissions is empty');
    expect(empty.message).toContain('`contents: write`');
    expect(empty.message).not.toContain('permission-');
  });

  test('a permission given twice in github-app-permissions is refused, whichever spelling or order', () => {
    for (const [lines, first, second, fix] of [
      [
        'contents: write\ncontents: read',
        'contents: write',
        'contents: read',
        '`contents: write` in github-app-permissions or `contents: read` in github-app-permissions',
      ],
      [
        'contents: read\nContents: write',
        'contents: read',
        'Contents: write',
        '`contents: read` in github-app-permissions or `contents: write` in github-app-permissions',
      ],
      [
        'pull_requests: write\npull-requests: read',
        'pull_requests: write',
        'pull-requests: read',
        '`pull-requests: write` in github-app-permissions or `pull-requests: read` in github-app-permissions',
      ],
      [
        'issues: read\nissues: read',
        'issues: read',
        'issues: read',
        'keep one line per permission: `issues: read` in github-app-permissions',
      ],
    ]) {
      const e = errorOf(() => parseRunInputs({ ...APP, 'INPUT_GITHUB-APP-PERMISSIONS': lines }));
      expect(e.input).toBe('github-app-permissions');
      expect(e.message).toContain(
        `run: input github-app-permissions gives ${first.split(':')[0].toLowerCase().replace(/_/g, '-')} twice: "${first}" and "${second}"`,
      );
      expect(e.message).toContain('which line wins would be decided by their order');
      expect(e.message.endsWith(fix)).toBe(true);
    }
    // One line each is still taken.
    expect(
      parseRunInputs({ ...APP, 'INPUT_GITHUB-APP-PERMISSIONS': 'contents: write\npull_requests: read' })
        .broker?.github?.permissions,
    ).toEqual({ contents: 'write', pull_requests: 'read' });
  });

  test("a malformed GITHUB_API_URL with no github-api-url is named as the runner's variable, not as the input", () => {
    const e = errorOf(() => parseRunInputs({ ...APP, GITHUB_API_URL: 'api.github.com' }));
    expect(e.message).toContain('run: GITHUB_API_URL "api.github.com" is not valid');
    expect(e.message).not.toContain('input github-api-url');
    expect(e.input).toBeUndefined();
  });

  test("github-api-url (GHES) is the API the broker mints at, over the runner's GITHUB_API_URL; a bad one is named", () => {
    const ghes = { ...APP, GITHUB_API_URL: 'https://api.github.com' };
    const github = parseRunInputs({ ...ghes, 'INPUT_GITHUB-API-URL': 'https://ghes.example.com/api/v3/' })
      .broker?.github;
    expect(github?.apiUrl).toBe('https://ghes.example.com/api/v3');
    // The broker's later messages (GitHub unreachable) name the input that set it.
    expect(github?.names.apiUrlInput).toBe('github-api-url');
    // Not given (run alone, or agent passing an empty one): the runner's, named as such.
    const runner = parseRunInputs({ ...ghes, 'INPUT_GITHUB-API-URL': '' }).broker?.github;
    expect(runner?.apiUrl).toBe('https://api.github.com');
    expect(runner?.names.apiUrlInput).toBeUndefined();
    const e = errorOf(() => parseRunInputs({ ...ghes, 'INPUT_GITHUB-API-URL': 'ghes.example.com' }));
    expect(e.input).toBe('github-api-url');
    expect(e.message).toContain('run: input github-api-url "ghes.example.com" is not valid');
    // Without an app the input is not used, and not refused (agent always passes one).
    const { broker } = parseRunInputs({ ...AWS, 'INPUT_GITHUB-API-URL': 'https://ghes.example.com/api/v3' });
    expect(broker?.github).toBeUndefined();
  });
});

describe('run: the AWS credentials the command gets are scoped, or unscoped by choice', () => {
  const role = { ...AWS, INPUT_CREDENTIALS: 'static', 'INPUT_AWS-ALLOW': '' };

  test('hostile: aws-role-to-assume without a session policy is refused, naming aws-allow and both fixes', () => {
    for (const mode of ['static', 'broker']) {
      const e = errorOf(() => parseRunInputs({ ...role, INPUT_CREDENTIALS: mode }));
      expect(e.input).toBe('aws-allow');
      expect(e.message).toContain('run: aws-role-to-assume was given without a session policy');
      expect(e.message).toContain('every permission arn:aws:iam::111122223333:role/agent has');
      expect(e.message).toContain('arn:aws:secretsmanager:us-east-1:111122223333:secret:<name>-*');
      expect(e.message).toContain("aws-allow: '*'");
    }
  });

  test("a session policy by any of the three inputs is enough; aws-allow: '*' hands over the role, marked unscoped", () => {
    expect(
      parseRunInputs({ ...role, 'INPUT_AWS-ALLOW': 's3:GetObject arn:aws:s3:::b/*' }).aws?.policy.unscoped,
    ).toBe(undefined);
    expect(
      parseRunInputs({
        ...role,
        'INPUT_AWS-MANAGED-SESSION-POLICIES': 'arn:aws:iam::aws:policy/ReadOnlyAccess',
      }).aws?.policy.unscoped,
    ).toBe(undefined);
    expect(
      parseRunInputs({
        ...role,
        'INPUT_AWS-INLINE-SESSION-POLICY':
          '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}',
      }).aws?.policy.unscoped,
    ).toBe(undefined);
    const chosen = parseRunInputs({ ...role, 'INPUT_AWS-ALLOW': '*' }).aws?.policy;
    expect(chosen).toMatchObject({ unscoped: 'chosen', statements: [] });
    expect(chosen?.json).toBeUndefined();
    // No role, nothing to scope.
    expect(parseRunInputs({ INPUT_RUN: 'true' }).aws).toBeUndefined();
  });
});
