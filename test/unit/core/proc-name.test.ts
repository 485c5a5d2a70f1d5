import { describe, expect, test } from '@jest/globals';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { processName, processNameAsync } from '../../../src/core/proc-name.js';

/** A /proc of our own: pid -> [comm, exe link target]. */
function fakeProc(entries: Record<number, [string, string?]>): string {
  const root = mkdtempSync(join(tmpdir(), 'cordon-proc-'));
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
    }
    rmSync(root, { recursive: true, force: true });
  });

  test('this very process, on whichever Node runs the tests, is node', async () => {
    expect(processName(process.pid)).toBe('node');
    expect(await processNameAsync(process.pid)).toBe('node');
  });
});
