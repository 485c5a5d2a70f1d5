import { describe, expect, test } from '@jest/globals';
import { assertLoopback, checkRefreshBefore, parseBrokerConfig } from '../../../src/broker/config.js';
import { errorOf } from '../../harness/errors.js';

const valid = {
  v: 1,
  bind: '127.0.0.1',
  bearer: 'a'.repeat(64),
  controlToken: 'b'.repeat(64),
  ledgerPath: '/tmp/x/ledger.jsonl',
  action: 'run',
  refreshBeforeSeconds: 300,
  maxLifetimeSeconds: 60,
  aws: {
    roleArn: 'arn:aws:iam::111122223333:role/x',
    region: 'eu-west-1',
    audience: 'sts.amazonaws.com',
    sessionName: 's1',
    durationSeconds: 900,
    idTokenRequestUrl: 'http://127.0.0.1:1/token',
    idTokenRequestToken: 'request-token-value-123456',
  },
};

describe('broker config', () => {
  test('loopback addresses pass; names, wildcards and other interfaces are refused', () => {
    for (const ok of ['127.0.0.1', '127.0.0.53', '::1']) expect(() => assertLoopback(ok)).not.toThrow();
    for (const bad of [
      '0.0.0.0',
      '::',
      '10.1.2.3',
      '192.168.0.1',
      'localhost',
      '',
      '::ffff:127.0.0.1 ',
      '1.127.0.0',
    ])
      expect(() => assertLoopback(bad)).toThrow(/refused to bind .*loopback/);
  });

  test('parses a valid config and refuses a non-loopback bind inside it', () => {
    expect(parseBrokerConfig(JSON.stringify(valid)).aws?.roleArn).toBe(valid.aws.roleArn);
    expect(() => parseBrokerConfig(JSON.stringify({ ...valid, bind: '0.0.0.0' }))).toThrow(/refused to bind/);
  });

  test('errors name what is wrong and never quote a secret', () => {
    const cases = [
      'not json',
      JSON.stringify({ ...valid, v: 2 }),
      JSON.stringify({ ...valid, bearer: 'short' }),
      JSON.stringify({ ...valid, aws: { ...valid.aws, idTokenRequestUrl: '' } }),
      JSON.stringify({ ...valid, aws: undefined }),
    ];
    for (const c of cases) {
      let message = '';
      try {
        parseBrokerConfig(c);
      } catch (e) {
        message = (e as Error).message;
      }
      expect(message).toMatch(/configuration on stdin is not valid/);
      expect(message).not.toContain('request-token-value');
      expect(message).not.toContain('aaaa');
    }
  });
});

describe('broker config: the app', () => {
  const github = {
    issuer: '11',
    issuerInput: 'app-id',
    privateKey: '-----BEGIN RSA PRIVATE KEY-----\nkeybodykeybody\n-----END RSA PRIVATE KEY-----\n',
    owner: 'octo-org',
    repositories: [],
    permissions: { contents: 'read' },
    apiUrl: 'http://127.0.0.1:1',
  };
  const names = {
    action: 'run',
    input: {
      'app-id': 'github-app-id',
      'client-id': 'github-app-client-id',
      'private-key': 'github-app-private-key',
      owner: 'github-app-owner',
      repositories: 'github-app-repositories',
    },
    permissionsInput: 'github-app-permissions',
  };

  test("the app's input names cross to the broker with it; an app without them is refused", () => {
    const cfg = parseBrokerConfig(JSON.stringify({ ...valid, aws: undefined, github: { ...github, names } }));
    expect(cfg.github?.names.input['private-key']).toBe('github-app-private-key');
    const e = errorOf(() => parseBrokerConfig(JSON.stringify({ ...valid, aws: undefined, github })));
    expect(e.message).toContain('github needs the names of the inputs it came from');
    expect(e.message).not.toContain('keybody');
  });
});

describe('refresh-before-seconds: one rule, said plainly', () => {
  test('the error names the input, the highest value allowed and why, and the fix', () => {
    const e = errorOf(() =>
      checkRefreshBefore(899, {
        action: 'aws',
        aws: { durationSeconds: 900, input: 'role-duration-seconds' },
      }),
    );
    expect(e.input).toBe('refresh-before-seconds');
    expect(e.what).toBe('aws: input refresh-before-seconds "899" is not valid');
    expect(e.why).toBe(
      "it must be at most 840, the credentials' lifetime less 60 s: AWS credentials live 900 s (role-duration-seconds), " +
        'and the broker replaces them once fewer than 899 s remain, so it would replace them on almost every request ' +
        '(a new session or token each time, each one to revoke or outlive at stop)',
    );
    expect(e.fix).toBe(
      'use refresh-before-seconds: 300 (the default) or anything up to 840, or raise role-duration-seconds',
    );
    expect(errorOf(() => checkRefreshBefore(3600, { action: 'run', github: true })).why).toContain(
      'so it would replace them on every request',
    );
    expect(() => checkRefreshBefore(3540, { action: 'run', github: true })).not.toThrow();
  });

  test('a value that is not a whole number of seconds >= 0 is refused (a programmatic caller)', () => {
    for (const n of [-1, 1.5, Number.NaN]) {
      const e = errorOf(() => checkRefreshBefore(n, { action: 'run', github: true }));
      expect(e.input).toBe('refresh-before-seconds');
      expect(e.why).toContain('a whole number of seconds, 0 or more');
    }
  });
});
