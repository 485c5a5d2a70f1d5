import {
  chmodSync,
  chownSync,
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  mkdirSync,
  renameSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { clearSetId, openAncestors, openBeneath, pinWorkspace, unpin } from '../../../src/identity/pinned.js';
import { tempDir } from '../../harness/tmp.js';

const RUNNER = 4243;

describe('pinWorkspace', () => {
  let root: string;
  beforeEach(() => {
    root = tempDir('cordon-pin-');
    chmodSync(root, 0o755);
    mkdirSync(join(root, 'ws'));
    chownSync(join(root, 'ws'), RUNNER, RUNNER);
  });

  test('a real directory of the caller is pinned; its inode is the one checked', () => {
    const p = pinWorkspace(join(root, 'ws'), RUNNER);
    try {
      expect(p.st.uid).toBe(RUNNER);
      expect(p.st.ino).toBe(lstatSync(join(root, 'ws')).ino);
    } finally {
      unpin(p);
    }
  });

  test('/etc, a directory of another user, is refused for a caller that is not root', () => {
    expect(() => pinWorkspace('/etc', RUNNER)).toThrow(/belongs to uid 0, not to the caller/);
  });

  test('a symbolic link anywhere on the way is refused, even to a directory of the caller', () => {
    symlinkSync('/etc', join(root, 'etc-link'));
    expect(() => pinWorkspace(join(root, 'etc-link'), RUNNER)).toThrow(
      /etc-link on the way is a symbolic link/,
    );
    symlinkSync(root, join(root, 'up'));
    expect(() => pinWorkspace(join(root, 'up', 'ws'), RUNNER)).toThrow(/up on the way is a symbolic link/);
  });

  test('a path that is not normalised or absolute is refused', () => {
    for (const bad of ['ws', '/', `${root}/ws/`, `${root}/../${root}/ws`, `${root}/./ws`])
      expect(() => pinWorkspace(bad, RUNNER)).toThrow(/not an absolute, normalised path/);
  });

  test('a swap after pinning changes nothing of what root then touches', () => {
    const ws = join(root, 'ws');
    const p = pinWorkspace(ws, RUNNER);
    try {
      renameSync(ws, join(root, 'moved'));
      symlinkSync('/etc', ws);
      // A set-uid file made in the pinned directory, and /etc's mode after the sweep.
      const f = join(root, 'moved', 'suid');
      writeFileSync(f, 'x', { mode: 0o755 });
      chownSync(f, RUNNER, RUNNER);
      chmodSync(f, 0o4755);
      const etc = lstatSync('/etc').mode;
      expect(clearSetId(p, 0)).toEqual(['set-uid/set-gid bits cleared on 1 file(s) the agent made']);
      expect(lstatSync(f).mode & 0o7777).toBe(0o755);
      expect(lstatSync('/etc').mode).toBe(etc);
    } finally {
      unpin(p);
    }
  });

  test("a set-uid file swapped for a link to one of root's is not touched", () => {
    const ws = join(root, 'ws');
    const f = join(ws, 'suid');
    writeFileSync(f, 'x');
    chownSync(f, 0, 0);
    chmodSync(f, 0o4755); // root's, in the caller's tree: never the caller's to change
    const p = pinWorkspace(ws, RUNNER);
    try {
      expect(clearSetId(p, 0)).toEqual([]);
      expect(lstatSync(f).mode & 0o7777).toBe(0o4755);
    } finally {
      unpin(p);
    }
  });

  test("o+x is given only on the caller's own closed directories, and taken back", () => {
    const mine = join(root, 'mine');
    mkdirSync(join(mine, 'ws'), { recursive: true });
    chownSync(mine, RUNNER, RUNNER);
    chownSync(join(mine, 'ws'), RUNNER, RUNNER);
    chmodSync(mine, 0o750);
    const p = pinWorkspace(join(mine, 'ws'), RUNNER);
    try {
      const close = openAncestors(p, RUNNER);
      expect(lstatSync(mine).mode & 0o777).toBe(0o751);
      expect(close()).toEqual([]);
      expect(lstatSync(mine).mode & 0o777).toBe(0o750);
    } finally {
      unpin(p);
    }
    chownSync(mine, 0, 0); // now root's and closed: the caller cannot have it opened
    const q = pinWorkspace(join(mine, 'ws'), RUNNER);
    try {
      expect(() => openAncestors(q, RUNNER)).toThrow(/not the caller's\) is closed to other users/);
      expect(lstatSync(mine).mode & 0o777).toBe(0o750);
    } finally {
      unpin(q);
    }
  });

  test('openBeneath opens a file below the pinned directory, and refuses a directory on the way swapped for a link', () => {
    const ws = join(root, 'ws');
    mkdirSync(join(ws, 'd'));
    writeFileSync(join(ws, 'd', 'f'), 'x');
    mkdirSync(join(root, 'outside'));
    writeFileSync(join(root, 'outside', 'f'), 'y');
    const p = pinWorkspace(ws, RUNNER);
    try {
      const fd = openBeneath(p.fd, 'd/f', constants.O_RDONLY);
      expect(fstatSync(fd).ino).toBe(lstatSync(join(ws, 'd', 'f')).ino);
      closeSync(fd);
      renameSync(join(ws, 'd'), join(ws, 'd.real'));
      symlinkSync(join(root, 'outside'), join(ws, 'd'));
      expect(() => openBeneath(p.fd, 'd/f', constants.O_RDONLY)).toThrow(/ELOOP|ENOTDIR/);
      symlinkSync(join(root, 'outside', 'f'), join(ws, 'link'));
      expect(() => openBeneath(p.fd, 'link', constants.O_RDONLY)).toThrow(/ELOOP/);
      for (const bad of ['../outside/f', 'd.real//f', './d.real/f'])
        expect(() => openBeneath(p.fd, bad, constants.O_RDONLY)).toThrow(/not a plain relative path/);
    } finally {
      unpin(p);
    }
  });
});
