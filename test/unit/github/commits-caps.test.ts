import { describe, expect, test } from '@jest/globals';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { observeCommits } from '../../../src/github/commits.js';
import { impersonationError, recordCommits } from '../../../src/github/commits-record.js';
import { tempDir } from '../../harness/tmp.js';
import {
  agentCommit,
  AS_BOT,
  commitAs,
  gitIn,
  humanCommit,
  issued,
  observed,
  observedLines,
  recorded,
  recordingRunner,
  startLedger,
  twoCommits,
  type TestGit,
} from './fixtures.js';

// The bounds on what post reads to find the run's commits (refs, reflog files, reflog lines,
// a reflog's size) are the agent's to reach: reaching one must not silently hide a commit.

/** A repository with two commits before the run; `base` is what start recorded. */
function setup(): {
  dir: string;
  git: TestGit;
  base: string;
} {
  const dir = tempDir('caps-');
  const git = gitIn(join(dir, 'work'), dir);
  mkdirSync(join(dir, 'work'));
  return { dir, git, base: twoCommits(git) };
}

/** post's reading of the commits in `dir`'s workspace since `base`. */
const observe = (dir: string, base: string) => observed(join(dir, 'work'), recorded(base));

/** `n` files named so that they sort (and are walked) before `HEAD` and `refs`, in `dir`. */
function junk(dir: string, n: number, body = ''): void {
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < n; i++) writeFileSync(join(dir, String(i).padStart(5, '0')), body);
}

