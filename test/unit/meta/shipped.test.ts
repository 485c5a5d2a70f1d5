/**
 * What the project ships: no workflow, example or composite action pastes untrusted text
 * into a shell; the project's own workflows pin third-party actions by commit; one
 * owner/repository name everywhere; releases pin the inner actions; the licence, security
 * policy and changelog are there.
 */
import { describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { REPO_ROOT } from '../../../src/devkit/run-action.js';
import { tempDir } from '../../harness/tmp.js';

interface Step {
  uses?: string;
  run?: unknown;
  with?: Record<string, unknown>;
}

const yamlIn = (dir: string): string[] =>
  existsSync(join(REPO_ROOT, dir))
    ? readdirSync(join(REPO_ROOT, dir))
        .filter((f) => /\.ya?ml$/.test(f))
        .map((f) => join(dir, f))
    : [];
const WORKFLOWS = yamlIn('.github/workflows');
const SHIPPED = [
  ...WORKFLOWS,
  ...yamlIn('examples'),
  ...readdirSync(join(REPO_ROOT, 'actions')).map((a) => `actions/${a}/action.yml`),
];

function stepsOf(doc: { jobs?: Record<string, { steps?: Step[] }>; runs?: { steps?: Step[] } }): Step[] {
  return [...Object.values(doc.jobs ?? {}).flatMap((j) => j.steps ?? []), ...(doc.runs?.steps ?? [])];
}

/** Expressions whose text anyone outside the repository can choose. */
const UNTRUSTED = /\$\{\{[^}]*\b(github\.event\.|github\.head_ref|inputs\.)/;
const EVENT_TEXT = /\$\{\{[^}]*\b(github\.event\.|github\.head_ref)/;

/**
 * Every place a shell runs text from the file: a step's `run:`, and the command a Cordon
 * `run` or `agent` step runs (its `run` input). The one-step fence passes its caller's own
 * command through (`${{ inputs.run }}` as the whole value): the workflow author's text.
 */
function shellInjections(text: string): string[] {
  const found: string[] = [];
  stepsOf(parse(text)).forEach((s, i) => {
    if (typeof s.run === 'string' && UNTRUSTED.test(s.run)) found.push(`step ${i + 1}: run: ${s.run}`);
    const command = s.with?.run;
    if (typeof s.uses === 'string' && /\/actions\/(run|agent)@/.test(s.uses) && typeof command === 'string') {
      const passThrough = /^\$\{\{\s*inputs\.run\s*\}\}$/.test(command.trim());
      if (EVENT_TEXT.test(command) || (!passThrough && UNTRUSTED.test(command)))
        found.push(`step ${i + 1}: with.run: ${command}`);
    }
  });
  return found;
}

describe('nothing shipped pastes untrusted text into a shell', () => {
  test.each(SHIPPED)('%s', (file) => {
    expect(shellInjections(readFileSync(join(REPO_ROOT, file), 'utf8'))).toEqual([]);
  });

  test('the check can fail: the old coding-agent example and a run: step are caught', () => {
    const old = [
      'on: issue_comment',
      'jobs:',
      '  agent:',
      '    runs-on: ubuntu-latest',
      '    steps:',
      '      - uses: cordon-dev/cordon/actions/run@v1',
      '        with:',
      '          run: npx my-coding-agent --task "${{ github.event.comment.body }}"',
      '      - run: echo "${{ github.head_ref }}"',
      '      - run: echo "${{ inputs.name }}"',
      '      - env: { TASK: "${{ github.event.comment.body }}" }',
      '        run: echo "$TASK"',
    ].join('\n');
    expect(shellInjections(old)).toHaveLength(3);
  });
});

describe("the project's own workflows", () => {
  test.each(WORKFLOWS)('%s pins every third-party action by full commit SHA', (file) => {
    const uses = stepsOf(parse(readFileSync(join(REPO_ROOT, file), 'utf8')))
      .map((s) => s.uses)
      .filter((u): u is string => typeof u === 'string')
      .filter((u) => !u.startsWith('./') && !u.startsWith('cordon-dev/cordon/'));
    expect(uses.length).toBeGreaterThan(0);
    expect(uses.filter((u) => !/@[0-9a-f]{40}$/.test(u))).toEqual([]);
  });
});

describe('one owner/repository name', () => {
  test('README, docs, examples, actions, workflows, scripts and package.json name cordon-dev/cordon only', () => {
    const files = [
      'README.md',
      'SECURITY.md',
      'package.json',
      ...SHIPPED,
      ...readdirSync(join(REPO_ROOT, 'docs')).map((f) => `docs/${f}`),
      ...readdirSync(join(REPO_ROOT, 'scripts')).map((f) => `scripts/${f}`),
    ];
    const names = new Set<string>();
    for (const f of files) {
      const text = readFileSync(join(REPO_ROOT, f), 'utf8');
      for (const m of text.matchAll(/(?:github\.com\/|uses:\s*['"]?)([A-Za-z0-9_.-]+\/cordon)\b/g))
        names.add(m[1]);
      for (const m of text.matchAll(/\b([A-Za-z0-9_.-]+\/cordon)\/(?:actions|\.github)\//g)) names.add(m[1]);
    }
    expect([...names]).toEqual(['cordon-dev/cordon']);
    expect(JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).repository.url).toContain(
      'github.com/cordon-dev/cordon',
    );
  });
});

describe('releases', () => {
  const sha = 'a'.repeat(40);

  function copyOfGenerated(): string {
    const root = tempDir('cordon-pin-');
    for (const f of ['actions/agent/action.yml', '.github/workflows/agent.yml']) {
      mkdirSync(join(root, f, '..'), { recursive: true });
      cpSync(join(REPO_ROOT, f), join(root, f));
    }
    return root;
  }

  test('scripts/pin-release.mjs pins every inner action of the composite and the reusable workflow', () => {
    const root = copyOfGenerated();
    const r = spawnSync(process.execPath, ['scripts/pin-release.mjs', sha, '--root', root], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const agent = parse(readFileSync(join(root, 'actions/agent/action.yml'), 'utf8')) as {
      runs: { steps: Step[] };
    };
    const inner = agent.runs.steps.map((s) => s.uses);
    expect(inner).toEqual(
      ['start', 'github-token', 'egress', 'run', 'report'].map(
        (a) => `cordon-dev/cordon/actions/${a}@${sha}`,
      ),
    );
    const wf = readFileSync(join(root, '.github/workflows/agent.yml'), 'utf8');
    expect(wf).toContain(`uses: cordon-dev/cordon/actions/agent@${sha}`);
    expect(wf).not.toMatch(/cordon-dev\/cordon\/actions\/[a-z-]+@v\d/);
    // Third-party pins are left as they were.
    expect(wf).toContain('actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683');
  });

  test('pin-release refuses a ref that is not a full commit SHA (a tag can move)', () => {
    const root = copyOfGenerated();
    const r = spawnSync(process.execPath, ['scripts/pin-release.mjs', 'v1', '--root', root], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('"v1" is not a full commit SHA');
    expect(readFileSync(join(root, 'actions/agent/action.yml'), 'utf8')).toBe(
      readFileSync(join(REPO_ROOT, 'actions/agent/action.yml'), 'utf8'),
    );
  });

  test('the release workflow tests and checks dist before it pins, tags and moves the major tag', () => {
    const text = readFileSync(join(REPO_ROOT, '.github/workflows/release.yml'), 'utf8');
    const wf = parse(text) as {
      on: { push: { tags: string[] }; workflow_dispatch: { inputs: Record<string, unknown> } };
      jobs: { release: { steps: Step[] } };
    };
    expect(wf.on.push.tags).toEqual(['v[0-9]+.[0-9]+.[0-9]+']);
    expect(wf.on.workflow_dispatch.inputs.version).toBeDefined();
    const runs = wf.jobs.release.steps.map((s) => (typeof s.run === 'string' ? s.run : ''));
    const at = (needle: string): number => runs.findIndex((r) => r.includes(needle));
    expect(at('bash .ci/run')).toBeGreaterThanOrEqual(0);
    expect(at('pin-release.mjs')).toBeGreaterThan(at('bash .ci/run'));
    const last = runs[at('pin-release.mjs')];
    for (const part of [
      'gen-agent.mjs --check',
      'git tag -f -a "$TAG"',
      'git tag -f "$MAJOR"',
      'git push -f origin',
    ])
      expect(last).toContain(part);
    expect(last.indexOf('pin-release.mjs')).toBeLessThan(last.indexOf('git push'));
  });

  test('LICENSE is the MIT text package.json claims; SECURITY.md and CHANGELOG.md are there', () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8'));
    expect(pkg.license).toBe('MIT');
    const license = readFileSync(join(REPO_ROOT, 'LICENSE'), 'utf8');
    expect(license).toMatch(/^MIT License\n\nCopyright \(c\) \d{4} Cordon contributors\n/);
    expect(license).toContain('THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND');
    expect(readFileSync(join(REPO_ROOT, 'SECURITY.md'), 'utf8')).toContain('security/advisories/new');
    expect(readFileSync(join(REPO_ROOT, 'CHANGELOG.md'), 'utf8')).toContain(`## ${pkg.version}`);
  });
});
