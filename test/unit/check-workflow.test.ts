import { describe, expect, test } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  checkWorkflowText,
  formatProblem,
  parseCheckArgs,
  runCheck,
  type Problem,
} from '../../src/cli/check.js';
import { nearest } from '../../src/cli/check-step.js';
import { REPO_ROOT } from '../../src/devkit/run-action.js';

const fixture = (name: string): string =>
  readFileSync(join(REPO_ROOT, 'test/fixtures/workflows', name), 'utf8');
const check = (name: string): Problem[] => checkWorkflowText(fixture(name), name).problems;
const at = (ps: Problem[]): string[] => ps.map((p) => `${p.line}:${p.code}:${p.input ?? ''}`);

describe('cordon check: actions/agent and the reusable workflow', () => {
  test('a wrong egress-policy is reported in both, through the action each input is passed to', () => {
    const ps = check('agent-step.yml');
    expect(at(ps)).toEqual([
      '16:invalid-input:egress-policy',
      '23:invalid-input:egress-policy',
      '27:invalid-input:permissions',
      '28:unknown-input:allowed-domian',
      '31:unknown-secret:anthropic-key',
    ]);
    expect(ps[0].message).toContain('egress-policy "blocked" is not valid');
    expect(ps[1].message).toContain('egress-policy "allow" is not valid');
    expect(ps[2].message).toContain('"pull_requests maybe" is not "name: level"');
    expect(ps[3].suggestion).toBe('did you mean "allowed-domains"?');
  });

  test('the repository’s own agent action and reusable workflow check clean', () => {
    for (const f of ['actions/agent/action.yml', '.github/workflows/agent.yml']) {
      const r = checkWorkflowText(readFileSync(join(REPO_ROOT, f), 'utf8'), f);
      expect(r.steps).toBeGreaterThan(0);
      expect(r.problems).toEqual([]);
    }
  });
});

describe('cordon check: anchors, aliases and merge keys', () => {
  test('an aliased with: and a merge key give no false required/unknown input; a bad value is reported at each use site', () => {
    const ps = check('anchors.yml');
    expect(at(ps)).toEqual([
      '35:invalid-input:egress-policy',
      '42:invalid-input:allowed-ips', // where the anchor is defined
      '45:invalid-input:allowed-ips', // where `<<: *wide` brings it in
    ]);
    expect(ps[2].column).toBe(11);
  });

  test('a billion-laughs file and deep nesting stop at the bound with one problem', () => {
    const laughs = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 12; i++)
      laughs.push(
        `a${i}: &a${i} [${Array(10)
          .fill(`*a${i - 1}`)
          .join(', ')}]`,
      );
    laughs.push('jobs:', '  j:', '    steps: *a11', '');
    const r = checkWorkflowText(laughs.join('\n'), 'laughs.yml');
    expect(r.problems.map((p) => p.message)).toEqual([expect.stringContaining('only that much was read')]);
    const deep = checkWorkflowText(`jobs: ${'['.repeat(20000)}${']'.repeat(20000)}\n`, 'deep.yml');
    expect(deep.problems.length).toBeGreaterThan(0);
    expect(deep.problems[0].code).toBe('yaml');
  });
});

describe('cordon check: entries of a block scalar', () => {
  test('every bad entry is reported at its own line, not only the first at the block’s line', () => {
    const ps = check('block-entries.yml');
    expect(at(ps)).toEqual([
      '14:invalid-input:allowed-domains',
      '17:invalid-input:allowed-domains',
      '24:invalid-input:secrets',
      '26:invalid-input:secrets',
    ]);
    expect(ps[0].message).toContain('"https://evil.test/path"');
    expect(ps[1].message).toContain('mple.com:443');
    expect(ps[2].message).toContain('secrets: line 2: target name "PATH"');
    expect(ps[3].message).toContain('secrets: line 4: target name "LD_PRELOAD"');
    expect(ps.map((p) => p.column)).toEqual([13, 13, 13, 13]);
  });
});

describe('cordon check: only Cordon’s own actions', () => {
  test('foo/actions/run and someone/else/actions/run are not Cordon’s; a typo under Cordon’s repository is named', () => {
    const r = checkWorkflowText(fixture('third-party.yml'), 'third-party.yml');
    expect(r.steps).toBe(0);
    expect(at(r.problems)).toEqual(['17:unknown-action:']);
    expect(r.problems[0].message).toContain('cordon-dev/cordon/actions/egres@v1 names no Cordon action');
  });
});

