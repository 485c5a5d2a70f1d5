import { describe, expect, test } from '@jest/globals';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { hardenedGit, workspaceAtStart } from '../../../src/github/commits.js';
import { recordTags, tagsWritten } from '../../../src/github/tags.js';
import type { LedgerEvent } from '../../../src/ledger/ledger.js';
import { tempDir } from '../../harness/tmp.js';
import {
  agentCommit,
  commitAs,
  fullCheckout,
  gitIn,
  humanCommit,
  MONA,
  observed,
  recorded,
  twoCommits,
  type TestGit,
} from './fixtures.js';

// Tags have no reflog: start records the tags that exist, and post counts one as written in
// the run only if it is new or moved since. Other people's release tags a step fetches again,
// packs or garbage-collects are not the run's; a tag the agent writes or moves is.

/**
 * `origin`: `base` on main, and a release branch from it with a fix by Mona tagged v1.0.1
 * (lightweight) and v1.0.0 (annotated), outside base's history. `work`: a full checkout of
 * it (every branch and tag, as actions/checkout with fetch-depth: 0) at `base`.
 */
function setup(): { origin: string; dir: string; git: TestGit; base: string; release: string } {
  const origin = tempDir('tags-origin-');
  const o = gitIn(origin, origin);
  const base = twoCommits(o);
  o(['checkout', '-q', '-b', 'release']);
  const release = commitAs(o, 'release fix');
  o(['tag', 'v1.0.1']);
  o(['tag', '-a', '-m', 'release', 'v1.0.0'], MONA);
  o(['checkout', '-q', 'main']);
  const dir = tempDir('tags-work-');
  const git = gitIn(dir, dir);
  fullCheckout(git, origin);
  return { origin, dir, git, base, release };
}

/** start's record of `dir` now. */
function atStart(dir: string, base: string): LedgerEvent {
  return recorded(base, { workspace: workspaceAtStart({ GITHUB_WORKSPACE: dir }, base) });
}

describe('tags start recorded', () => {
  test("the control: with start's record, a re-fetch of the tags, git pack-refs --all and git gc in the run do not list the release tags' commits (without it they did)", () => {
    const { origin, dir, git, base, release } = setup();
    try {
      const start = atStart(dir, base);
      expect(start.data.workspace).toMatchObject({ tags: { count: 2 } });
      git(['fetch', '-q', '--tags', 'origin']);
      git(['pack-refs', '--all']);
      git(['gc', '-q']);
      const one = agentCommit(git, 'one');
      const seen = observed(dir, start);
      expect(seen.commits.map((c) => [c.sha, c.verdict])).toEqual([[one, 'agent']]);
      expect(seen.tags).toBeUndefined();
      // Judged by their files' times (no record), every tag counts once the packed refs are rewritten.
      const before = observed(dir, recorded(base));
      expect(before.commits.find((c) => c.sha === release)?.verdict).toBe('impersonation');
      expect(before.tags?.sort()).toEqual(['refs/tags/v1.0.0', 'refs/tags/v1.0.1']);
    } finally {
      for (const d of [dir, origin]) rmSync(d, { recursive: true, force: true });
    }
  });

  test('hostile: a new tag on a human-authored commit made with commit-tree (no reflog names it), the packed refs then rewritten, is listed as impersonation', () => {
    const { origin, dir, git, base, release } = setup();
    try {
      const start = atStart(dir, base);
      const human = humanCommit(git, base);
      git(['tag', 'v-agent', human]);
      git(['pack-refs', '--all']);
      const seen = observed(dir, start);
      expect(seen.commits.map((c) => [c.sha, c.verdict])).toEqual([[human, 'impersonation']]);
      expect(seen.tags).toEqual(['refs/tags/v-agent']);
      expect(seen.commits.map((c) => c.sha)).not.toContain(release);
    } finally {
      for (const d of [dir, origin]) rmSync(d, { recursive: true, force: true });
    }
  });

  test('hostile: an existing tag moved to a human-authored commit (git tag -f, then packed) is listed; the tags left in place are not', () => {
    const { origin, dir, git, base, release } = setup();
    try {
      const start = atStart(dir, base);
      const human = humanCommit(git, base);
      git(['tag', '-f', 'v1.0.1', human]);
      git(['pack-refs', '--all']);
      const seen = observed(dir, start);
      expect(seen.commits.map((c) => [c.sha, c.verdict])).toEqual([[human, 'impersonation']]);
      expect(seen.tags).toEqual(['refs/tags/v1.0.1']);
      expect(seen.commits.map((c) => c.sha)).not.toContain(release);
    } finally {
      for (const d of [dir, origin]) rmSync(d, { recursive: true, force: true });
    }
  });
});

describe("the record's bound, and start before the checkout", () => {
  test("past its bound (3 of 5 tags), the record says it was cut and holds 16 characters a tag; tags past it are judged by their files' times, those in it by the record", () => {
    const { origin, dir, git, base } = setup();
    try {
      const human = humanCommit(git, base);
      for (const t of ['a1', 'a2', 'a3', 'a4', 'a5']) git(['tag', t, base]);
      const record = recordTags(hardenedGit, dir, 3);
      expect(record).toMatchObject({ count: 3, cut: true });
      expect(record.digests).toHaveLength(48);
      expect(recordTags(hardenedGit, dir).cut).toBeUndefined();
      const gitDir = join(dir, '.git');
      // From the next whole second on: every tag above was written before it.
      const since = Math.ceil(Date.now() / 1000);
      Atomics.wait(
        new Int32Array(new SharedArrayBuffer(4)),
        0,
        0,
        Math.max(0, since * 1000 - Date.now() + 20),
      );
      expect(tagsWritten(hardenedGit, dir, gitDir, since, record).refs).toEqual([]);
      git(['tag', '-f', 'a2', human]);
      git(['tag', 'a9', human]);
      expect(tagsWritten(hardenedGit, dir, gitDir, since, record).refs).toEqual([
        'refs/tags/a2',
        'refs/tags/a9',
      ]);
      // The packed refs rewritten: every tag past the record counts, those recorded unchanged do not.
      git(['pack-refs', '--all']);
      expect(tagsWritten(hardenedGit, dir, gitDir, since, record).refs).toEqual([
        'refs/tags/a2',
        'refs/tags/a4',
        'refs/tags/a5',
        'refs/tags/a9',
        'refs/tags/v1.0.0',
        'refs/tags/v1.0.1',
      ]);
    } finally {
      for (const d of [dir, origin]) rmSync(d, { recursive: true, force: true });
    }
  });

  test('start before the checkout records no tags: the tags the checkout fetches after it count as written in the run (the safe side)', () => {
    const origin = setup();
    const dir = tempDir('tags-late-');
    try {
      const atStartSeen = workspaceAtStart({ GITHUB_WORKSPACE: dir }, origin.base);
      expect(atStartSeen).toEqual({ shaPresent: false });
      const start = recorded(origin.base, { workspace: atStartSeen });
      const git = gitIn(dir, dir);
      fullCheckout(git, origin.origin);
      const seen = observed(dir, start);
      expect(seen.commits.map((c) => [c.sha, c.verdict])).toEqual([[origin.release, 'impersonation']]);
      expect(seen.tags?.sort()).toEqual(['refs/tags/v1.0.0', 'refs/tags/v1.0.1']);
    } finally {
      for (const d of [dir, origin.dir, origin.origin]) rmSync(d, { recursive: true, force: true });
    }
  });
});
