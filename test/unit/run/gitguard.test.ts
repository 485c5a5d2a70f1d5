import { afterEach, describe, expect, test } from '@jest/globals';
import { chmodSync, lstatSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { reportGitRestored, restoreGitDir, snapshotGitDir } from '../../../src/actions/run/gitguard.js';
import { tempDir } from '../../harness/tmp.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function workspace(): string {
  const ws = tempDir('gitguard-');
  dirs.push(ws);
  mkdirSync(join(ws, '.git', 'hooks'), { recursive: true });
  mkdirSync(join(ws, '.git', 'info'));
  writeFileSync(join(ws, '.git', 'config'), '[core]\n\tbare = false\n', { mode: 0o644 });
  writeFileSync(join(ws, '.git', 'hooks', 'pre-commit.sample'), '#!/bin/sh\n', { mode: 0o755 });
  writeFileSync(join(ws, '.git', 'info', 'exclude'), '# exclude\n', { mode: 0o644 });
  return ws;
}

describe("run: the workspace's .git is put back after the command", () => {
  test('config, a new hook, a new commondir and an info file replaced by a link are put back, and named', () => {
    const ws = workspace();
    const git = join(ws, '.git');
    const guard = snapshotGitDir(ws);
    expect(guard).toBeDefined();
    const outside = join(ws, 'outside.txt');
    writeFileSync(outside, 'the command owns this\n');
    writeFileSync(join(git, 'config'), '[core]\n\tfsmonitor = ./evil.sh\n[gpg]\n\tprogram = ./evil.sh\n');
    writeFileSync(join(git, 'hooks', 'post-checkout'), '#!/bin/sh\ntouch /tmp/pwned\n', { mode: 0o755 });
    writeFileSync(join(git, 'commondir'), '../elsewhere\n');
    rmSync(join(git, 'info', 'exclude'));
    symlinkSync(outside, join(git, 'info', 'exclude'));
    chmodSync(join(git, 'hooks', 'pre-commit.sample'), 0o777);

    const r = restoreGitDir(guard!);
    expect(r.failed).toEqual([]);
    expect(r.restored).toEqual([
      '.git/commondir',
      '.git/config',
      '.git/hooks/post-checkout',
      '.git/hooks/pre-commit.sample',
      '.git/info/exclude',
    ]);
    expect(readFileSync(join(git, 'config'), 'utf8')).toBe('[core]\n\tbare = false\n');
    expect(() => lstatSync(join(git, 'hooks', 'post-checkout'))).toThrow();
    expect(() => lstatSync(join(git, 'commondir'))).toThrow();
    expect(lstatSync(join(git, 'info', 'exclude')).isFile()).toBe(true);
    expect(readFileSync(join(git, 'info', 'exclude'), 'utf8')).toBe('# exclude\n');
    // The link was replaced, never written through.
    expect(readFileSync(outside, 'utf8')).toBe('the command owns this\n');
    expect(lstatSync(join(git, 'hooks', 'pre-commit.sample')).mode & 0o7777).toBe(0o755);

    const warnings: string[] = [];
    expect(reportGitRestored(r, (m) => warnings.push(m))).toEqual({ gitRestored: r.restored });
    expect(warnings).toEqual([expect.stringMatching(/put back as before it: .git\/commondir, .git\/config/)]);
  });

  test('a hooks directory replaced by a link to a directory of the command is replaced by the original', () => {
    const ws = workspace();
    const git = join(ws, '.git');
    const guard = snapshotGitDir(ws)!;
    const planted = join(ws, 'planted');
    mkdirSync(planted);
    writeFileSync(join(planted, 'pre-commit'), '#!/bin/sh\n', { mode: 0o755 });
    rmSync(join(git, 'hooks'), { recursive: true });
    symlinkSync(planted, join(git, 'hooks'));
    const r = restoreGitDir(guard);
    expect(r.restored).toEqual(['.git/hooks', '.git/hooks/pre-commit.sample']);
    expect(lstatSync(join(git, 'hooks')).isDirectory()).toBe(true);
    expect(readFileSync(join(planted, 'pre-commit'), 'utf8')).toBe('#!/bin/sh\n');
  });

  test('nothing changed: nothing is named; no .git directory: nothing is guarded', () => {
    const ws = workspace();
    const r = restoreGitDir(snapshotGitDir(ws)!);
    expect(r).toEqual({ restored: [], failed: [] });
    expect(reportGitRestored(r, () => undefined)).toEqual({});
    const plain = tempDir('gitguard-');
    dirs.push(plain);
    expect(snapshotGitDir(plain)).toBeUndefined();
  });
});
