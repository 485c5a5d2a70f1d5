import { afterAll, describe, expect, test } from '@jest/globals';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawnCollect } from '../../../src/devkit/run-action.js';
import { alive } from '../../harness/proc.js';
import { tempDir } from '../../harness/tmp.js';

const dir = tempDir('cordon-step-harness-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The step harness (src/devkit/run-action.ts) every whole-program test runs actions through. */
describe('the step harness', () => {
  test('a step past its time is killed with every process it left, and what it printed is handed back', async () => {
    const pidFile = join(dir, 'left.pid');
    // A process left in the background, holding the step's pipes, and one a level deeper.
    const r = await spawnCollect(
      [
        'bash',
        '-c',
        `echo started; (sleep 300 & echo $! > ${pidFile}.deep; wait) & echo $! > ${pidFile}; sleep 300`,
      ],
      { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      dir,
      1500,
    );
    expect(r.code).toBeNull();
    expect(r.stdout).toContain('started');
    expect(r.stderr).toContain('[harness] killed after 1500 ms');
    for (const f of [pidFile, `${pidFile}.deep`]) {
      const pid = Number(readFileSync(f, 'utf8').trim());
      expect(pid).toBeGreaterThan(1);
      // Gone, or a zombie about to be reaped by whoever inherited it.
      for (let i = 0; i < 40 && alive(pid); i++) await new Promise((res) => setTimeout(res, 50));
      expect(alive(pid)).toBe(false);
    }
  });
});
