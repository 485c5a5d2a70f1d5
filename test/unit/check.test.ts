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
    expect(steps).toBe(5);
    const byLine = problems.map((p) => `${p.line}:${p.input}`);
    expect(byLine).toContain('13:fail-on-tamper');
    expect(byLine).toContain('14:colour');
    expect(byLine).toContain('17:role-to-assume');
    expect(byLine).toContain('19:role-duration-seconds');
    expect(byLine).toContain('20:allow');
    expect(problems.find((p) => p.input === 'role-to-assume')?.message).toContain('12 digits');
    expect(byLine).toContain('27:permission-contents');
    expect(byLine).toContain('30:allowed-domains');
    expect(byLine).toContain('33:allowed-ips');
    expect(byLine).toContain('37:secrets');
    expect(byLine).toContain('39:leak-scan');
    expect(problems.find((p) => p.input === 'allowed-domains')?.message).toContain('https://evil.test/path');
  });

  test('a good workflow with expressions has no problems', () => {
    expect(checkWorkflowText(fixture('good.yml'), 'good.yml').problems).toEqual([]);
  });
});

describe('cordon plan', () => {
  test('prints the ruleset, the session policy and the token scope of a workflow', async () => {
    const { planWorkflowText } = await import('../../src/cli/plan.js');
    const text = planWorkflowText(readFileSync(join(REPO_ROOT, 'examples/coding-agent-pr.yml'), 'utf8'));
    expect(text).toContain('table inet cordon {');
    expect(text).toContain('policy drop;');
    expect(text).toContain('"Resource": "arn:aws:s3:::build-cache/*"');
    expect(text).toContain('permissions: contents: write, pull_requests: write');
    expect(text).toContain('ACTIONS_ID_TOKEN_REQUEST_TOKEN');
    expect(text).toContain('api.anthropic.com');
  });
});
