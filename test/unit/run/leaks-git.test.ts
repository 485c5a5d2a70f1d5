import { describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findRepos, gitChanges, GIT_LIMITS, snapshotGit } from '../../../src/actions/run/leaks-git.js';
import { tempDir } from '../../harness/tmp.js';

function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args], {
    cwd,
    encoding: 'utf8',
  }).trim();
}

describe('leak scan: git objects', () => {
  test('finds the workspace repository, nested and bare ones, within the depth and count bounds', () => {
    const ws = tempDir('cordon-leaks-git-');
    git(ws, 'init', '-q');
    mkdirSync(join(ws, 'a', 'b'), { recursive: true });
    git(join(ws, 'a', 'b'), 'init', '-q');
    git(ws, 'init', '-q', '--bare', 'bare.git');
    expect(
      findRepos(ws)
        .repos.map((r) => r.rel)
        .sort(),
    ).toEqual(['', 'a/b', 'bare.git']);
    expect(
      findRepos(ws, { ...GIT_LIMITS, maxDepth: 1 })
        .repos.map((r) => r.rel)
        .sort(),
    ).toEqual(['', 'bare.git']);
    expect(findRepos(ws, { ...GIT_LIMITS, maxRepos: 1 }).truncated).toBe(true);
  });

  test('new objects: dangling ones, ones a new ref reaches (with their path), none of those there before', () => {
    const ws = tempDir('cordon-leaks-git-');
    git(ws, 'init', '-q', '-b', 'main');
    writeFileSync(join(ws, 'old.txt'), 'old\n');
    git(ws, 'add', '.');
    git(ws, 'commit', '-qm', 'old');
    // There before, reachable from no ref: new to the refs once a tag points at it.
    const loose = git(ws, 'commit-tree', '-m', 'loose', git(ws, 'rev-parse', 'HEAD^{tree}'));
    const before = snapshotGit(ws);
    git(ws, 'tag', 'later', loose);
    writeFileSync(join(ws, 'side.txt'), 'side\n');
    git(ws, 'checkout', '-q', '-b', 'side');
    git(ws, 'add', 'side.txt');
    git(ws, 'commit', '-qm', 'side');
    const side = git(ws, 'rev-parse', 'HEAD');
    git(ws, 'checkout', '-q', 'main');
    const dangling = execFileSync('git', ['hash-object', '-w', '--stdin'], { cwd: ws, input: 'dangling\n' })
      .toString()
      .trim();
    const changes = gitChanges(ws, before);
    const objects = changes.repos[0].objects;
    const bySha = new Map(objects.map((o) => [o.sha, o]));
    expect(bySha.get(dangling)).toMatchObject({ type: 'blob' });
    expect(bySha.get(dangling)?.path).toBeUndefined();
    expect(bySha.get(git(ws, 'rev-parse', 'side:side.txt'))).toMatchObject({
      type: 'blob',
      path: 'side.txt',
    });
    expect(bySha.get(loose)).toMatchObject({ type: 'commit' });
    expect(bySha.has(git(ws, 'rev-parse', 'main:old.txt'))).toBe(false);
    expect(changes.commitsCreated).toEqual([side]);
  });

  test('a repository the command damaged after writing into it is named as not scanned, never passed as clean', () => {
    const ws = tempDir('cordon-leaks-git-');
    git(ws, 'init', '-q', '-b', 'main');
    mkdirSync(join(ws, 'out'));
    git(join(ws, 'out'), 'init', '-q', '-b', 'main');
    // Not a repository before or after: nothing to name.
    mkdirSync(join(ws, 'fixture', '.git'), { recursive: true });
    const before = snapshotGit(ws);
    // The command commits a value into each repository, then leaves a HEAD git refuses.
    for (const dir of [ws, join(ws, 'out')]) {
      writeFileSync(join(dir, 'value.txt'), 'the value\n');
      git(dir, 'add', 'value.txt');
      git(dir, 'commit', '-qm', 'value');
      writeFileSync(join(dir, '.git', 'HEAD'), 'not a ref\n');
    }
    const changes = gitChanges(ws, before);
    expect(changes.repos).toEqual([]);
    expect(changes.notScanned).toHaveLength(2);
    expect(changes.notScanned.find((s) => s.startsWith('the workspace repository: '))).toMatch(
      /git could not read its objects \(.+\)/,
    );
    expect(changes.notScanned.find((s) => s.startsWith('out: '))).toMatch(/git could not read its objects/);
  });
});
