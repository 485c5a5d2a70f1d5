import { describe, expect, test } from '@jest/globals';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { processName, processNameAsync } from '../../../src/platform/proc-name.js';
import { tempDir } from '../../harness/tmp.js';

/** A /proc of our own: pid -> [comm, exe link target]. */
function fakeProc(entries: Record<number, [string, string?]>): string {
  const root = tempDir('cordon-proc-');
  for (const [pid, [comm, exe]] of Object.entries(entries)) {
    mkdirSync(join(root, pid));
    writeFileSync(join(root, pid, 'comm'), `${comm}\n`);
    if (exe) symlinkSync(exe, join(root, pid, 'exe'));
  }
  return root;
}

describe('processName', () => {
  const root = fakeProc({
    10: ['curl', '/usr/bin/curl'],
    11: ['MainThread', '/opt/hostedtoolcache/node/24.11.1/x64/bin/node'],
    12: ['MainThread', '/usr/bin/node (deleted)'],
    13: ['MainThread'],
    14: ['MainThread', `/tmp/${'x'.repeat(40)}/sshd (pid 1, not under run's command) x`],
    15: ['Web Content'],
  });

  test('comm as it is, unless a runtime renamed its main thread: then the executable', async () => {
    for (const f of [processName, processNameAsync]) {
      expect(await f(10, root)).toBe('curl');
      // Node >= 22 names its main thread MainThread, which Linux shows as the process's comm.
      expect(await f(11, root)).toBe('node');
      expect(await f(12, root)).toBe('node');
      // No executable to read (another user's process): the thread name rather than nothing.
      expect(await f(13, root)).toBe('MainThread');
      expect(await f(99, root)).toBe('');
      // Its own choice, kept short and plain: it cannot pose as the text around it.
      expect(await f(14, root)).toBe('sshd__pid_1__not_under_run_s_com');
      expect(await f(15, root)).toBe('Web_Content');
    }
    rmSync(root, { recursive: true, force: true });
  });

  test('this very process, on whichever Node runs the tests, is node', async () => {
    expect(processName(process.pid)).toBe('node');
    expect(await processNameAsync(process.pid)).toBe('node');
  });

  // The runner's Node 24, as scripts/fetch-node24.sh (run by .ci/run) leaves it.
  const node24 = fileURLToPath(
    new URL('../../../node_modules/.cache/cordon-node24/bin/node', import.meta.url),
  );
  if (!existsSync(node24) && process.env.CI === 'true')
    throw new Error(`${node24} is missing: .ci/run fetches it with scripts/fetch-node24.sh`);
  (existsSync(node24) ? test : test.skip)(
    'a live Node 24 process, whose comm is MainThread, is named node',
    async () => {
      const child = spawn(node24, ['-e', 'setTimeout(() => {}, 10000)'], { stdio: 'ignore' });
      try {
        const comm = (): string => {
          try {
            return readFileSync(`/proc/${child.pid}/comm`, 'utf8').trim();
          } catch {
            return '';
          }
        };
        for (let i = 0; i < 250 && comm() !== 'MainThread'; i++) await new Promise((r) => setTimeout(r, 20));
        expect(comm()).toBe('MainThread');
        expect(processName(child.pid!)).toBe('node');
        expect(await processNameAsync(child.pid!)).toBe('node');
      } finally {
        child.kill('SIGKILL');
      }
    },
  );
});
