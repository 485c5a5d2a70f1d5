/**
 * removeLeftovers on a directory made here standing for /tmp: only the given uid's paths go,
 * deepest first, never through a link, never into a directory someone else owns the top of.
 * Needs root (to give files to another uid).
 */
import { describe, expect, test } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { removeLeftovers } from '../../../src/identity/leftovers.js';
import { privilegedExec } from '../../../src/identity/user.js';
import { tempDir } from '../../harness/tmp.js';

const root = process.getuid?.() === 0;
const suite = root ? describe : describe.skip;
/** A uid no user holds, in no range Cordon gives out. */
const UID = 60999;
const noExec = (): string => '';

const exists = (p: string): boolean => {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
};

function own(...paths: string[]): void {
  for (const p of paths) lchownSync(p, UID, UID);
}

suite('removeLeftovers', () => {
  test("removes the uid's files, FIFOs, links and directories, and nothing of anyone else's", () => {
    const shared = tempDir('leftovers-');
    chmodSync(shared, 0o1777);
    mkdirSync(join(shared, 'dir', 'deep'), { recursive: true });
    writeFileSync(join(shared, 'dir', 'deep', 'f'), 'x');
    writeFileSync(join(shared, 'file'), 'x');
    execFileSync('mkfifo', [join(shared, 'fifo')]);
    symlinkSync('/etc/passwd', join(shared, 'link'));
    own(...['dir', 'dir/deep', 'dir/deep/f', 'file', 'fifo', 'link'].map((p) => join(shared, p)));
    // Someone else's: a file at the top, and one inside a folder of the uid's (which then stays).
    writeFileSync(join(shared, 'roots'), 'x');
    mkdirSync(join(shared, 'holds'));
    writeFileSync(join(shared, 'holds', 'roots'), 'x');
    own(join(shared, 'holds'));
    const r = removeLeftovers(noExec, UID, [shared]);
    expect(r.removed).toBe(6);
    for (const p of ['dir', 'file', 'fifo', 'link']) expect(exists(join(shared, p))).toBe(false);
    expect(exists('/etc/passwd')).toBe(true);
    expect(exists(join(shared, 'roots'))).toBe(true);
    expect(exists(join(shared, 'holds', 'roots'))).toBe(true);
    expect(r.problems).toEqual([`1 path(s) of the agent's under ${shared} could not be removed`]);
  });

  test("the uid's file inside a folder someone else made and opened to all stays: that folder's owner asked for it", () => {
    const shared = tempDir('leftovers-');
    mkdirSync(join(shared, 'scratch'));
    chmodSync(join(shared, 'scratch'), 0o1777);
    writeFileSync(join(shared, 'scratch', 'handed'), 'x');
    own(join(shared, 'scratch', 'handed'));
    expect(removeLeftovers(noExec, UID, [shared]).removed).toBe(0);
    expect(exists(join(shared, 'scratch', 'handed'))).toBe(true);
  });

  test("a link in the shared directory is not followed: the uid's file behind it stays", () => {
    const shared = tempDir('leftovers-');
    const elsewhere = tempDir('leftovers-elsewhere-');
    writeFileSync(join(elsewhere, 'f'), 'x');
    own(join(elsewhere, 'f'));
    symlinkSync(elsewhere, join(shared, 'to-elsewhere'));
    const r = removeLeftovers(noExec, UID, [shared]);
    expect(r.removed).toBe(0);
    expect(exists(join(elsewhere, 'f'))).toBe(true);
  });

  test("a shared directory that is not root's, or not there, is not searched", () => {
    const shared = tempDir('leftovers-');
    writeFileSync(join(shared, 'f'), 'x');
    own(join(shared, 'f'));
    chownSync(shared, UID, UID);
    expect(removeLeftovers(noExec, UID, [shared, join(shared, 'missing')]).removed).toBe(0);
    expect(exists(join(shared, 'f'))).toBe(true);
  });

  test('hostile: eighty thousand files of the uid are swept in seconds, not minutes', () => {
    const shared = tempDir('leftovers-');
    chmodSync(shared, 0o1777);
    // Made as the agent would (seconds); the sweep compared each path with every other before.
    execFileSync('sh', ['-c', 'seq 1 80000 | sed "s/^/f/" | xargs touch'], { cwd: shared });
    mkdirSync(join(shared, 'scratch'));
    execFileSync('sh', ['-c', 'seq 1 2000 | sed "s/^/s/" | xargs touch'], { cwd: join(shared, 'scratch') });
    execFileSync('chown', ['-R', `${UID}:${UID}`, shared]);
    chownSync(shared, 0, 0);
    chownSync(join(shared, 'scratch'), 0, 0);
    chmodSync(join(shared, 'scratch'), 0o1777);
    const started = Date.now();
    const r = removeLeftovers(noExec, UID, [shared]);
    const took = Date.now() - started;
    expect(took).toBeLessThan(10_000); // about 20 s before, 2 s after
    expect(r.removed).toBe(80_000);
    expect(exists(join(shared, 'scratch', 's2000'))).toBe(true);
  });

  test("a set-uid file shown as the uid's through another mount below the shared directory keeps its bits (an idmapped workspace)", () => {
    const shared = tempDir('leftovers-');
    const elsewhere = tempDir('leftovers-elsewhere-');
    writeFileSync(join(elsewhere, 'tool'), 'x');
    own(join(elsewhere, 'tool'));
    chmodSync(join(elsewhere, 'tool'), 0o4755);
    mkdirSync(join(shared, 'scratch'));
    chmodSync(join(shared, 'scratch'), 0o1777);
    mkdirSync(join(shared, 'scratch', 'ws'));
    execFileSync('mount', ['--bind', elsewhere, join(shared, 'scratch', 'ws')]);
    try {
      removeLeftovers(noExec, UID, [shared]);
      expect(lstatSync(join(elsewhere, 'tool')).mode & 0o7777).toBe(0o4755);
    } finally {
      execFileSync('umount', [join(shared, 'scratch', 'ws')]);
    }
  });

  test("a killed launcher's mqueue mount at /run/cordon-mqueue-XXXXXX is taken down at the next sweep (only mqueue, only that name); the uid's queue goes through a mount no one else sees", () => {
    const mountedAt = (p: string): string[] =>
      readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .filter((l) => l.split(' ')[4] === p)
        .map((l) => l.split(' - ')[1].split(' ')[0]);
    const stale = mkdtempSync('/run/cordon-mqueue-');
    const other = mkdtempSync('/run/cordon-mqueue-');
    const offName = mkdtempSync('/run/cordon-mqueue-x-');
    execFileSync('mount', ['-t', 'mqueue', 'cordon-mqueue', stale]);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1k', 'cordon-test', other]);
    execFileSync('mount', ['-t', 'mqueue', 'cordon-mqueue', offName]);
    const queue = `cordon-unit-mq-${process.pid}`;
    try {
      // A queue of the uid's, opened as it through libc (it outlives its process).
      if (existsSync('/usr/bin/python3'))
        execFileSync('setpriv', [
          `--reuid=${UID}`,
          `--regid=${UID}`,
          '--clear-groups',
          '/usr/bin/python3',
          '-c',
          `import ctypes, ctypes.util, os; c = ctypes.CDLL(ctypes.util.find_library("rt") or ctypes.util.find_library("c")); assert c.mq_open(b"/${queue}", os.O_CREAT | os.O_RDWR, 0o600, None) >= 0`,
        ]);
      const r = removeLeftovers(privilegedExec('root'), UID, ['/dev/mqueue']);
      expect(r.problems).toEqual([]);
      expect(mountedAt(stale)).toEqual([]);
      expect(existsSync(stale)).toBe(false);
      expect(mountedAt(other)).toEqual(['tmpfs']);
      expect(mountedAt(offName)).toEqual(['mqueue']);
      if (existsSync('/usr/bin/python3')) {
        expect(r.removed).toBe(1);
        expect(existsSync(join(offName, queue))).toBe(false);
      }
      // Nothing of the sweep's own is mounted or left in /run.
      const mq = readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .filter((l) => l.includes(' - mqueue '))
        .map((l) => l.split(' ')[4]);
      expect(mq.filter((m) => m.startsWith('/run/cordon-mqueue-'))).toEqual([offName]);
    } finally {
      for (const d of [stale, other, offName]) {
        spawnSync('umount', [d]);
        spawnSync('rmdir', [d]);
      }
    }
  });
});