describe('cordon check: the workflow around the steps', () => {
  test("an endpoint egress opens for Cordon's own steps (aws-regions) is not reported; the fix names aws-regions", () => {
    const wf = (egressWith: string): string =>
      [
        'on: push',
        'permissions: { id-token: write }',
        'jobs:',
        '  a:',
        '    runs-on: ubuntu-latest',
        '    steps:',
        '      - uses: cordon-dev/cordon/actions/start@v1',
        '      - uses: cordon-dev/cordon/actions/egress@v1',
        `        with: { allowed-domains: example.com${egressWith} }`,
        '      - uses: cordon-dev/cordon/actions/run@v1',
        '        with:',
        '          run: ./agent.sh',
        '          secrets: T=aws-sm:ci/t',
        '          aws-role-to-assume: arn:aws:iam::123456789012:role/agent',
        '          aws-region: eu-west-1',
        '          aws-allow: secretsmanager:GetSecretValue arn:aws:secretsmanager:eu-west-1:123456789012:secret:ci/t-*',
      ].join('\n');
    const open = checkWorkflowText(wf(''), 'w.yml').problems.filter((p) => p.code === 'egress-endpoint');
    expect(open.map((p) => p.message)).toEqual([
      'egress (line 8) blocks sts.eu-west-1.amazonaws.com, needed here: run mints AWS credentials at STS',
      'egress (line 8) blocks secretsmanager.eu-west-1.amazonaws.com, needed here: run reads aws-sm: secrets',
    ]);
    expect(open[0].suggestion).toContain('add eu-west-1 to aws-regions of egress (line 8)');
    expect(checkWorkflowText(wf(', aws-regions: eu-west-1'), 'w.yml').problems).toEqual([]);
    // Without a session policy the agent's credentials would be the whole role: reported at the step.
    const unscoped = checkWorkflowText(
      wf(', aws-regions: eu-west-1').replace(/\n.*aws-allow.*/, ''),
      'w.yml',
    ).problems;
    expect(unscoped.map((p) => `${p.code}:${p.input}`)).toEqual(['invalid-input:aws-allow']);
    expect(unscoped[0].message).toContain('run: aws-role-to-assume was given without a session policy');
    expect(unscoped[0].suggestion).toContain("aws-allow: '*'");
  });

  test('id-token, step order, event text in commands and the allowlist Cordon’s own steps need', () => {
    const ps = check('workflow-mistakes.yml');
    expect(at(ps)).toEqual([
      '15:step-order:',
      '16:id-token:',
      '16:egress-endpoint:',
      '20:step-order:',
      '20:report-seal-key:',
      '21:egress-endpoint:',
      '25:event-injection:',
      '25:event-injection:',
      '28:event-injection:',
    ]);
    const text = ps.map((p) => p.message).join('\n');
    expect(text).toContain(
      'start must be the first Cordon step of job "agent", but egress (line 12) runs before it',
    );
    expect(text).toContain(
      'report must be the last Cordon step of job "agent", but run (line 21) runs after it',
    );
    expect(text).toContain('blocks sts.us-west-2.amazonaws.com');
    expect(text).toContain('blocks secretsmanager.us-west-2.amazonaws.com');
    expect(text).toContain('`github.event.comment.body`');
    expect(text).toContain('`github.head_ref`');
    expect(text).toContain('`github.event.issue.title`');
    expect(ps.filter((p) => p.code === 'event-injection').map((p) => p.column)).toEqual([31, 74, 20]);
    expect(ps.find((p) => p.code === 'id-token')?.suggestion).toContain('id-token: write');
  });

  test('the same workflow done right has none of them', () => {
    const fixed = fixture('workflow-mistakes.yml')
      .replace('permissions:\n  contents: read', 'permissions:\n  contents: read\n  id-token: write')
      .replace(
        /( {6}- uses: cordon-dev\/cordon\/actions\/egress@v1\n.*\n.*\n)( {6}- uses: cordon-dev\/cordon\/actions\/start@v1\n)/,
        '$2$1',
      )
      .replace(
        'allowed-domains: api.anthropic.com',
        'allowed-domains: api.anthropic.com sts.us-west-2.amazonaws.com secretsmanager.us-west-2.amazonaws.com',
      )
      .replace(/( {6}- uses: cordon-dev\/cordon\/actions\/report@v1\n)([\s\S]*?)( {6}- run:)/, '$2$1$3')
      .replace(
        / {6}- uses: cordon-dev\/cordon\/actions\/start@v1\n/,
        '      - id: start\n        uses: cordon-dev/cordon/actions/start@v1\n',
      )
      .replace(
        /( {6}- uses: cordon-dev\/cordon\/actions\/report@v1\n)/,
        '$1        with: { seal-key: "${{ steps.start.outputs.seal-key }}" }\n',
      )
      .replace(/"\$\{\{ github.event.comment.body \}\}" --branch \$\{\{ github.head_ref \}\}/, '"$PROMPT"')
      .replace('"${{ github.event.issue.title }}"', '"$TITLE"');
    expect(checkWorkflowText(fixed, 'w.yml').problems).toEqual([]);
  });

  test('write-all grants the ID token; a job-level permissions without it does not', () => {
    const wf = (perms: string): string =>
      `on: push\n${perms}jobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: ./actions/start\n      - uses: ./actions/aws\n        with:\n          role-to-assume: arn:aws:iam::123456789012:role/r\n          aws-region: us-east-1\n`;
    expect(checkWorkflowText(wf('permissions: write-all\n'), 'w.yml').problems).toEqual([]);
    const job = wf('permissions:\n  id-token: write\n').replace(
      'runs-on: x',
      'runs-on: x\n    permissions:\n      contents: read',
    );
    expect(at(checkWorkflowText(job, 'w.yml').problems)).toEqual(['11:id-token:']);
  });
});

