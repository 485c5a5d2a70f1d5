/**
 * removeLeftovers on a directory made here standing for /tmp: only the given uid's paths go,
 * deepest first, never through a link, never into a directory someone else owns the top of.
 * Needs root (to give files to another uid).
 */
import { describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, lchownSync, lstatSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { removeLeftovers } from '../../../src/identity/leftovers.js';
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
});