describe('the bounds on finding the run commits', () => {
  test('hostile: 200 tags that sort before the tag the agent wrote do not hide the human-authored commit only that tag holds', () => {
    const { dir, git, base } = setup();
    try {
      const human = humanCommit(git, base);
      git(['tag', 'v9', human]);
      for (let i = 0; i < 200; i++)
        writeFileSync(join(dir, 'work', '.git', 'refs', 'tags', `a${i}`), `${base}\n`);
      const seen = observe(dir, base);
      expect(seen.commits.find((c) => c.sha === human)?.verdict).toBe('impersonation');
      expect(seen.partial).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('hostile: 200 remote-tracking refs and 1001 log files that sort first do not hide a human-authored commit only a push holds', () => {
    const { dir, git, base } = setup();
    try {
      git(['init', '-q', '--bare', join(dir, 'remote.git')]);
      git(['remote', 'add', 'origin', join(dir, 'remote.git')]);
      const human = humanCommit(git, base);
      git(['push', '-q', 'origin', `${human}:refs/heads/feature`]);
      expect(git(['rev-parse', 'refs/remotes/origin/feature'])).toBe(human);
      mkdirSync(join(dir, 'work', '.git', 'refs', 'remotes', 'a'));
      for (let i = 0; i < 200; i++)
        writeFileSync(join(dir, 'work', '.git', 'refs', 'remotes', 'a', `r${i}`), `${base}\n`);
      junk(join(dir, 'work', '.git', 'logs'), 1001);
      const seen = observe(dir, base);
      expect(seen.commits.find((c) => c.sha === human)?.verdict).toBe('impersonation');
      expect(seen.pushedRefs).toEqual(['refs/remotes/origin/feature']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("hostile: 1001 files in .git/logs that sort before HEAD do not hide a human-authored commit reset away (only HEAD's reflog holds it)", () => {
    const { dir, git, base } = setup();
    try {
      const human = commitAs(git, 'as mona');
      git(['reset', '-q', '--hard', base]);
      rmSync(join(dir, 'work', '.git', 'logs', 'refs'), { recursive: true, force: true }); // HEAD's is the one left
      junk(join(dir, 'work', '.git', 'logs'), 1001);
      const seen = observe(dir, base);
      expect(seen.commits.find((c) => c.sha === human)?.verdict).toBe('impersonation');
      expect(seen.partial).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("hostile: 5000 reflog lines naming no object, before the real one, do not hide a commit only HEAD's reflog holds", () => {
    const { dir, git, base } = setup();
    try {
      const human = commitAs(git, 'as mona');
      git(['reset', '-q', '--hard', base]);
      rmSync(join(dir, 'work', '.git', 'logs', 'refs'), { recursive: true, force: true });
      const head = join(dir, 'work', '.git', 'logs', 'HEAD');
      const now = Math.floor(Date.now() / 1000);
      const fake = Array.from(
        { length: 5000 },
        (_, i) => `${base} e${(i + 1).toString(16).padStart(39, '0')} A <a@x> ${now} +0000\tcommit: junk\n`,
      ).join('');
      writeFileSync(head, fake + readFileSync(head, 'utf8'));
      const seen = observe(dir, base);
      expect(seen.commits.find((c) => c.sha === human)?.verdict).toBe('impersonation');
      expect(seen.partial).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("hostile: HEAD's reflog padded past 16 MiB in front of the run's entries still lists the commit, and says the reflog was read only in part", () => {
    const { dir, git, base } = setup();
    try {
      const human = commitAs(git, 'as mona');
      git(['reset', '-q', '--hard', base]);
      rmSync(join(dir, 'work', '.git', 'logs', 'refs'), { recursive: true, force: true });
      const head = join(dir, 'work', '.git', 'logs', 'HEAD');
      const pad = `${base} ${base} A <a@x> 100 +0000\told\n`.repeat(Math.ceil((17 * 1024 * 1024) / 110));
      writeFileSync(head, pad + readFileSync(head, 'utf8'));
      const seen = observe(dir, base);
      expect(seen.commits.find((c) => c.sha === human)?.verdict).toBe('impersonation');
      expect(seen.partial?.join(' ')).toMatch(/logs\/HEAD/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("hostile: past the bound on reflogs (10,001 written in the run), HEAD's is still read first and the list is said to be partial: fail-on-impersonation fails", () => {
    const { dir, git, base } = setup();
    try {
      const bot = agentCommit(git, 'as the bot');
      git(['reset', '-q', '--hard', base]);
      const line = `${base} ${base} A <a@x> ${Math.floor(Date.now() / 1000)} +0000\tx\n`;
      junk(join(dir, 'work', '.git', 'logs', 'refs', 'a'), 10_001, line);
      const seen = observe(dir, base);
      expect(seen.commits.find((c) => c.sha === bot)?.verdict).toBe('agent');
      expect(seen.partial).toEqual([
        expect.stringMatching(
          /^10\d{3} reflogs changed in the run: those past the first 10000 were not read$/,
        ),
      ]);
      const e = impersonationError(seen, 'report');
      expect(e?.input).toBe('fail-on-impersonation');
      expect(e?.message).toMatch(
        /^report: the commits made in this run were looked for only in part \(bounds reached: 10\d{3} reflogs/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the control: reflogs and tags from before the run do not count toward the bounds', () => {
    const { dir, base } = setup();
    try {
      // What a checkout of a large repository leaves: many refs and reflogs, all before start.
      junk(join(dir, 'work', '.git', 'logs', 'refs', 'remotes', 'origin'), 10_001);
      for (let i = 0; i < 300; i++)
        writeFileSync(join(dir, 'work', '.git', 'refs', 'tags', `old${i}`), `${base}\n`);
      const seen = observeCommits(
        [{ ...recorded(base), time: new Date(Date.now() + 120_000).toISOString() }, issued],
        {
          env: { GITHUB_WORKSPACE: join(dir, 'work') },
        },
      );
      expect(seen).toMatchObject({ commits: [] });
      expect('partial' in seen).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('hostile: a commit whose message is past what git hands back (65 MiB) does not stop the list: the human-authored commit under it is impersonation, the large one named as not read', () => {
    const { dir, git, base } = setup();
    try {
      const human = commitAs(git, 'as mona');
      const msg = join(dir, 'msg');
      writeFileSync(msg, `big\n\n${'x'.repeat(80)}\n`.repeat(Math.ceil((65 * 1024 * 1024) / 86)));
      git(['commit', '-q', '--allow-empty', '--no-gpg-sign', '-F', msg], AS_BOT);
      const big = git(['rev-parse', 'HEAD']);
      const seen = observe(dir, base);
      expect(seen.commits.find((c) => c.sha === human)?.verdict).toBe('impersonation');
      expect(seen.commits.find((c) => c.sha === big)).toBeUndefined();
      expect(seen.partial).toEqual([
        expect.stringMatching(new RegExp(`^commit ${big} is \\d+ bytes, past 1048576: not read`)),
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("hostile: a tag written in the run naming an object that is not there makes git's listing fail: the commits are unchecked, not skipped with a warning alone", () => {
    const { dir, git, base } = setup();
    try {
      commitAs(git, 'as mona');
      const tag = git(
        ['hash-object', '-t', 'tag', '-w', '--stdin', '--literally'],
        {},
        `object ${'d'.repeat(40)}\ntype commit\ntag x\ntagger A <a@x> 1 +0000\n\nx\n`,
      );
      git(['update-ref', 'refs/tags/x', tag]);
      const ledger = startLedger(dir);
      ledger.append('run.recorded', { sha: base, workspace: { shaPresent: true } });
      const { runner, lines } = recordingRunner(join(dir, 'work'));
      const seen = recordCommits(ledger, runner, undefined, { who: 'start' });
      expect(seen).toMatchObject({
        base,
        commits: [],
        unchecked: expect.stringMatching(/^git failed while listing them \(.*(bad|missing) object d{40}/),
      });
      expect(observedLines(ledger)).toEqual([seen]);
      expect(lines).toEqual([
        expect.stringMatching(
          /^warning start: the run's commits could not be checked for a human author or committer: git failed/,
        ),
      ]);
      expect(impersonationError(seen as NonNullable<typeof seen>)?.input).toBe('fail-on-impersonation');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
