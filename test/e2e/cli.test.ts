import { describe, expect, test } from '@jest/globals';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ledger } from '../../src/ledger/ledger.js';
import { SecretRegistry } from '../../src/platform/mask.js';
import { REPO_ROOT, spawnCollect } from '../../src/devkit/run-action.js';
import { sampleEvents } from '../harness/sample-events.js';
import { appendAny } from '../harness/ledger.js';
import { tempDir } from '../harness/tmp.js';

const cordon = (args: string[], cwd = REPO_ROOT) =>
  spawnCollect(
    [process.execPath, join(REPO_ROOT, 'bin/cordon.js'), ...args],
    { PATH: process.env.PATH ?? '' },
    cwd,
    120000,
  );

describe('cordon CLI', () => {
  test('summary renders a ledger as markdown, text, JSON and HTML', async () => {
    const dir = tempDir('cordon-cli-');
    const ledger = new Ledger(join(dir, 'ledger.jsonl'), {
      action: 't',
      registry: new SecretRegistry(() => {}),
    });
    const nonce = ledger.open();
    for (const [t, d] of Object.entries(sampleEvents)) appendAny(ledger, t, d, nonce);
    const md = await cordon(['summary', ledger.path, '--html', join(dir, 's.html')]);
    expect(md.code).toBe(0);
    expect(md.stdout).toContain('### Commits the agent authored');
    expect(readFileSync(join(dir, 's.html'), 'utf8')).toContain('<h2>Cordon: what the agent did</h2>');
    const text = await cordon(['summary', ledger.path, '--text']);
    expect(text.stdout).toContain('-- What was blocked --');
    expect(text.stdout).toContain('exfil.evil.test');
    const json = await cordon(['summary', ledger.path, '--json']);
    expect(JSON.parse(json.stdout).commits).toHaveLength(2);
  });

  test('summary of a missing file and an unknown command fail with a clear message', async () => {
    const missing = await cordon(['summary', '/nonexistent/ledger.jsonl']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('cannot read /nonexistent/ledger.jsonl');
    const unknown = await cordon(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
  });

  test('a ledger line that is not JSON is shown as a problem, not dropped', async () => {
    const dir = tempDir('cordon-cli-');
    writeFileSync(join(dir, 'l.jsonl'), 'not json\n');
    const r = await cordon(['summary', join(dir, 'l.jsonl')]);
    expect(r.stdout).toContain('not valid JSON');
  });
});

describe('cordon check through the bundled CLI', () => {
  const fixture = (name: string): string => join(REPO_ROOT, 'test/fixtures/workflows', name);

  test('--format github prints one annotation per problem, sorted, at its own line and column', async () => {
    const r = await cordon(['check', '--format', 'github', fixture('workflow-mistakes.yml')]);
    expect(r.code).toBe(1);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(9);
    // Errors, and one warning (report without start's seal-key) as a warning annotation.
    expect(lines.filter((l) => !l.startsWith('::error file='))).toEqual([
      expect.stringMatching(/^::warning file=.*,line=20,col=15,title=cordon check%3A report-seal-key::/),
    ]);
    expect(lines.map((l) => Number(/,line=(\d+),/.exec(l)?.[1]))).toEqual([
      15, 16, 16, 20, 20, 21, 25, 25, 28,
    ]);
    expect(lines[6]).toContain(',col=31,title=cordon check%3A event-injection::');
  });

  test('--format json is an array a CI tool can read; an unknown format is refused', async () => {
    const r = await cordon(['check', '--format=json', fixture('agent-step.yml'), fixture('good.yml')]);
    expect(r.code).toBe(1);
    const arr = JSON.parse(r.stdout) as { file: string; line: number; code: string }[];
    expect(arr.map((p) => `${p.line}:${p.code}`)).toEqual([
      '16:invalid-input',
      '23:invalid-input',
      '27:invalid-input',
      '28:unknown-input',
      '31:unknown-secret',
    ]);
    const bad = await cordon(['check', '--format', 'xml', fixture('good.yml')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('unknown --format "xml": give text, json or github');
  });

  test('a billion-laughs workflow is read up to the bound and reported, not expanded', async () => {
    const dir = tempDir('cordon-check-');
    const laughs = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 15; i++)
      laughs.push(
        `a${i}: &a${i} [${Array(10)
          .fill(`*a${i - 1}`)
          .join(', ')}]`,
      );
    laughs.push('jobs:', '  j:', '    steps: *a14', '');
    writeFileSync(join(dir, 'laughs.yml'), laughs.join('\n'));
    const r = await cordon(['check', join(dir, 'laughs.yml')]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('only that much was read');
  });
});
