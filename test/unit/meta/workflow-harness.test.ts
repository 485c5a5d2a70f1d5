import { describe, expect, test } from '@jest/globals';
import { cordonAction, evaluate, interpolate, stepsOf, yamlBlocks } from '../../harness/workflow.js';

/** The examples test reads workflows as the runner would; these are the parts it relies on. */
describe('the examples test’s workflow reader (test/harness/workflow.ts)', () => {
  test('a Cordon step is any actions/<name> this repository has; GitHub’s own and others are not', () => {
    expect(cordonAction('cordon-dev/cordon/actions/run@v1')).toBe('run');
    expect(cordonAction('./actions/agent')).toBe('agent');
    expect(cordonAction('actions/checkout@v4')).toBeUndefined();
    expect(cordonAction('cordon-dev/cordon/actions/no-such-action@v1')).toBeUndefined();
    expect(cordonAction('anthropics/claude-code-action@v1')).toBeUndefined();
  });

  test('expressions: contexts, comparisons, || and &&, functions; an unknown one fails loudly', () => {
    const ctx = {
      inputs: { 'app-id': '', 'client-id': 'Iv1' },
      secrets: { A: 'x' },
      github: { run_id: '7' },
    };
    expect(evaluate("inputs.app-id != '' || inputs.client-id != ''", ctx)).toBe(true);
    expect(evaluate("inputs.app-id != '' && inputs.client-id != ''", ctx)).toBe(false);
    expect(evaluate("startsWith(inputs['client-id'], 'iv')", ctx)).toBe(true);
    expect(interpolate('agent/${{ github.run_id }} ${{ toJSON(secrets) }}', ctx)).toBe(
      'agent/7 {\n  "A": "x"\n}',
    );
    expect(() => evaluate('hashFiles(x)', ctx)).toThrow('function hashFiles is not supported');
    expect(() => evaluate('matrix.os', ctx)).toThrow('context matrix is not given');
  });

  test('the steps of a snippet or of every job, and the YAML blocks of one README section', () => {
    expect(stepsOf('steps:\n  - uses: a/b/actions/start@v1\n').map((s) => s.uses)).toEqual([
      'a/b/actions/start@v1',
    ]);
    expect(stepsOf('jobs:\n  j:\n    steps:\n      - run: x\n').map((s) => s.run)).toEqual(['x']);
    const md =
      '# T\n## Quick start\n\n```yaml\na: 1\n```\ntext\n```yaml\nb: 2\n```\n## Next\n```yaml\nc: 3\n```\n';
    expect(yamlBlocks(md, 'Quick start')).toEqual(['a: 1\n', 'b: 2\n']);
  });
});
