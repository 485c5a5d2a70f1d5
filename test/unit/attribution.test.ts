import { describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkAttribution, writeAttribution } from '../../src/actions/attribution.js';
import { tempDir } from '../harness/tmp.js';

describe('writeAttribution: whatever an earlier step left at the path is replaced, never written through', () => {
  const cases: [string, (path: string, root: string) => void][] = [
    ['a forged file', (p) => writeFileSync(p, '{"forged":true}')],
    ['a link to another file', (p, root) => symlinkSync(join(root, 'decoy'), p)],
    ['a FIFO nobody reads', (p) => execFileSync('mkfifo', [p])],
    ['a directory', (p) => mkdirSync(join(p, 'inside'), { recursive: true })],
  ];
  test.each(cases)('%s', (_, plant) => {
    const root = tempDir('cordon-attr-');
    const env = { RUNNER_TEMP: root };
    mkdirSync(join(root, 'cordon'));
    writeFileSync(join(root, 'decoy'), 'decoy');
    plant(join(root, 'cordon', 'attribution.json'), root);
    const { path, sha256 } = writeAttribution(env, '{"version":1}\n');
    expect(path).toBe(join(root, 'cordon', 'attribution.json'));
    expect(lstatSync(path).isFile()).toBe(true);
    expect(lstatSync(path).mode & 0o777).toBe(0o644);
    expect(readFileSync(path, 'utf8')).toBe('{"version":1}\n');
    expect(sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(readFileSync(join(root, 'decoy'), 'utf8')).toBe('decoy');
  });
});

describe("checkAttribution: start's post tells report's attribution.json from one a later step left", () => {
  const cases: [string, (path: string, root: string) => void, string][] = [
    ['left as report wrote it', () => {}, 'same'],
    ['hostile: removed', (p) => rmSync(p), 'gone'],
    ['hostile: rewritten, same size', (p) => writeFileSync(p, '{"version":2}\n'), 'changed'],
    [
      'rewritten, larger',
      (p) => writeFileSync(p, '{"version":1,"verdict":{"status":"intact"}}\n'),
      'changed',
    ],
    [
      'hostile: a link to a copy of it',
      (p, root) => {
        writeFileSync(join(root, 'copy'), readFileSync(p));
        rmSync(p);
        symlinkSync(join(root, 'copy'), p);
      },
      'changed',
    ],
    [
      'hostile: a FIFO nobody writes (never waited on)',
      (p) => {
        rmSync(p);
        execFileSync('mkfifo', [p]);
      },
      'changed',
    ],
  ];
  test.each(cases)('%s', (_, plant, state) => {
    const root = tempDir('cordon-attr-check-');
    const env = { RUNNER_TEMP: root };
    const written = writeAttribution(env, '{"version":1}\n');
    plant(written.path, root);
    const checked = checkAttribution(env, { attribution: written.sha256, attributionBytes: written.bytes });
    expect(checked.state).toBe(state);
    if (state === 'changed') expect(checked.detail).toContain('attribution.json');
  });
});
