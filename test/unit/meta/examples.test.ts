import { describe, expect, test } from '@jest/globals';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { checkWorkflowText, cordonActionName, runCheck } from '../../../src/cli/check.js';
import { REPO_ROOT } from '../../../src/devkit/run-action.js';

const examples = readdirSync(join(REPO_ROOT, 'examples'))
  .filter((f) => /\.ya?ml$/.test(f))
  .map((f) => join('examples', f));

/** Text anyone who can open an issue, comment or name a branch controls. */
const UNTRUSTED = /\$\{\{\s*github\s*\.\s*(event\b|head_ref\b)/;

interface Step {
  uses?: string;
  run?: unknown;
  with?: Record<string, unknown>;
}

/**
 * Every place a workflow hands a shell its text: a step's `run:`, and the `run` or `command`
 * input of a Cordon step (actions/run, actions/agent). An expression there is pasted into
 * the script before the shell parses it, so a comment's `"; curl ... #` becomes a command.
 */
function untrustedInShell(text: string): string[] {
  const doc = parse(text) as { jobs?: Record<string, { steps?: Step[] }> };
  const found: string[] = [];
  for (const [job, { steps = [] }] of Object.entries(doc.jobs ?? {})) {
    steps.forEach((step, i) => {
      const shellText: [string, unknown][] = [['run', step.run]];
      if (step.uses && cordonActionName(step.uses))
        for (const input of ['run', 'command']) shellText.push([`with.${input}`, step.with?.[input]]);
      for (const [where, value] of shellText)
        if (typeof value === 'string' && UNTRUSTED.test(value)) found.push(`${job}.steps[${i}].${where}`);
    });
  }
  return found;
}

describe('every example', () => {
  test('there are examples, the coding agents that ship as actions among them', () => {
    for (const name of ['claude-code.yml', 'codex.yml', 'gemini-cli.yml'])
      expect(examples).toContain(join('examples', name));
  });

  test.each(examples)('%s passes cordon check with no problems', (file) => {
    const { problems, steps } = checkWorkflowText(readFileSync(join(REPO_ROOT, file), 'utf8'), file);
    expect(problems).toEqual([]);
    expect(steps).toBeGreaterThan(0);
  });

  test('cordon check over all of them exits 0', () => {
    const out: string[] = [];
    const err: string[] = [];
    const code = runCheck(
      examples.map((f) => join(REPO_ROOT, f)),
      (s) => out.push(s),
      (s) => err.push(s),
    );
    expect(err).toEqual([]);
    expect(code).toBe(0);
  });

  test.each(examples)('%s pastes no event text into a shell', (file) => {
    expect(untrustedInShell(readFileSync(join(REPO_ROOT, file), 'utf8'))).toEqual([]);
  });

  test('the paste check finds event text in a run: step and in run/command inputs, not in env:', () => {
    const text = [
      'jobs:',
      '  agent:',
      '    steps:',
      '      - run: echo "${{ github.event.comment.body }}"',
      '      - uses: cordon-dev/cordon/actions/run@v1',
      '        with:',
      '          run: npx agent --task "${{github.event.issue.title}}"',
      '      - uses: ./actions/agent',
      '        with:',
      '          command: git checkout ${{ github.head_ref }}',
      '      - uses: cordon-dev/cordon/actions/run@v1',
      '        env:',
      '          TASK: ${{ github.event.comment.body }}',
      '        with:',
      '          run: npx agent --task "$TASK"',
      '',
    ].join('\n');
    expect(untrustedInShell(text)).toEqual([
      'agent.steps[0].run',
      'agent.steps[1].with.run',
      'agent.steps[2].with.command',
    ]);
  });
});
