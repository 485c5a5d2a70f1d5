import { describe, expect, test } from '@jest/globals';
import { assertLoopback, parseBrokerConfig } from '../../../src/broker/config.js';

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
