/** `cordon check` and publish: its own input parser offline, its place after run, its endpoints. */
import { describe, expect, test } from '@jest/globals';
import { checkWorkflowText, type Problem } from '../../src/cli/check.js';
import { badBranchName } from '../../src/actions/publish/inputs.js';

const at = (ps: Problem[]): string[] => ps.map((p) => `${p.line}:${p.code}:${p.input ?? ''}`);

function workflow(steps: string, egress = ''): string {
  return [
    'on: push',
    'permissions: { id-token: write, contents: read }',
    'jobs:',
    '  agent:',
    '    runs-on: ubuntu-latest',
    '    steps:',
    '      - uses: cordon-dev/cordon/actions/start@v1',
    ...(egress ? [egress] : []),
    steps,
  ].join('\n');
}

const RUN = '      - uses: cordon-dev/cordon/actions/run@v1\n        with: { run: ./agent.sh }';
const publish = (w: string, seal = true): string =>
  [
    '      - uses: cordon-dev/cordon/actions/publish@v1',
    '        with:',
    '          app-id: ${{ vars.APP_ID }}',
    '          private-key: ${{ secrets.KEY }}',
    ...(seal ? ['          seal-key: ${{ steps.s.outputs.seal-key }}'] : []),
    w,
  ].join('\n');

describe('cordon check: publish', () => {
  test('after run, with a branch and the seal key: clean; without the seal key: a warning', () => {
    const r = checkWorkflowText(workflow(`${RUN}\n${publish('          branch: agent/x')}`), 'w.yml');
    expect(r.problems).toEqual([]);
    const bare = checkWorkflowText(
      workflow(`${RUN}\n${publish('          branch: agent/x', false)}`),
      'w.yml',
    );
    expect(bare.problems.map((p) => `${p.severity}:${p.code}`)).toEqual(['warning:publish-seal-key']);
  });

  test('before run, or with no run at all: step-order, naming run', () => {
    const before = checkWorkflowText(workflow(`${publish('          branch: agent/x')}\n${RUN}`), 'w.yml');
    expect(at(before.problems)).toEqual(['8:step-order:']);
    expect(before.problems[0].message).toMatch(
      /publish must come after run .* but run \(line 14\) runs after it/,
    );
    const none = checkWorkflowText(workflow(publish('          branch: agent/x')), 'w.yml');
    expect(none.problems[0].message).toMatch(/publish needs run \(or agent\) before it/);
  });

  test('its own parser: a missing branch, a bad branch name, both app-id and client-id, each at its input', () => {
    const missing = checkWorkflowText(workflow(`${RUN}\n${publish('')}`), 'w.yml');
    expect(at(missing.problems)).toEqual(['10:invalid-input:branch']);
    expect(missing.problems[0].message).toMatch(/publish: input branch is required/);
    const bad = checkWorkflowText(workflow(`${RUN}\n${publish('          branch: agent..x')}`), 'w.yml');
    expect(at(bad.problems)).toEqual(['15:invalid-input:branch']);
    const both = checkWorkflowText(
      workflow(`${RUN}\n${publish('          branch: agent/x\n          client-id: Iv23abc')}`),
      'w.yml',
    );
    expect(at(both.problems)).toEqual(['16:invalid-input:client-id']);
  });

  test('an egress allowlist in front of it that blocks github.com is reported', () => {
    const egress =
      '      - uses: cordon-dev/cordon/actions/egress@v1\n        with: { allowed-domains: api.github.com, preset: none }';
    const r = checkWorkflowText(workflow(`${RUN}\n${publish('          branch: agent/x')}`, egress), 'w.yml');
    expect(r.problems.map((p) => p.message)).toEqual([
      expect.stringMatching(/blocks github\.com, needed here: publish pushes the commits there/),
    ]);
  });
});

describe('publish: branch names', () => {
  test.each(['agent/issue-42', 'a.b/c_d-1', 'x'])('%s is taken', (name) => {
    expect(badBranchName(name)).toBeUndefined();
  });
  test.each([
    ['a..b', '".."'],
    ['a b', 'a space'],
    ['a~b', 'a space'],
    ['-x', 'starts with "-"'],
    ['a/.b', 'starts with "."'],
    ['a.lock', 'ends with ".lock"'],
    ['a/', 'ends with "/"'],
    ['a//b', '"//"'],
    ['a@{b', '"@{"'],
    ['@', '"@"'],
    ['HEAD', 'HEAD'],
    ['refs/heads/x', 'full ref'],
    ['a\u00e9', 'printable ASCII'],
    ['x'.repeat(201), 'past 200'],
  ])('%s is refused', (name, why) => {
    expect(badBranchName(name)).toContain(why);
  });
});
