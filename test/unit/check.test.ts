import { afterAll, describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkWorkflowText, cordonActionName } from '../../src/cli/check.js';
import { REPO_ROOT, spawnCollect } from '../../src/devkit/run-action.js';
import { MAX_WORKFLOW_BYTES, readRegularFile } from '../../src/platform/regular-file.js';
import { tempDir } from '../harness/tmp.js';

const fixture = (name: string): string =>
  readFileSync(join(REPO_ROOT, 'test/fixtures/workflows', name), 'utf8');

describe('cordon check', () => {
  test('recognises Cordon steps by its repository or a local path, not a third party’s actions/run', () => {
    expect(cordonActionName('cordon-dev/cordon/actions/egress@v1')).toBe('egress');
    expect(cordonActionName('cordon-dev/cordon/actions/start@main')).toBe('start');
    expect(cordonActionName('octo-org/cordon/actions/report@v1')).toBe('report');
    expect(cordonActionName('./actions/aws')).toBe('aws');
    expect(cordonActionName('cordon-dev/cordon/actions/report@v1')).toBe('report');
    expect(cordonActionName('actions/checkout@v4')).toBeUndefined();
    expect(cordonActionName('foo/actions/run@v1')).toBeUndefined();
    expect(cordonActionName('someone/else/actions/run@v2')).toBeUndefined();
    expect(cordonActionName('someone/cordon/actions/egress@v1')).toBeUndefined();
  });

  test('reports every bad input with its line', () => {
    const { problems, steps } = checkWorkflowText(fixture('bad.yml'), 'bad.yml');
    expect(steps).toBe(5);
    const byLine = problems.map((p) => `${p.line}:${p.input}`);
    expect(byLine).toContain('13:fail-on-tamper');
    expect(byLine).toContain('14:colour');
    expect(byLine).toContain('17:role-to-assume');
    expect(byLine).toContain('19:role-duration-seconds');
    expect(byLine).toContain('22:allow'); // the entry `not-an-action`, not the `allow: |` line
    expect(problems.find((p) => p.input === 'role-to-assume')?.message).toContain('12 digits');
    expect(byLine).toContain('27:permission-contents');
    expect(byLine).toContain('32:allowed-domains');
    expect(byLine).toContain('33:allowed-ips');
    expect(byLine).toContain('38:secrets');
    expect(byLine).toContain('39:leak-scan');
    expect(problems.find((p) => p.input === 'allowed-domains')?.message).toContain('https://evil.test/path');
  });

  test('report: its inputs are checked like the others', () => {
    const text = [
      'jobs:',
      '  a:',
      '    runs-on: ubuntu-latest',
      '    steps:',
      '      - uses: cordon-dev/cordon/actions/report@v1',
      '        with:',
      '          job-summary: perhaps',
      '          colour: blue',
    ].join('\n');
    const { problems, steps } = checkWorkflowText(text, 'w.yml');
    expect(steps).toBe(1);
    expect(problems.map((p) => `${p.line}:${p.input}`)).toEqual(['7:job-summary', '8:colour']);
  });

  test('a good workflow with expressions has no problems', () => {
    expect(checkWorkflowText(fixture('good.yml'), 'good.yml').problems).toEqual([]);
  });
});

describe('cordon check: invisible characters', () => {
  test('a U+FEFF inside an allow resource is reported with its line and code point', () => {
    const text = [
      'jobs:',
      '  agent:',
      '    steps:',
      '      - uses: cordon-dev/cordon/actions/aws@v1',
      '        with:',
      '          role-to-assume: arn:aws:iam::123456789012:role/agent',
      '          aws-region: us-east-1',
      '          allow: |',
      '            s3:GetObject arn:aws:s3:::agent-scratch/\uFEFF*',
      '',
    ].join('\n');
    // The snippet has no `permissions:`; only the input problem is looked at here.
    const problems = checkWorkflowText(text, 'w.yml').problems.filter((p) => p.code === 'invalid-input');
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ line: 9, column: 13, input: 'allow' });
    expect(problems[0].message).toContain('aws: allow: line 1 has the character U+FEFF at column 41');
  });
});

