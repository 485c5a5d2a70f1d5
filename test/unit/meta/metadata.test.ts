import { describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parse } from 'yaml';
import { NoOperationTraceWriter, parseWorkflow } from '@actions/workflow-parser';
import { parseAction } from '@actions/workflow-parser/actions/action-parser';
import { REPO_ROOT } from '../../../src/devkit/run-action.js';
import { tempDir } from '../../harness/tmp.js';

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

  test('the reusable workflow refuses a permission given twice, and turns one line each into permission-* outputs', () => {
    const wf = parse(readFileSync(join(REPO_ROOT, '.github/workflows/agent.yml'), 'utf8')) as {
      jobs: { agent: { steps: { id?: string; run?: string }[] } };
    };
    const script = wf.jobs.agent.steps.find((s) => s.id === 'perms')?.run ?? '';
    const dir = tempDir('cordon-perms-');
    const run = (perms: string) => {
      const out = join(dir, `out-${Math.random().toString(36).slice(2)}`);
      writeFileSync(out, '');
      const r = spawnSync('bash', ['--noprofile', '--norc', '-eo', 'pipefail', '-c', script], {
        env: { PATH: process.env.PATH, PERMS: perms, GITHUB_OUTPUT: out },
        encoding: 'utf8',
        timeout: 10_000,
      });
      return { status: r.status, stdout: r.stdout, outputs: readFileSync(out, 'utf8') };
    };
    const ok = run('contents: write\n  Pull_Requests : read\n');
    expect(ok.status).toBe(0);
    expect(ok.outputs).toBe('permission-contents=write\npermission-pull-requests=read\n');
    for (const [perms, said] of [
      ['contents: write\ncontents: read', 'gives contents twice: "contents: write" and "contents: read"'],
      [
        'pull_requests: write\npull-requests: read',
        'gives pull-requests twice: "pull-requests: write" and "pull-requests: read"',
      ],
    ]) {
      const r = run(perms);
      expect(r.status).toBe(1);
      expect(r.stdout).toContain(
        `::error title=agent-workflow: permissions::agent-workflow: input permissions ${said}`,
      );
      expect(r.stdout).toContain('Fix: keep one line per permission');
    }
  });

  test("agent passes its github-api-url to github-token and to run (run's broker mints at the same API on GHES)", () => {
    const agent = parse(readFileSync(join(REPO_ROOT, 'actions/agent/action.yml'), 'utf8')) as {
      inputs: Record<string, { default?: string }>;
      runs: { steps: { id: string; with: Record<string, string> }[] };
    };
    const step = (id: string) => agent.runs.steps.find((s) => s.id === id);
    expect(step('token')?.with['github-api-url']).toBe('${{ inputs.github-api-url }}');
    expect(step('run')?.with['github-api-url']).toBe('${{ inputs.github-api-url }}');
    expect(agent.inputs['github-api-url'].default).toBe('${{ github.api_url }}');
    const run = parse(readFileSync(join(REPO_ROOT, 'actions/run/action.yml'), 'utf8')) as {
      inputs: Record<string, unknown>;
    };
    expect(run.inputs['github-api-url']).toBeDefined();
    // The reusable workflow hands its github-api-url to the one-step fence.
    const wf = parse(readFileSync(join(REPO_ROOT, '.github/workflows/agent.yml'), 'utf8')) as {
      jobs: { agent: { steps: { id?: string; with?: Record<string, string> }[] } };
    };
    const fence = wf.jobs.agent.steps.find((s) => s.id === 'fence');
    expect(fence?.with?.['github-api-url']).toBe('${{ inputs.github-api-url }}');
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