describe('cordon check: each problem once, sorted, with a suggestion', () => {
  test('an unknown input gets the nearest name, not the whole list', () => {
    expect(nearest('alowed-domains', ['allowed-domains', 'allowed-ips'])).toBe('allowed-domains');
    expect(nearest('colour', ['fail-on-tamper', 'job-summary'])).toBeUndefined();
    const p = check('bad.yml').find((x) => x.input === 'colour');
    expect(p?.message).toBe('start: unknown input "colour"');
    expect(p?.suggestion).not.toContain(',');
  });

  test('the same anchor used twice in one place is one problem; problems come in line order', () => {
    const ps = check('bad.yml');
    const keys = ps.map((p) => `${p.line}:${p.column}:${p.message}`);
    expect(new Set(keys).size).toBe(keys.length);
    const sorted = [...ps].sort((a, b) => a.line - b.line || a.column - b.column);
    expect(ps).toEqual(sorted);
  });
});

describe('cordon check --format', () => {
  test('json is an array of {file,line,column,severity,code,message,suggestion}', () => {
    let out = '';
    const code = runCheck(
      ['--format', 'json', join(REPO_ROOT, 'test/fixtures/workflows/block-entries.yml')],
      (s) => (out += s),
      () => {},
    );
    expect(code).toBe(1);
    const arr = JSON.parse(out) as Record<string, unknown>[];
    expect(arr).toHaveLength(4);
    expect(Object.keys(arr[0]).sort()).toEqual([
      'code',
      'column',
      'file',
      'line',
      'message',
      'severity',
      'suggestion',
    ]);
    expect(arr[0]).toMatchObject({ line: 14, column: 13, severity: 'error', code: 'invalid-input' });
  });

  test('github writes workflow commands, escaping % CR LF in the message and also : , in properties', () => {
    const p: Problem = {
      file: 'a,b:c.yml',
      line: 3,
      column: 5,
      severity: 'warning',
      code: 'x',
      message: '100% bad\r\nsecond line',
    };
    expect(formatProblem(p, 'github')).toBe(
      '::warning file=a%2Cb%3Ac.yml,line=3,col=5,title=cordon check%3A x::100%25 bad%0D%0Asecond line\n',
    );
  });

  test('an unknown format is a clear usage error', () => {
    expect(parseCheckArgs(['--format=sarif', 'w.yml'])).toEqual({
      error: 'cordon check: unknown --format "sarif": give text, json or github\n',
    });
    let err = '';
    expect(
      runCheck(
        ['--format'],
        () => {},
        (s) => (err += s),
      ),
    ).toBe(2);
    expect(err).toContain('unknown --format ""');
  });
});

describe('cordon check: one problem once', () => {
  test('agent’s fail-on-tamper, read by both start and egress, is reported once', () => {
    const text = [
      'on: push',
      'permissions: { id-token: write }',
      'jobs:',
      '  a:',
      '    runs-on: ubuntu-latest',
      '    steps:',
      '      - uses: cordon-dev/cordon/actions/agent@v1',
      '        with:',
      '          run: ./agent.sh',
      '          fail-on-tamper: sometimes',
      '',
    ].join('\n');
    expect(at(checkWorkflowText(text, 'w.yml').problems)).toEqual(['10:invalid-input:fail-on-tamper']);
  });
});

