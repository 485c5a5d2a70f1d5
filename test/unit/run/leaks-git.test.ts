import { describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import {
  findRepos,
  gitChanges,
  GIT_LIMITS,
  readObjects,
  snapshotGit,
} from '../../../src/actions/run/leaks-git.js';
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

  test('FIFOs where git reads hold no git call past the time bound: what was not read is named', () => {
    const ws = tempDir('cordon-leaks-git-');
    git(ws, 'init', '-q', '-b', 'main');
    for (const d of ['a', 'b', 'c']) {
      mkdirSync(join(ws, d));
      git(join(ws, d), 'init', '-q', '-b', 'main');
    }
    const limits = { ...GIT_LIMITS, maxSeconds: 2 };
    // One left by an earlier command, before this one's snapshot; the others by this command.
    execFileSync('mkfifo', [join(ws, 'c', '.git', 'packed-refs')]);
    const before = snapshotGit(ws, limits);
    // The FIFO held the snapshot until its time was up: no repository counts as unreadable for it.
    expect(before.repos.has('c')).toBe(false);
    expect(before.unreadable).toEqual(new Set());
    for (const d of ['a', 'b'])
      execFileSync('mkfifo', [join(ws, d, '.git', 'objects', 'info', 'alternates')]);
    writeFileSync(join(ws, 'new.txt'), 'new\n');
    git(ws, 'add', 'new.txt');
    git(ws, 'commit', '-qm', 'new');
    // Whichever nested repository comes first uses the time up; the rest are named, unread.
    const changes = gitChanges(ws, before, limits);
    const rels = changes.repos.map((r) => r.rel);
    expect(rels).toContain('');
    expect(rels).not.toContain('a');
    expect(rels).not.toContain('b');
    expect(changes.notScanned).toContainEqual(
      expect.stringMatching(/^git repositories from \S+ on \(past 2 seconds of git\)$/),
    );
    // Reading with no time left: the objects are named, never passed as read.
    const read: string[] = [];
    const notRead = readObjects(changes, (label) => read.push(label), { ...limits, maxSeconds: 0 });
    expect(read).toEqual([]);
    expect(notRead).toEqual([expect.stringMatching(/^git objects from \S+ on \(past 0 seconds of git\)$/)]);
  }, 60_000);

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
  test('an object whose bytes do not hash to its name (a lying pack index behind a multi-pack-index) is named as not scanned', () => {
    const ws = tempDir('cordon-leaks-git-');
    git(ws, 'init', '-q', '-b', 'main');
    git(ws, 'commit', '-q', '--allow-empty', '-m', 'base');
    const before = snapshotGit(ws);
    // The command: a value in pack p2 (kept aside), clean bytes in pack p1 whose index names
    // them as the value's blob; a multi-pack-index written from that index; then p1's real
    // index back and p2 beside it. git reading with the multi-pack-index (the scan) gets the
    // clean bytes under the value's name; without it (publish's push) the value.
    const scratch = tempDir('cordon-leaks-git-scratch-');
    git(scratch, 'init', '-q');
    const hash = (text: string): string =>
      execFileSync('git', ['hash-object', '-w', '--stdin'], { cwd: scratch, input: text }).toString().trim();
    const value = hash('AKIAIOSFODNN7EXAMPLE the value\n');
    const clean = hash('clean bytes....\n');
    const aside = tempDir('cordon-leaks-git-aside-');
    const pack = (sha: string, base: string): void => {
      execFileSync('git', ['pack-objects', '-q', base], { cwd: scratch, input: `${sha}\n` });
    };
    const packDir = join(ws, '.git', 'objects', 'pack');
    pack(value, join(aside, 'p2'));
    pack(clean, join(packDir, 'p1'));
    const idx = join(
      packDir,
      readdirSync(packDir).find((f) => f.startsWith('p1-') && f.endsWith('.idx'))!,
    );
    copyFileSync(idx, join(aside, 'p1.idx'));
    // A v2 index of one object, renamed: fan-out, the one name, then the rest as it was.
    const real = readFileSync(idx);
    const name = Buffer.from(value, 'hex');
    const fanout = Buffer.alloc(1024);
    for (let i = name[0]; i < 256; i++) fanout.writeUInt32BE(1, i * 4);
    const body = Buffer.concat([
      real.subarray(0, 8),
      fanout,
      name,
      real.subarray(8 + 1024 + 20, real.length - 20),
    ]);
    writeFileSync(idx, Buffer.concat([body, createHash('sha1').update(body).digest()]));
    git(ws, 'multi-pack-index', 'write');
    copyFileSync(join(aside, 'p1.idx'), idx);
    for (const f of readdirSync(aside).filter((f) => f.startsWith('p2-')))
      renameSync(join(aside, f), join(packDir, f));
    const tree = execFileSync('git', ['mktree'], { cwd: ws, input: `100644 blob ${value}\tnotes.txt\n` })
      .toString()
      .trim();
    git(ws, 'update-ref', 'refs/heads/main', git(ws, 'commit-tree', tree, '-p', 'HEAD', '-m', 'work'));
    expect(git(ws, 'cat-file', 'blob', value)).toBe('clean bytes....');
    expect(git(ws, '-c', 'core.multiPackIndex=false', 'cat-file', 'blob', value)).toBe(
      'AKIAIOSFODNN7EXAMPLE the value',
    );

    const changes = gitChanges(ws, before);
    const read = new Map<string, string>();
    const notRead = readObjects(changes, (label, data) => read.set(label, data.toString()));
    expect(read.get(`notes.txt@${value.slice(0, 12)}`)).toBe('clean bytes....\n');
    expect(notRead).toEqual([
      `notes.txt@${value.slice(0, 12)} (the bytes git gave for it do not hash to its name: a pack index or object file was rewritten)`,
    ]);
  });
});
