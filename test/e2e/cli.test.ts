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