describe('cordon check: the reusable workflow’s own fence', () => {
  test('a caller without id-token: write, and a role whose STS its own allowlist leaves off', () => {
    const text = [
      'on: pull_request_target',
      'permissions:',
      '  contents: read',
      'jobs:',
      '  agent:',
      '    uses: cordon-dev/cordon/.github/workflows/agent.yml@v1',
      '    secrets: inherit',
      '    with:',
      '      run: ./agent.sh',
      '      aws-role-to-assume: arn:aws:iam::123456789012:role/agent',
      '      aws-region: eu-central-1',
      "      aws-allow: '*'",
      '      allowed-domains: api.anthropic.com',
      '',
    ].join('\n');
    const ps = checkWorkflowText(text, 'w.yml').problems;
    expect(at(ps)).toEqual(['6:id-token:', '6:egress-endpoint:']);
    expect(ps[1].message).toContain('blocks sts.eu-central-1.amazonaws.com');
    const fixed = text
      .replace('contents: read', 'contents: read\n  id-token: write')
      .replace('api.anthropic.com', 'api.anthropic.com sts.eu-central-1.amazonaws.com');
    expect(checkWorkflowText(fixed, 'w.yml').problems).toEqual([]);
  });
});

describe('cordon check: a composite action of one’s own', () => {
  test('a list where a string is due, start not first and event text in a run: step, once each', () => {
    const text = [
      'name: my-fence',
      'runs:',
      '  using: composite',
      '  steps:',
      '    - uses: ./actions/egress',
      '      with:',
      '        allowed-domains: [a.test, b.test]',
      '    - uses: ./actions/start',
      '    - shell: bash',
      '      run: echo "${{ github.event.issue.body }}"',
      '',
    ].join('\n');
    const ps = checkWorkflowText(text, 'action.yml').problems;
    expect(at(ps)).toEqual(['7:invalid-input:allowed-domains', '8:step-order:', '10:event-injection:']);
    expect(ps[1].message).toContain('first Cordon step of the composite action');
  });
});