describe('cordon check reads regular files only, at most 1 MiB', () => {
  const dir = tempDir('cordon-check-');
  const fifo = join(dir, 'workflow.fifo');
  execFileSync('mkfifo', [fifo]);
  const zero = join(dir, 'zero.yml');
  symlinkSync('/dev/zero', zero);
  const big = join(dir, 'big.yml');
  writeFileSync(big, Buffer.alloc(MAX_WORKFLOW_BYTES + 1, 0x20));
  const opts = { reader: 'cordon check', maxBytes: MAX_WORKFLOW_BYTES, expected: 'a workflow file' };

  test('a FIFO, a link to /dev/zero, a directory and an oversized file are refused, naming the path', () => {
    expect(() => readRegularFile(fifo, opts)).toThrow(`cordon check: ${fifo} is a FIFO (named pipe)`);
    expect(() => readRegularFile(zero, opts)).toThrow(`cordon check: ${zero} is a character device`);
    expect(() => readRegularFile(dir, opts)).toThrow(`${dir} is a directory`);
    expect(() => readRegularFile(big, opts)).toThrow(`${big} is larger than 1 MiB`);
    expect(() => readRegularFile(zero, { ...opts, noFollow: true })).toThrow('links are not followed here');
  });

  test('a regular file (and a link to one) is read whole', () => {
    const ok = join(dir, 'ok.yml');
    writeFileSync(ok, 'jobs: {}\n');
    symlinkSync(ok, join(dir, 'link.yml'));
    expect(readRegularFile(join(dir, 'link.yml'), opts)).toBe('jobs: {}\n');
  });

  // Through the bundled CLI (dist/cli/main.js), as a user runs it: the old code hung on the
  // FIFO and grew on /dev/zero until killed; the timeout bounds both.
  test.each([
    ['a FIFO', fifo, 'is a FIFO (named pipe)'],
    ['a link to /dev/zero', zero, 'is a character device'],
  ])(
    'the bundled CLI refuses %s at once',
    async (_what, path, says) => {
      const r = await spawnCollect(
        [process.execPath, join(REPO_ROOT, 'dist/cli/main.js'), 'check', path],
        { PATH: process.env.PATH ?? '' },
        REPO_ROOT,
        15000,
      );
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`cordon check: ${path} ${says}`);
      expect(r.stderr).toContain('only a regular file is read');
    },
    20000,
  );

  afterAll(() => rmSync(dir, { recursive: true, force: true }));
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

  test('prints what publish would do: the branch, its own token, the conditions, the default branch', async () => {
    const { planWorkflowText } = await import('../../src/cli/plan.js');
    const step = (w: string): string =>
      planWorkflowText(
        [
          'on: issues',
          'jobs:',
          '  agent:',
          '    runs-on: ubuntu-latest',
          '    steps:',
          '      - uses: cordon-dev/cordon/actions/publish@v1',
          '        with:',
          ...w.split('\n').map((l) => `          ${l}`),
        ].join('\n'),
      );
    const text = step(
      'app-id: ${{ vars.AGENT_APP_ID }}\nprivate-key: ${{ secrets.AGENT_APP_KEY }}\nbranch: agent/issue-${{ github.event.issue.number }}\nseal-key: ${{ steps.start.outputs.seal-key }}',
    );
    expect(text).not.toContain('nothing to plan beyond its inputs');
    expect(text).not.toContain('cannot plan');
    expect(text).toContain(
      "  pushes the workspace's HEAD to branch agent/issue-${{ github.event.issue.number }} (known at run time) of this repository, never forced",
    );
    expect(text).toContain(
      '  token: app from app-id at run time mints contents: write on this repository only, for this step only, never an output; revoked and confirmed dead before the step ends',
    );
    expect(text).toContain(
      "  pushes only when: the ledger's verdict is intact (run's window seals checked with seal-key);",
    );
    expect(text).toContain(
      "run's leak scan found no secret and read everything; GitHub granted exactly contents: write",
    );
    expect(text).toContain('  default branch: refused (set allow-default-branch: true to allow it)');
    const fixed = step(
      "app-id: '12345'\nprivate-key: ${{ secrets.AGENT_APP_KEY }}\nbranch: main\nallow-default-branch: 'true'",
    );
    expect(fixed).toContain("  pushes the workspace's HEAD to branch main of this repository, never forced");
    expect(fixed).toContain('  token: app 12345 mints contents: write');
    expect(fixed).toContain("(no seal-key: run's window seals NOT checked)");
    expect(fixed).toContain('  default branch: allowed (allow-default-branch: true)');
    expect(step('app-id: 1\nprivate-key: x\nbranch: refs/heads/main')).toContain('  cannot plan: ');
    expect(
      step('app-id: 1\nprivate-key: ${{ secrets.K }}\nbranch: a\nallow-default-branch: ${{ inputs.allow }}'),
    ).toContain('  default branch: refused unless allow-default-branch is true at run time');
  });
});
