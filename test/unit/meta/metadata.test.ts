import { describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parse } from 'yaml';
import { NoOperationTraceWriter, parseWorkflow } from '@actions/workflow-parser';
import { parseAction } from '@actions/workflow-parser/actions/action-parser';
import { REPO_ROOT } from '../../../src/devkit/run-action.js';

const actionFiles = readdirSync(join(REPO_ROOT, 'actions')).map((a) =>
  join(REPO_ROOT, 'actions', a, 'action.yml'),
);
const workflowFiles = ['.github/workflows', 'examples']
  .map((d) => join(REPO_ROOT, d))
  .filter((d) => existsSync(d))
  .flatMap((d) =>
    readdirSync(d)
      .filter((f) => /\.ya?ml$/.test(f))
      .map((f) => join(d, f)),
  );

describe('action metadata and workflows pass GitHub’s own schema (@actions/workflow-parser)', () => {
  test.each(actionFiles)('%s', (file) => {
    const content = readFileSync(file, 'utf8');
    const result = parseAction({ name: file, content }, new NoOperationTraceWriter());
    expect(result.context.errors.getErrors().map((e) => e.message)).toEqual([]);
    const meta = parse(content) as {
      runs: { using: string; main?: string; post?: string; steps?: unknown[] };
    };
    if (meta.runs.using === 'composite') {
      expect(Array.isArray(meta.runs.steps)).toBe(true);
    } else {
      expect(meta.runs.using).toBe('node24');
      for (const entry of [meta.runs.main, meta.runs.post].filter(Boolean) as string[]) {
        expect(existsSync(resolve(dirname(file), entry))).toBe(true);
      }
    }
  });

  test('the schema check can fail: a wrong runtime is reported', () => {
    const bad = parseAction(
      { name: 'a.yml', content: 'name: x\ndescription: y\nruns:\n  using: node99\n  main: a.js\n' },
      new NoOperationTraceWriter(),
    );
    expect(
      bad.context.errors
        .getErrors()
        .map((e) => e.message)
        .join(),
    ).toContain('node99');
  });

  test.each(workflowFiles)('%s', (file) => {
    const result = parseWorkflow(
      { name: file, content: readFileSync(file, 'utf8') },
      new NoOperationTraceWriter(),
    );
    expect(result.context.errors.getErrors().map((e) => e.message)).toEqual([]);
  });
});

describe('the one-step fence and the reusable workflow', () => {
  test('are generated from the actions they wrap, and up to date', () => {
    const r = spawnSync(process.execPath, ['scripts/gen-agent.mjs', '--check'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  test('pass every input of the wrapped actions through under the same name, locked down by default', () => {
    const agent = parse(readFileSync(join(REPO_ROOT, 'actions/agent/action.yml'), 'utf8')) as {
      inputs: Record<string, { default?: string }>;
      runs: { steps: { uses: string; with: Record<string, string> }[] };
    };
    for (const name of ['start', 'github-token', 'egress', 'run']) {
      const meta = parse(readFileSync(join(REPO_ROOT, 'actions', name, 'action.yml'), 'utf8')) as {
        inputs: Record<string, unknown>;
      };
      const step = agent.runs.steps.find((s) => s.uses.includes(`/actions/${name}@`));
      expect(step).toBeDefined();
      for (const input of Object.keys(meta.inputs)) {
        if (name === 'run' && input === 'github-token')
          expect(step?.with[input]).toBe('${{ steps.token.outputs.token }}');
        // The fence opens Cordon's own AWS endpoints of run's region too.
        else if (name === 'egress' && input === 'aws-regions')
          expect(step?.with[input]).toBe('${{ inputs.aws-regions || inputs.aws-region }}');
        else expect(step?.with[input]).toBe(`\${{ inputs.${input} }}`);
      }
    }
    expect(agent.inputs['disable-sudo'].default).toBe('true');
    expect(agent.inputs['disable-docker'].default).toBe('true');
    expect(agent.inputs['egress-policy'].default).toBe('block');
  });
});
