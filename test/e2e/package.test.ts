import { describe, expect, test } from '@jest/globals';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT, spawnCollect } from '../../src/devkit/run-action.js';
import { tempDir } from '../harness/tmp.js';

/**
 * The npm package as a user gets it: packed, installed into an empty project with an empty
 * npm cache and `--offline` (so anything it would fetch fails the install), then run as
 * `npx cordon` in that project. Uses the committed dist/cli bundle.
 */
const npm = (args: string[], cwd: string, home: string) =>
  spawnCollect(
    ['npm', ...args],
    {
      PATH: process.env.PATH ?? '',
      HOME: home,
      npm_config_cache: join(home, 'npm-cache'),
      npm_config_update_notifier: 'false',
    },
    cwd,
    120000,
  );

const WORKFLOW = `name: agent
on: workflow_dispatch
permissions: { id-token: write, contents: read }
jobs:
  agent:
    runs-on: ubuntu-latest
    steps:
      - uses: cordon-dev/cordon/actions/start@v1
      - uses: cordon-dev/cordon/actions/egress@v1
        with:
          allowed-domains: registry.npmjs.org
          egress-policy: blok
      - uses: cordon-dev/cordon/actions/run@v1
        with:
          run: ./agent.sh
`;

describe('the npm package', () => {
  test('packs bin/ and the CLI bundle only, installs offline into an empty project, and `npx cordon check` runs there', async () => {
    const home = tempDir('cordon-pkg-');
    const packed = await npm(['pack', '--json', '--pack-destination', home], REPO_ROOT, home);
    expect(packed.stderr).not.toMatch(/npm (ERR|error)/);
    expect(packed.code).toBe(0);
    const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    const files = info.files.map((f) => f.path).sort();
    expect(files).toEqual(
      expect.arrayContaining([
        'bin/cordon.js',
        'dist/cli/main.js',
        'dist/package.json',
        'package.json',
        // `cordon check` knows each action's inputs from its metadata.
        'actions/run/action.yml',
        'actions/report/action.yml',
      ]),
    );
    // Nothing else of the repository: no sources, tests or other bundles.
    expect(
      files.filter(
        (f) =>
          !/^(bin\/cordon\.js|dist\/cli\/main\.js|dist\/package\.json|actions\/[a-z-]+\/action\.yml)$/.test(
            f,
          ),
      ),
    ).toEqual(files.filter((f) => /^(package\.json|README\.md|LICENSE|CHANGELOG\.md)$/.test(f)));
    const manifest = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    expect(manifest.private).toBeUndefined();
    // The bundle carries everything it imports: a user's install fetches nothing.
    expect(manifest.dependencies).toBeUndefined();

    const project = join(home, 'user-repo');
    mkdirSync(join(project, '.github', 'workflows'), { recursive: true });
    writeFileSync(join(project, 'package.json'), '{ "name": "user-repo", "private": true }\n');
    writeFileSync(join(project, '.github', 'workflows', 'agent.yml'), WORKFLOW);
    const installed = await npm(
      ['install', '--offline', '--no-audit', '--no-fund', join(home, info.filename)],
      project,
      home,
    );
    expect(installed.stderr).not.toMatch(/npm (ERR|error)/);
    expect(installed.code).toBe(0);

    const check = await npm(
      ['exec', '--offline', '--', 'cordon', 'check', '.github/workflows/agent.yml'],
      project,
      home,
    );
    expect(check.stdout).toContain(
      '.github/workflows/agent.yml:12:26: error: egress: input egress-policy "blok" is not valid',
    );
    expect(check.stdout).toContain('.github/workflows/agent.yml: 3 Cordon step(s), 1 problem(s)');
    expect(check.code).toBe(1);

    // The demo needs a checkout's bundled actions; from the package it says so.
    const demo = await npm(
      ['exec', '--offline', '--', 'cordon', 'demo', '--out', join(home, 'demo')],
      project,
      home,
    );
    expect(demo.stdout).toContain('run the demo from a Cordon checkout');
    expect(demo.code).toBe(1);
  }, 240000);
});
