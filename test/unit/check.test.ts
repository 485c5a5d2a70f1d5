import { describe, expect, test } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkWorkflowText, cordonActionName } from '../../src/cli/check.js';
import { REPO_ROOT } from '../../src/devkit/run-action.js';

const fixture = (name: string): string =>
  readFileSync(join(REPO_ROOT, 'test/fixtures/workflows', name), 'utf8');

describe('cordon check', () => {
  test('recognises Cordon steps by path, not GitHub’s own actions', () => {
    expect(cordonActionName('cordon-dev/cordon/actions/egress@v1')).toBe('egress');
    expect(cordonActionName('cordon-dev/cordon/actions/start@main')).toBe('start');
    expect(cordonActionName('./actions/aws')).toBe('aws');
    expect(cordonActionName('actions/checkout@v4')).toBeUndefined();
  });

  test('reports every bad input with its line', () => {
    const { problems, steps } = checkWorkflowText(fixture('bad.yml'), 'bad.yml');
    expect(steps).toBe(3);
    const byLine = problems.map((p) => `${p.line}:${p.input}`);
    expect(byLine).toContain('13:fail-on-tamper');
    expect(byLine).toContain('14:colour');
    expect(byLine).toContain('17:role-to-assume');
    expect(byLine).toContain('19:role-duration-seconds');
    expect(byLine).toContain('20:allow');
    expect(problems.find((p) => p.input === 'role-to-assume')?.message).toContain('12 digits');
    // No permission asked: the agent must ask for what it needs.
    expect(problems.some((p) => p.action === 'github-token')).toBe(true);
  });

  test('a good workflow with expressions has no problems', () => {
    expect(checkWorkflowText(fixture('good.yml'), 'good.yml').problems).toEqual([]);
  });
});
