import { describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { appendFileSync, chmodSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { hardenedGit, observeCommits, workspaceAtStart } from '../../../src/github/commits.js';
import { recordCommits } from '../../../src/github/commits-record.js';
import type { TokenIssued } from '../../../src/ledger/events.js';
import type { LedgerEvent } from '../../../src/ledger/ledger.js';
import { tempDir } from '../../harness/tmp.js';
import {
  agentCommit,
  AS_BOT,
  commitAs,
  fullCheckout,
  gitIn,
  issued,
  MONA,
  observed,
  observedLines,
  recorded,
  recordingRunner,
  startLedger,
  twoCommits,
  type TestGit,
} from './fixtures.js';

// What the agent writes into `.git/` to make git's walk from the refs leave its commits out
// (or take them for the history before the run): the attribution must still list them.

/**
 * A repository with two commits before the run (the second is `base`, what start recorded)
 * and, after it, the agent's two: `human` (authored as Mona) and `bot` on top. `git` runs
 * as the agent would, with the repository's own settings.
 */
function setup(): {
  dir: string;
  git: TestGit;
  base: string;
  human: string;
  bot: string;
} {
  const dir = tempDir('history-');
  const git = gitIn(dir, dir);
  const base = twoCommits(git);
  const human = commitAs(git, 'as mona');
  const bot = agentCommit(git, 'as the bot');
  return { dir, git, base, human, bot };
}

/** post's reading of the commits in `dir` since `base`. */
const observe = (dir: string, base: string) => observed(dir, recorded(base));

describe('commits git was told to leave out', () => {
  test("hostile: .git/info/grafts giving the recorded commit the agent's commit as a parent hides neither of the agent's commits", () => {
    const { dir, git, base, human, bot } = setup();
    try {
      writeFileSync(join(dir, '.git', 'info', 'grafts'), `${base} ${bot}\n`);
      expect(git(['rev-list', 'HEAD', `^${base}`])).toBe(''); // git, as the agent left it, lists nothing
      const seen = observe(dir, base);
      expect(seen.commits.map((c) => c.sha).sort()).toEqual([human, bot].sort());
      expect(seen.commits.find((c) => c.sha === human)?.verdict).toBe('impersonation');
      expect(seen.commits.find((c) => c.sha === bot)?.verdict).toBe('agent');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("hostile: a .git/shallow naming the agent's last commit does not cut its earlier one out", () => {
    const { dir, git, base, human, bot } = setup();
    try {
      writeFileSync(join(dir, '.git', 'shallow'), `${bot}\n`);
      rmSync(join(dir, '.git', 'logs'), { recursive: true, force: true }); // no reflog names it
      expect(git(['rev-list', 'HEAD', `^${base}`])).toBe(bot);
      const seen = observe(dir, base);
      expect(seen.commits.map((c) => c.sha).sort()).toEqual([human, bot].sort());
      expect(seen.commits.find((c) => c.sha === human)).toMatchObject({
        verdict: 'impersonation',
        hiddenFromHistory: true,
        authorEmail: 'mona@example.com',
      });
      expect(seen.commits.find((c) => c.sha === bot)?.verdict).toBe('agent');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("hostile: the recorded commit's object rewritten to claim the agent's commit as a parent hides neither", () => {
    const { dir, git, base, human, bot } = setup();
    try {
      const body =
        git(['cat-file', 'commit', base]).replace(/^(parent [0-9a-f]+)$/m, `$1\nparent ${bot}`) + '\n';
      const file = join(dir, '.git', 'objects', base.slice(0, 2), base.slice(2));
      chmodSync(file, 0o644);
      writeFileSync(
        file,
        deflateSync(Buffer.concat([Buffer.from(`commit ${Buffer.byteLength(body)}\0`), Buffer.from(body)])),
      );
      rmSync(join(dir, '.git', 'logs'), { recursive: true, force: true }); // no reflog names them
      expect(git(['rev-list', 'HEAD', `^${base}`])).toBe('');
      const seen = observe(dir, base);
      expect(seen.commits.map((c) => c.sha).sort()).toEqual([human, bot].sort());
      for (const c of seen.commits)
        expect(c).toMatchObject({ verdict: 'impersonation', hiddenFromHistory: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("hostile: a commit-graph that gives the recorded commit the agent's commit as a parent hides neither", () => {
    const { dir, git, base, human, bot } = setup();
    try {
      git(['commit-graph', 'write', '--reachable']);
      const path = join(dir, '.git', 'objects', 'info', 'commit-graph');
      const graph = readFileSync(path);
      // Chunk table from byte 8: 4-byte id, 8-byte offset. OIDL holds the sorted names, CDAT
      // per commit the tree, the first and second parent's positions and the generation/date.
      const chunk = (id: string): number => {
        for (let at = 8; ; at += 12) {
          if (graph.subarray(at, at + 4).toString('latin1') === id)
            return Number(graph.readBigUInt64BE(at + 4));
          if (graph.readUInt32BE(at) === 0) throw new Error(`no ${id} chunk`);
        }
      };
      const oidl = chunk('OIDL');
      const cdat = chunk('CDAT');
      const n = graph.readUInt32BE(chunk('OIDF') + 255 * 4);
      const names = Array.from({ length: n }, (_, i) =>
        graph.subarray(oidl + i * 20, oidl + i * 20 + 20).toString('hex'),
      );
      const entry = cdat + names.indexOf(base) * 36;
      graph.writeUInt32BE(names.indexOf(bot), entry + 20); // base's first parent: the bot's commit
      chmodSync(path, 0o644);
      writeFileSync(path, graph);
      expect(git(['rev-list', 'HEAD', `^${base}`])).toBe('');
      const seen = observe(dir, base);
      expect(seen.commits.map((c) => c.sha).sort()).toEqual([human, bot].sort());
      expect(seen.commits.find((c) => c.sha === human)?.verdict).toBe('impersonation');
      expect(seen.commits.find((c) => c.sha === bot)?.verdict).toBe('agent');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the control: a shallow clone as actions/checkout makes lists the commits made on it, none hidden', () => {
    const { dir, git, base } = setup();
    const clone = tempDir('history-clone-');
    try {
      git(['branch', 'at-base', base]);
      const run = gitIn(clone, clone);
      run(['clone', '-q', '--depth=1', '--branch', 'at-base', `file://${dir}`, '.']);
      agentCommit(run, 'one');
      agentCommit(run, 'two');
      const seen = observe(clone, base);
      expect(seen.commits.map((c) => c.subject)).toEqual(['two', 'one']);
      for (const c of seen.commits) {
        expect(c.verdict).toBe('agent');
        expect(c.hiddenFromHistory).toBeUndefined();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
      rmSync(clone, { recursive: true, force: true });
    }
  });
});

describe('a hidden commit naming more parents than the walk may read', () => {
  test('hostile: a hidden commit with 1500 parents: no round of the walk asks git for more commits than are left to list', () => {
    const { dir, git, base, bot } = setup();
    try {
      // 1500 commits on the recorded one, made in one fast-import stream, then one the bot
      // makes with all of them as parents, and the bot's next on top; the recorded commit's
      // object rewritten to claim the top as a parent, so git lists none of them.
      const N = 1500;
      const lines: string[] = [];
      for (let i = 1; i <= N; i++)
        lines.push(
          `commit refs/heads/w${i}`,
          `mark :${i}`,
          'committer Mona Lisa <mona@example.com> 1700000000 +0000',
          `data ${`w${i}`.length}`,
          `w${i}`,
          `from ${base}`,
          '',
        );
      execFileSync('git', ['fast-import', '--quiet'], { cwd: dir, input: lines.join('\n') + '\n' });
      const parents = execFileSync('git', ['for-each-ref', '--format=%(objectname)', 'refs/heads/w*'], {
        cwd: dir,
        encoding: 'utf8',
      })
        .trim()
        .split('\n');
      expect(parents).toHaveLength(N);
      for (const p of parents) git(['update-ref', '-d', `refs/heads/w${parents.indexOf(p) + 1}`]);
      const tree = git(['rev-parse', `${bot}^{tree}`]);
      const wide = git(['commit-tree', tree, '-m', 'wide', ...parents.flatMap((p) => ['-p', p])], AS_BOT);
      const top = git(['commit-tree', tree, '-p', wide, '-m', 'top'], AS_BOT);
      git(['update-ref', 'refs/heads/main', top]);
      const body =
        git(['cat-file', 'commit', base]).replace(/^(parent [0-9a-f]+)$/m, `$1\nparent ${top}`) + '\n';
      const file = join(dir, '.git', 'objects', base.slice(0, 2), base.slice(2));
      chmodSync(file, 0o644);
      writeFileSync(
        file,
        deflateSync(Buffer.concat([Buffer.from(`commit ${Buffer.byteLength(body)}\0`), Buffer.from(body)])),
      );
      rmSync(join(dir, '.git', 'logs'), { recursive: true, force: true });
      expect(git(['rev-list', 'HEAD', `^${base}`])).toBe('');
      let most = 0;
      const counting = (args: string[], cwd: string, input?: string): Buffer => {
        // the hidden commits' walk (the recorded history is read to its own bound first)
        if (args.includes('cat-file') && input && new Error().stack?.includes('walkHidden'))
          most = Math.max(most, input.split('\n').filter(Boolean).length);
        return hardenedGit(args, cwd, input);
      };
      const seen = observed(dir, recorded(base), { git: counting });
      expect(seen.commits.find((c) => c.sha === wide)).toMatchObject({ hiddenFromHistory: true });
      expect(most).toBeLessThanOrEqual(1001);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('tags fetched by the checkout before start', () => {
  test('the control: a full checkout (tags fetched) seconds before start does not list a release tag outside the recorded history', () => {
    const { dir, git, base } = setup();
    const clone = tempDir('history-clone-');
    try {
      git(['branch', 'at-base', base]);
      git(['checkout', '-q', '-b', 'release', base]);
      git(['commit', '-q', '--allow-empty', '--no-gpg-sign', '-m', 'release fix'], MONA);
      git(['tag', 'v1.0.1']);
      const run = gitIn(clone, clone);
      fullCheckout(run, dir, 'at-base');
      // start's main records the run a few seconds after the checkout step.
      const startedAt: LedgerEvent = { ...recorded(base), time: new Date(Date.now() + 3000).toISOString() };
      agentCommit(run, 'one');
      const seen = observed(clone, startedAt);
      expect(seen.commits.map((c) => [c.subject, c.verdict])).toEqual([['one', 'agent']]);
      expect(seen.tags).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
      rmSync(clone, { recursive: true, force: true });
    }
  });
});

describe('a recorded history longer than what is read to confirm it', () => {
  /** `setup`'s repository with 30 more commits before `base`, an old tag on the first, and 10 read. */
  function deep() {
    const r = setup();
    r.git(['tag', 'v0', `${r.base}~1`]);
    r.git(['checkout', '-q', '-b', 'long', r.base]);
    for (let i = 0; i < 30; i++)
      r.git(['commit', '-q', '--allow-empty', '--no-gpg-sign', '-m', `old ${i}`], MONA);
    const base = r.git(['rev-parse', 'HEAD']);
    const bot = agentCommit(r.git, 'as the bot');
    r.git(['branch', '-q', '-D', 'main']);
    rmSync(join(r.dir, '.git', 'logs'), { recursive: true, force: true }); // setup's commits are not the run's
    return { ...r, base, bot };
  }

  test('the control: an old tag, every tag counted (the packed refs rewritten in the run), is said to be unconfirmed, not listed with its history as hidden', () => {
    const { dir, git, base, bot } = deep();
    try {
      git(['pack-refs', '--all']);
      const seen = observed(dir, recorded(base), { maxHistory: 10 });
      expect(seen.commits.map((c) => [c.sha, c.verdict])).toEqual([[bot, 'agent']]);
      expect(seen.partial).toEqual([
        expect.stringMatching(/^1 commit\(s\) a ref points at .* not confirmed$/),
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("hostile: there, the recorded commit's object rewritten to claim the agent's commit as a parent still lists it as hidden", () => {
    const { dir, git, base, bot } = deep();
    try {
      const human = commitAs(git, 'as mona');
      git(['reset', '-q', '--hard', base]);
      git(['branch', '-q', 'agent', human]);
      const body =
        git(['cat-file', 'commit', base]).replace(/^(parent [0-9a-f]+)$/m, `$1\nparent ${human}`) + '\n';
      const file = join(dir, '.git', 'objects', base.slice(0, 2), base.slice(2));
      chmodSync(file, 0o644);
      writeFileSync(
        file,
        deflateSync(Buffer.concat([Buffer.from(`commit ${Buffer.byteLength(body)}\0`), Buffer.from(body)])),
      );
      rmSync(join(dir, '.git', 'logs'), { recursive: true, force: true });
      expect(git(['rev-list', 'HEAD', '--branches', `^${base}`])).toBe('');
      const seen = observed(dir, recorded(base), { maxHistory: 10 });
      expect(seen.commits.map((c) => c.sha)).toEqual(expect.arrayContaining([bot, human]));
      for (const c of seen.commits)
        expect(c).toMatchObject({ verdict: 'impersonation', hiddenFromHistory: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a recorded history read further than its first 1000 commits', () => {
  test('each commit object of the history is asked of git once, however many rounds widen the read', () => {
    const dir = tempDir('history-wide-');
    try {
      const git = gitIn(dir, dir);
      git(['init', '-q', '-b', 'main']);
      // 1200 commits before the run (fast-import: seconds, not minutes), a tag on the first.
      const stream: string[] = [];
      for (let i = 1; i <= 1200; i++)
        stream.push(
          'commit refs/heads/main',
          `mark :${i}`,
          `committer Mona Lisa <mona@example.com> ${1_700_000_000 + i} +0000`,
          `data ${`old ${i}`.length}`,
          `old ${i}`,
          ...(i > 1 ? [`from :${i - 1}`] : []),
          '',
        );
      git(['fast-import', '--quiet'], {}, stream.join('\n') + '\n');
      git(['tag', 'v0', 'main~1199']);
      git(['reset', '-q', '--hard', 'main']);
      const base = git(['rev-parse', 'HEAD']);
      const bot = agentCommit(git, 'as the bot');
      git(['pack-refs', '--all']); // every tag counted as written in the run
      const asked = new Map<string, number>();
      const counting = (args: string[], cwd: string, input?: string): Buffer => {
        if (args.includes('--batch') && input)
          for (const sha of input.split('\n').filter(Boolean)) asked.set(sha, (asked.get(sha) ?? 0) + 1);
        return hardenedGit(args, cwd, input);
      };
      const seen = observed(dir, recorded(base), { git: counting });
      expect(seen.commits.map((c) => [c.sha, c.verdict])).toEqual([[bot, 'agent']]);
      expect(seen.partial).toBeUndefined(); // the tag 1199 commits down is confirmed, read past the first 1000
      expect(asked.size).toBeGreaterThanOrEqual(1200);
      expect([...asked.values()].filter((n) => n > 1)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('packed-refs the agent writes', () => {
  test("hostile: an annotated tag on the agent's commits, its packed-refs peeled line pointed at the recorded commit, hides neither (git peels the tag object)", () => {
    const { dir, git, base, human, bot } = setup();
    try {
      // The agent's commits leave only through the tag: the branch and every reflog put back.
      git(['tag', '-a', '-m', 'release', 'v-agent', bot], MONA);
      git(['reset', '-q', '--hard', base]);
      rmSync(join(dir, '.git', 'logs'), { recursive: true, force: true });
      git(['pack-refs', '--all']);
      const file = join(dir, '.git', 'packed-refs');
      writeFileSync(file, readFileSync(file, 'utf8').replace(/^\^[0-9a-f]+$/m, `^${base}`));
      expect(readFileSync(file, 'utf8')).toContain(`^${base}`);
      const seen = observe(dir, base);
      expect(seen.commits.map((c) => c.sha).sort()).toEqual([human, bot].sort());
      expect(seen.commits.find((c) => c.sha === human)?.verdict).toBe('impersonation');
      expect(seen.tags).toEqual(['refs/tags/v-agent']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a workspace repository changed after start so that it cannot be read', () => {
  /** The repository as start's main saw it (base there), then `change` as the agent's step. */
  function afterChange(change: (r: ReturnType<typeof setup>) => void) {
    const r = setup();
    const atStart = workspaceAtStart({ GITHUB_WORKSPACE: r.dir }, r.base);
    change(r);
    return {
      ...r,
      seen: observeCommits([recorded(r.base, { workspace: atStart }), issued], {
        env: { GITHUB_WORKSPACE: r.dir },
      }),
    };
  }

  test('start records the recorded commit as present in the workspace, and a sha that is not there as absent', () => {
    const { dir, base } = setup();
    try {
      expect(workspaceAtStart({ GITHUB_WORKSPACE: dir }, base)).toMatchObject({
        shaPresent: true,
        gitDirId: expect.stringMatching(/^\d+:\d+$/),
      });
      expect(workspaceAtStart({ GITHUB_WORKSPACE: dir }, 'ab'.repeat(20)).shaPresent).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('hostile: the recorded commit deleted after start is unchecked, not skipped quietly', () => {
    const { dir, seen, base } = afterChange(({ dir, base }) =>
      rmSync(join(dir, '.git', 'objects', base.slice(0, 2), base.slice(2))),
    );
    try {
      expect(seen).toEqual({
        skipped: expect.stringContaining(`(${base.slice(0, 12)}) is gone from the workspace repository`),
        unchecked: true,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the control: a recorded commit that was never in the workspace is skipped as before, not unchecked', () => {
    const { dir, base } = setup();
    try {
      const absent = 'ab'.repeat(20);
      const atStart = workspaceAtStart({ GITHUB_WORKSPACE: dir }, absent);
      const seen = observeCommits([recorded(absent, { workspace: atStart }), issued], {
        env: { GITHUB_WORKSPACE: dir },
      });
      expect(seen).toEqual({ skipped: expect.stringContaining('is not in the workspace repository') });
      expect(base).not.toBe(absent);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test.each([
    ['an unknown extensions.* with repositoryformatversion 1', ['extensions.cordonProbe', 'x']],
    ['extensions.objectFormat=sha256 on a SHA-1 repository', ['extensions.objectFormat', 'sha256']],
    ['core.repositoryformatversion=99', undefined],
  ])('hostile: %s in .git/config makes the commits unchecked, not skipped quietly', (_, ext) => {
    const { dir, seen } = afterChange(({ git }) => {
      git(['config', 'core.repositoryformatversion', ext ? '1' : '99']);
      if (ext) git(['config', ...ext]);
    });
    try {
      expect(seen).toMatchObject({ unchecked: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('hostile: a packed-refs line git cannot parse makes the commits unchecked', () => {
    const { dir, seen } = afterChange(({ dir, git }) => {
      git(['pack-refs', '--all']);
      appendFileSync(join(dir, '.git', 'packed-refs'), 'not a ref line\n');
    });
    try {
      expect(seen).toMatchObject({ unchecked: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("hostile: .git replaced by a gitdir file pointing at a copy without the agent's commits is unchecked", () => {
    const { dir, seen } = afterChange(({ dir, git, base }) => {
      const decoy = `${dir}-decoy.git`;
      git(['clone', '-q', '--bare', '--no-local', join(dir, '.git'), decoy]);
      git(['--git-dir', decoy, 'update-ref', 'refs/heads/main', base]);
      renameSync(join(dir, '.git'), `${dir}-moved.git`);
      writeFileSync(join(dir, '.git'), `gitdir: ${decoy}\n`);
      expect(git(['rev-list', 'HEAD', `^${base}`])).toBe('');
    });
    try {
      expect(seen).toEqual({ skipped: expect.stringContaining('is not the one start saw'), unchecked: true });
    } finally {
      for (const d of [dir, `${dir}-decoy.git`, `${dir}-moved.git`])
        rmSync(d, { recursive: true, force: true });
    }
  });

  test("the control: .git as a gitdir file pointing at the repository start saw still lists the agent's commits", () => {
    const { dir, seen, human, bot } = afterChange(({ dir }) => {
      renameSync(join(dir, '.git'), `${dir}-moved.git`);
      writeFileSync(join(dir, '.git'), `gitdir: ${dir}-moved.git\n`);
    });
    try {
      if ('skipped' in seen) throw new Error(seen.skipped);
      expect(seen.commits.map((c) => c.sha).sort()).toEqual([human, bot].sort());
    } finally {
      rmSync(dir, { recursive: true, force: true });
      rmSync(`${dir}-moved.git`, { recursive: true, force: true });
    }
  });

  test.each([
    [
      'a branch that does not exist',
      (d: string) => writeFileSync(join(d, '.git', 'HEAD'), 'ref: refs/heads/nowhere\n'),
    ],
    [
      'a path out of refs/',
      (d: string) => writeFileSync(join(d, '.git', 'HEAD'), 'ref: refs/../../../etc/passwd\n'),
    ],
  ])("hostile: HEAD pointing at %s still lists the agent's commits from the branches", (_, point) => {
    const { dir, seen, human, bot } = afterChange(({ dir }) => point(dir));
    try {
      if ('skipped' in seen) throw new Error(seen.skipped);
      expect(seen.commits.map((c) => c.sha).sort()).toEqual([human, bot].sort());
      expect(seen.head).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test.each([
    ['core.bare=true', ['core.bare', 'true']],
    ['core.worktree pointing elsewhere', ['core.worktree', '/tmp']],
  ])("%s in .git/config changes nothing: the agent's commits are listed", (_, setting) => {
    const { dir, seen, human, bot } = afterChange(({ git }) => git(['config', ...setting]));
    try {
      if ('skipped' in seen) throw new Error(seen.skipped);
      expect(seen.commits.map((c) => c.sha).sort()).toEqual([human, bot].sort());
      expect(seen.commits.find((c) => c.sha === human)?.verdict).toBe('impersonation');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('git failing while the recorded history is read to confirm what it left out', () => {
  test("an honest job whose recorded history git cannot walk (an old commit's object missing) is unchecked with git's error, not told its commits are hidden impersonation", () => {
    const dir = tempDir('history-broken-');
    try {
      const git = gitIn(dir, dir);
      git(['init', '-q', '-b', 'main']);
      for (const m of ['zero', 'one', 'base'])
        git(['commit', '-q', '--allow-empty', '--no-gpg-sign', '-m', m], MONA);
      const base = git(['rev-parse', 'HEAD']);
      const one = git(['rev-parse', 'HEAD~1']);
      const zero = git(['rev-parse', 'HEAD~2']);
      git(['branch', 'old', one]); // a branch of the history before the run: a tip git does not list
      const bot = agentCommit(git, 'as the bot');
      // A damaged repository, nothing the agent did: an object of the recorded history is gone.
      rmSync(join(dir, '.git', 'objects', zero.slice(0, 2), zero.slice(2)));
      expect(git(['rev-list', 'HEAD', '--branches', `^${base}`])).toBe(bot); // git's listing still works
      expect(() => git(['rev-list', '--max-count=1000', base])).toThrow(/Could not read|Failed to traverse/);
      const ledger = startLedger(dir);
      ledger.append('run.recorded', {
        sha: base,
        workspace: workspaceAtStart({ GITHUB_WORKSPACE: dir }, base),
      });
      ledger.append('token.issued', issued.data as unknown as TokenIssued);
      const { runner, lines } = recordingRunner(dir);
      const seen = recordCommits(ledger, runner, undefined, { who: 'start' });
      expect(seen).toEqual({
        base,
        head: '',
        commits: [],
        unchecked: expect.stringMatching(/^git failed while listing them \(fatal: .*[0-9a-f]{40}.*\)$/),
      });
      expect(observedLines(ledger)).toEqual([seen]);
      expect(lines).toEqual([
        expect.stringMatching(
          /^warning start: the run's commits could not be checked for a human author or committer: git failed while listing them \(fatal: /,
        ),
      ]);
      expect(lines.join('\n')).not.toMatch(/impersonat|hidden|left out of git's history/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
