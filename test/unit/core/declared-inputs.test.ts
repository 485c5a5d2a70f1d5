import { describe, expect, test } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { REPO_ROOT } from '../../../src/devkit/run-action.js';
import { CordonError } from '../../../src/platform/errors.js';
import { declaredInputNames, rejectUnknownInputs } from '../../../src/platform/declared-inputs.js';

const ACTIONS = ['aws', 'egress', 'github-token', 'run', 'secrets', 'start'];

describe('declared inputs', () => {
  test.each(ACTIONS)('the line reader finds exactly the inputs a YAML parser finds in actions/%s', (a) => {
    const text = readFileSync(join(REPO_ROOT, 'actions', a, 'action.yml'), 'utf8');
    const meta = parse(text) as { inputs?: Record<string, unknown> };
    expect(declaredInputNames(text).sort()).toEqual(Object.keys(meta.inputs ?? {}).sort());
  });

  test('an undeclared INPUT_ variable is an error naming it, never its value', () => {
    const env = {
      'INPUT_ROLE-TO-ASSUME': 'arn',
      'INPUT_AWS-SECRET-ACCESS-KEY': 'value-never-shown-5e6f',
      PATH: '/bin',
    };
    let e: unknown;
    try {
      rejectUnknownInputs('aws', env, ['role-to-assume']);
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(CordonError);
    expect((e as Error).message).toContain('`aws-secret-access-key` is not supported');
    expect((e as Error).message).not.toContain('value-never-shown-5e6f');
    expect(() =>
      rejectUnknownInputs('aws', { 'INPUT_ROLE-TO-ASSUME': 'x' }, ['role-to-assume']),
    ).not.toThrow();
  });
});