describe('cordon check: event text in a command, in every form GitHub reads', () => {
  /** One `run:` step per expression; the problems of each step's line, as severity. */
  const severities = (exprs: string[]): (string | undefined)[] => {
    const steps = exprs.map((e) => `      - run: echo ${e}`).join('\n');
    const ps = checkWorkflowText(
      `on: issue_comment\njobs:\n  a:\n    runs-on: x\n    steps:\n${steps}\n`,
      'w.yml',
    ).problems.filter((p) => p.code === 'event-injection');
    return exprs.map((_, i) => {
      const here = ps.filter((p) => p.line === 6 + i);
      return here.length ? here.map((p) => p.severity).join(',') : undefined;
    });
  };

  test('text anyone can write is an error however it is spelled: brackets, case, spaces, wrappers, the whole object', () => {
    const forms = [
      '"${{ toJSON(github.event) }}"',
      '"${{ toJSON(github) }}"',
      '"${{ toJSON(github.event.comment) }}"',
      '"${{ toJson( github . event . pull_request ) }}"',
      `"\${{ github.event['comment']['body'] }}"`,
      `"\${{ github['event']['issue']['title'] }}"`,
      `"\${{ github.event["comment"].body }}"`,
      `"\${{ github.event.comment['BODY'] }}"`,
      '"${{ GITHUB.EVENT.ISSUE.TITLE }}"',
      `"\${{ format('{0} and }} {1}', github.event.issue.title, 'x') }}"`,
      `"\${{ join(github.event.commits.*.message, ' ') }}"`,
      '"${{ github.head_ref }}"',
      `"\${{ github['head_ref'] }}"`,
      '"${{ github.event.pull_request.head.ref }}"',
      '"${{ github.event.pull_request.head.label }}"',
      '"${{ github.event.head_commit.author.email }}"',
      '"${{ github.event.workflow_run.head_branch }}"',
      `"\${{ github.event[matrix.field] }}"`,
      `"\${{ github[matrix.context] }}"`,
      `"\${{ github.event.pull_request.number == 1 && github.event.comment.body || 'none' }}"`,
    ];
    expect(severities(forms)).toEqual(forms.map(() => 'error'));
  });

  test('an expression spread over lines of a block is reported at the line of its ${{', () => {
    const text = [
      'on: issues',
      'jobs:',
      '  a:',
      '    runs-on: x',
      '    steps:',
      '      - run: |',
      '          echo start',
      '          echo "${{',
      '            toJSON(github.event.issue)',
      '          }}"',
      '',
    ].join('\n');
    const ps = checkWorkflowText(text, 'w.yml').problems;
    expect(ps.map((p) => [p.line, p.column, p.severity, p.code])).toEqual([
      [8, 17, 'error', 'event-injection'],
    ]);
  });

  test('workflow_dispatch inputs and other event fields are a warning; numbers, SHAs, booleans and other contexts are nothing', () => {
    expect(
      severities([
        '"${{ github.event.inputs.name }}"',
        '"${{ toJSON(github.event.inputs) }}"',
        '"${{ github.event.action }}"',
        '"${{ github.event.issue }}"',
        // repository_dispatch: the sender writes every field, one named like an id too.
        '"${{ github.event.client_payload.x_id }}"',
        '"${{ inputs.task }}"',
        '"${{ github.event.pull_request.number }}"',
        '"${{ github.event.issue.id }}"',
        '"${{ github.event.pull_request.head.sha }}"',
        '"${{ github.event.comment.created_at }}"',
        '"${{ toJSON(github.event.pull_request.number) }}"',
        '"${{ github.sha }} ${{ github.ref }} ${{ github.run_id }} ${{ github.event_name }}"',
        '"${{ github.repository }} ${{ steps.github.outputs.body }}"',
        `"\${{ contains(github.event.comment.body, '/deploy') }}"`,
        `"\${{ startsWith(github.event.issue.title, 'bug') }}"`,
        `"\${{ github.event.comment.body == 'yes' }}"`,
        `"\${{ !github.event.issue.title }}"`,
        `"\${{ 'github.event.comment.body' }}"`,
        'github.event.comment.body',
      ]),
    ).toEqual([
      'warning',
      'warning',
      'warning',
      'warning',
      'warning',
      ...Array<undefined>(14).fill(undefined),
    ]);
  });

  test('the run input of actions/agent and of the reusable workflow are checked like run’s', () => {
    const text = [
      'on: issue_comment',
      'permissions: { id-token: write, contents: read }',
      'jobs:',
      '  fence:',
      '    runs-on: x',
      '    steps:',
      '      - uses: cordon-dev/cordon/actions/agent@v1',
      '        with:',
      '          allowed-domains: api.anthropic.com',
      "          run: npx my-agent --task \"${{ github.event['comment']['body'] }}\"",
      '  reusable:',
      '    uses: cordon-dev/cordon/.github/workflows/agent.yml@v1',
      '    with:',
      '      allowed-domains: api.anthropic.com',
      '      run: |',
      '        npx my-agent --pr ${{ github.event.pull_request.number }}',
      "        npx my-agent --event '${{ toJSON(github.event) }}'",
      '',
    ].join('\n');
    const ps = checkWorkflowText(text, 'w.yml').problems;
    expect(ps.map((p) => `${p.line}:${p.column}:${p.severity}:${p.code}`)).toEqual([
      '10:37:error:event-injection',
      '17:31:error:event-injection',
    ]);
    expect(ps[0].message).toContain("the `run` input of agent pastes `github.event['comment']['body']`");
    expect(ps[1].message).toContain('the `run` input of the reusable workflow pastes `github.event`');
  });

  test('a permission given twice in the reusable workflow’s permissions is reported at the second line', () => {
    const text = [
      'on: pull_request',
      'permissions: { id-token: write, contents: read }',
      'jobs:',
      '  reusable:',
      '    uses: cordon-dev/cordon/.github/workflows/agent.yml@v1',
      '    with:',
      '      allowed-domains: api.anthropic.com',
      '      run: npx my-agent',
      '      permissions: |',
      '        contents: write',
      '        pull_requests: write',
      '        contents: read',
      '        pull-requests: read',
      '',
    ].join('\n');
    const ps = checkWorkflowText(text, 'w.yml').problems;
    expect(ps.map((p) => `${p.line}:${p.code}:${p.input ?? ''}`)).toEqual([
      '12:invalid-input:permissions',
      '13:invalid-input:permissions',
    ]);
    expect(ps[0].message).toContain(
      'permissions: contents is given twice: "contents: write" and "contents: read"',
    );
    expect(ps[1].message).toContain(
      'permissions: pull-requests is given twice: "pull_requests: write" and "pull-requests: read"',
    );
    expect(ps[0].suggestion).toBe('keep one line per permission');
    expect(
      checkWorkflowText(text.replace('        contents: read\n        pull-requests: read\n', ''), 'w.yml')
        .problems,
    ).toEqual([]);
  });
});
