import { describe, expect, test } from '@jest/globals';
import {
  expandedName,
  parseSecretSpecs,
  parseSecretsJson,
  targetProblem,
} from '../../../src/secrets/spec.js';

describe('parseSecretSpecs', () => {
  test('parses each source, ARNs with colons, JSON keys, expansion and not-secret', () => {
    const specs = parseSecretSpecs(
      [
        '# comment',
        'DB=aws-sm:arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/db-AbCdEf#creds.password',
        '',
        'KEY=ssm:/app/key',
        'API=json:API_KEY',
        'HOME_DIR=env:HOME_SRC',
        'PG_*=aws-sm:prod/pg',
      ].join('\r\n'),
      { notSecret: ['HOME_DIR'] },
    );
    expect(specs.map((s) => [s.target, s.expand, s.source, s.ref, s.key, s.notSecret, s.line])).toEqual([
      [
        'DB',
        false,
        'aws-sm',
        'arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/db-AbCdEf',
        'creds.password',
        false,
        2,
      ],
      ['KEY', false, 'ssm', '/app/key', undefined, false, 4],
      ['API', false, 'json', 'API_KEY', undefined, false, 5],
      ['HOME_DIR', false, 'env', 'HOME_SRC', undefined, true, 6],
      ['PG_', true, 'aws-sm', 'prod/pg', undefined, false, 7],
    ]);
  });

  test.each([
    ['NOEQUALS', 'is not TARGET=source:reference'],
    ['X=vault:foo', 'has no known source'],
    ['X=aws-sm:', 'names no aws-sm reference'],
    ['X=aws-sm:a#', 'empty JSON key'],
    ['X=env:not a name', 'is not a variable name'],
    ['PATH=env:A', 'target name "PATH" is refused'],
    ['ld_preload=env:A', 'target name "ld_preload" is refused'],
    ['GITHUB_ENV=env:A', 'target name "GITHUB_ENV" is refused'],
    ['X=env:A\nX=env:B', 'target X is already set on line 1'],
  ])('refuses %j', (text, message) => {
    expect(() => parseSecretSpecs(text)).toThrow(message);
  });

  test('target rules', () => {
    for (const ok of ['API_KEY', 'db_password', '_X', 'GH_TOKEN']) expect(targetProblem(ok)).toBeUndefined();
    for (const bad of [
      'PATH',
      'NODE_OPTIONS',
      'LD_PRELOAD',
      'BASH_ENV',
      'RUNNER_TEMP',
      'ACTIONS_RUNTIME_TOKEN',
      'A-B',
      '9X',
      '',
    ])
      expect(targetProblem(bad)).toBeDefined();
    expect(expandedName('DB_', 'conn.string-v2')).toBe('DB_CONN_STRING_V2');
  });
});

describe('parseSecretSpecs refuses characters outside printable ASCII', () => {
  test('a U+00A0 after a target or a U+FEFF in a reference is an error naming line and code point', () => {
    expect(() => parseSecretSpecs('A=env:A\nAPI_KEY\u00A0=json:API_KEY')).toThrow(
      'secrets: secrets: line 2 has the character U+00A0 at column 8',
    );
    expect(() => parseSecretSpecs('DB=aws-sm:prod/db\uFEFF', { input: 'secrets' })).toThrow(
      'line 1 has the character U+FEFF at column 18',
    );
    expect(() => parseSecretSpecs('\uFEFFDB=aws-sm:prod/db')).toThrow('U+FEFF at column 1');
  });

  test('the line is not quoted (names only, and only by code point)', () => {
    let message = '';
    try {
      parseSecretSpecs('TOKEN=ssm:/app/tok\u200Ben');
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toContain('U+200B');
    expect(message).not.toContain('/app/tok');
  });

  test('comments may hold any text', () => {
    expect(parseSecretSpecs('# clé de l’API\nA=env:A').map((s) => s.target)).toEqual(['A']);
  });
});

describe('parseSecretsJson', () => {
  test('parses a map and never quotes the text in its error', () => {
    expect(parseSecretsJson('{"A":"x","N":5}')).toEqual({ A: 'x', N: '5' });
    expect(parseSecretsJson('')).toEqual({});
    try {
      parseSecretsJson('{"A": "super-secret-value"');
      throw new Error('no error');
    } catch (e) {
      expect(String(e)).toContain('is not valid JSON');
      expect(String(e)).not.toContain('super-secret-value');
    }
    expect(() => parseSecretsJson('["a"]')).toThrow('is not a JSON object');
  });
});
