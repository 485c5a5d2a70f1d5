import { describe, expect, test } from '@jest/globals';
import { errorOf } from '../../harness/errors.js';
import {
  buildSessionPolicy,
  parseAllowLines,
  parseInlinePolicy,
  validateManagedPolicyArns,
} from '../../../src/aws/policy.js';
import { isCordonError } from '../../../src/platform/errors.js';
import { Inputs } from '../../../src/platform/inputs.js';

const lines = (text: string) =>
  text.split('\n').flatMap((t, i) => (t.trim() ? [{ line: i + 1, text: t.trim() }] : []));

describe('inline session policy', () => {
  test('accepts a document, a single statement and a list of statements', () => {
    const st = { Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::b/*' };
    expect(parseInlinePolicy(JSON.stringify({ Version: '2012-10-17', Statement: [st] }))).toEqual([st]);
    expect(parseInlinePolicy(JSON.stringify({ Version: '2012-10-17', Statement: st }))).toEqual([st]);
    expect(parseInlinePolicy(JSON.stringify(st))).toEqual([st]);
    expect(parseInlinePolicy(JSON.stringify([st, { ...st, Effect: 'Deny' }]))).toHaveLength(2);
  });

  test('names the statement and the problem', () => {
    const bad = (s: unknown) =>
      errorOf(() =>
        parseInlinePolicy(
          JSON.stringify({ Statement: [{ Effect: 'Allow', Action: '*', Resource: '*' }, s] }),
        ),
      );
    expect(bad({ Effect: 'allow', Action: '*', Resource: '*' }).message).toContain(
      'statement 2 has Effect "allow"',
    );
    expect(bad({ Effect: 'Allow', Action: 's3 GetObject', Resource: '*' }).message).toContain(
      'statement 2 has action "s3 GetObject"',
    );
    expect(bad({ Effect: 'Allow', Action: '*', Resource: 'bucket/*' }).message).toContain(
      'statement 2 has resource "bucket/*"',
    );
    expect(bad({ Effect: 'Allow', Action: '*' }).message).toContain(
      'needs exactly one of Resource or NotResource',
    );
    expect(bad({ Effect: 'Allow', Action: '*', Resource: '*', Principal: '*' }).message).toContain(
      'take no Principal',
    );
    expect(bad({ Effect: 'Allow', Action: '*', NotAction: 'iam:*', Resource: '*' }).message).toContain(
      'exactly one of Action or NotAction',
    );
  });

  test('bad JSON and wrong Version fail with the input named', () => {
    const e = errorOf(() => parseInlinePolicy('{"Statement": ['));
    expect(e.input).toBe('inline-session-policy');
    expect(e.message).toContain('is not valid JSON');
    expect(errorOf(() => parseInlinePolicy('{"Version":"2008-10-17","Statement":[]}')).message).toContain(
      'Version "2008-10-17"',
    );
    expect(errorOf(() => parseInlinePolicy('{"Statement":[]}')).message).toContain('has no statements');
    expect(
      errorOf(() => parseInlinePolicy('"x"', { input: 'aws-inline-session-policy', action: 'run' })).message,
    ).toMatch(/^run: aws-inline-session-policy: is not a policy document/);
  });
});

describe('allow shorthand', () => {
  test('builds Allow statements, merging lines with the same resources', () => {
    expect(
      parseAllowLines(
        lines(
          's3:GetObject arn:aws:s3:::b/*\ns3:PutObject arn:aws:s3:::b/*\ns3:ListBucket arn:aws:s3:::b\nsts:GetCallerIdentity,ec2:Describe* *',
        ),
      ),
    ).toEqual([
      { Effect: 'Allow', Action: ['s3:GetObject', 's3:PutObject'], Resource: 'arn:aws:s3:::b/*' },
      { Effect: 'Allow', Action: 's3:ListBucket', Resource: 'arn:aws:s3:::b' },
      { Effect: 'Allow', Action: ['sts:GetCallerIdentity', 'ec2:Describe*'], Resource: '*' },
    ]);
  });

  test('several resources on one line, any partition', () => {
    expect(parseAllowLines(lines('s3:GetObject arn:aws-cn:s3:::b/* arn:aws-us-gov:s3:::c/*'))).toEqual([
      {
        Effect: 'Allow',
        Action: 's3:GetObject',
        Resource: ['arn:aws-cn:s3:::b/*', 'arn:aws-us-gov:s3:::c/*'],
      },
    ]);
  });

  test('says which line is wrong and never widens a missing resource', () => {
    const e = errorOf(() => parseAllowLines(lines('s3:GetObject arn:aws:s3:::b/*\n\ns3:PutObject')));
    expect(e.message).toContain('allow: line 3 ("s3:PutObject") has no resource');
    expect(e.message).toContain('never widens a missing resource to *');
    expect(errorOf(() => parseAllowLines(lines('s3:GetObject s3://bucket/key'))).message).toContain(
      'line 1 ("s3:GetObject s3://bucket/key") has resource "s3://bucket/key"',
    );
    expect(errorOf(() => parseAllowLines(lines('GetObject arn:aws:s3:::b'))).message).toContain(
      'has action "GetObject"',
    );
  });
});

describe('allow shorthand refuses characters outside printable ASCII', () => {
  // As the action reads it: through the runner's INPUT_ variable and Inputs.lines.
  const allowFrom = (value: string) =>
    parseAllowLines(new Inputs('aws', { INPUT_ALLOW: value }).lines('allow'));

  test('a U+FEFF inside a resource is an error, not a split into two resources', () => {
    const e = errorOf(() =>
      allowFrom('s3:GetObject arn:aws:s3:::b/*\ns3:PutObject arn:aws:s3:::agent-scratch/\uFEFF*'),
    );
    expect(e.message).toContain('aws: allow: line 2 has the character U+FEFF at column 41');
    expect(e.message).toContain('("s3:PutObject arn:aws:s3:::agent-scratch/<U+FEFF>*")');
    expect(e.message).toContain('Fix: delete the character');
    expect(isCordonError(e) && e.input).toBe('allow');
  });

  test('U+00A0 and other Unicode spaces are not separators', () => {
    for (const sep of ['\u00A0', '\u2003', '\u3000', '\u200B', '\u2028']) {
      const cp = `U+${sep.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
      expect(errorOf(() => allowFrom(`s3:GetObject${sep}arn:aws:s3:::b/*`)).message).toContain(
        `line 1 has the character ${cp} at column 13`,
      );
    }
  });

  test('an invisible character at either end of a line is refused, not trimmed away', () => {
    expect(errorOf(() => allowFrom('\uFEFFs3:GetObject arn:aws:s3:::b/*')).message).toContain(
      'line 1 has the character U+FEFF at column 1',
    );
    expect(errorOf(() => allowFrom('s3:GetObject arn:aws:s3:::b/*\u00A0\n')).message).toContain(
      'line 1 has the character U+00A0 at column 30',
    );
  });

  test('control characters and look-alikes are refused; tabs separate', () => {
    expect(errorOf(() => allowFrom('s3:GetObject arn:aws:s3:::b/\x01*')).message).toContain('U+0001');
    expect(errorOf(() => allowFrom('s3:GetObject arn:aws:s3:::b/\u2217')).message).toContain('U+2217');
    expect(allowFrom('s3:GetObject\tarn:aws:s3:::b/*')).toEqual([
      { Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::b/*' },
    ]);
  });

  test('aws-allow (actions/run) names its own input', () => {
    const e = errorOf(() =>
      parseAllowLines([{ line: 3, text: 's3:GetObject arn:aws:s3:::b/\uFEFF*' }], { input: 'aws-allow' }),
    );
    expect(e.message).toContain('aws: aws-allow: line 3 has the character U+FEFF');
  });

  test('a JSON resource holding an invisible character is refused and shown', () => {
    expect(
      errorOf(() =>
        parseInlinePolicy('{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/\uFEFF*"}'),
      ).message,
    ).toContain('has resource "arn:aws:s3:::b/<U+FEFF>*"');
  });
});

describe('managed policies and the merged policy', () => {
  test('validates ARNs and the count of 10', () => {
    expect(
      validateManagedPolicyArns([
        'arn:aws:iam::aws:policy/ReadOnlyAccess',
        'arn:aws-cn:iam::123456789012:policy/team/x',
      ]),
    ).toHaveLength(2);
    expect(errorOf(() => validateManagedPolicyArns(['arn:aws:iam::aws:role/x'])).message).toContain(
      'entry 1 "arn:aws:iam::aws:role/x" is not a managed policy ARN',
    );
    const eleven = Array.from({ length: 11 }, (_, i) => `arn:aws:iam::aws:policy/P${i}`);
    expect(errorOf(() => validateManagedPolicyArns(eleven)).message).toContain('lists 11 policies');
    expect(validateManagedPolicyArns([...eleven.slice(0, 10), eleven[0]])).toHaveLength(10);
  });

  test('merges JSON and allow lines, JSON first, with a summary for the ledger', () => {
    const p = buildSessionPolicy({
      inline:
        '{"Version":"2012-10-17","Statement":[{"Effect":"Deny","NotAction":"s3:*","NotResource":"arn:aws:s3:::b"}]}',
      allow: lines('s3:GetObject arn:aws:s3:::b/*'),
      managed: ['arn:aws:iam::aws:policy/ReadOnlyAccess'],
    });
    expect(JSON.parse(p.json ?? '').Statement).toHaveLength(2);
    expect(p.statements).toEqual([
      { effect: 'Deny', actions: ['not s3:*'], resources: ['not arn:aws:s3:::b'] },
      { effect: 'Allow', actions: ['s3:GetObject'], resources: ['arn:aws:s3:::b/*'] },
    ]);
    expect(p.managedPolicyArns).toEqual(['arn:aws:iam::aws:policy/ReadOnlyAccess']);
    expect(p.unscoped).toBeUndefined();
    expect(buildSessionPolicy({})).toEqual({ statements: [], managedPolicyArns: [], unscoped: 'default' });
    expect(
      buildSessionPolicy({ managed: ['arn:aws:iam::aws:policy/ReadOnlyAccess'] }).unscoped,
    ).toBeUndefined();
  });

  test("allow: '*' alone hands over the role unscoped, said so; '*' with anything else is refused", () => {
    expect(buildSessionPolicy({ allow: lines('*') })).toEqual({
      statements: [],
      managedPolicyArns: [],
      unscoped: 'chosen',
    });
    const names = {
      inline: 'aws-inline-session-policy',
      allow: 'aws-allow',
      managed: 'aws-managed-session-policies',
    };
    const withLine = errorOf(() =>
      buildSessionPolicy({ allow: lines('s3:GetObject arn:aws:s3:::b/*\n*') }, { action: 'run', names }),
    );
    expect(withLine.input).toBe('aws-allow');
    expect(withLine.message).toContain('line 2 is "*" and another aws-allow line is given too');
    expect(
      errorOf(() =>
        buildSessionPolicy({ allow: lines('*'), managed: ['arn:aws:iam::aws:policy/ReadOnlyAccess'] }),
      ).message,
    ).toContain('managed-session-policies is given too');
    expect(
      errorOf(() =>
        buildSessionPolicy({
          allow: lines('*'),
          inline: '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}',
        }),
      ).message,
    ).toContain('inline-session-policy is given too');
  });

  test('refuses a policy over the 2,048 characters STS accepts', () => {
    const many = Array.from({ length: 60 }, (_, i) => `s3:GetObject arn:aws:s3:::bucket-number-${i}/*`).join(
      '\n',
    );
    expect(errorOf(() => buildSessionPolicy({ allow: lines(many) })).message).toContain('at most 2048');
  });
});
