import { describe, expect, test } from '@jest/globals';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { parseCommit, readBatch } from '../../../src/github/commit-objects.js';
import { agentIdentities, classify, coAuthors } from '../../../src/github/commits.js';
import { reflogUpdates } from '../../../src/github/reflogs.js';
import { impersonationError } from '../../../src/github/commits-record.js';
import { tempDir } from '../../harness/tmp.js';
import { AS_BOT, BOT, commitAs, gitIn, issued, observed, recorded, type TestGit } from './fixtures.js';

const agents = agentIdentities([issued]);

function c(authorEmail: string, committerEmail: string) {
  return {
    sha: 'a'.repeat(40),
    author: 'x',
    authorEmail,
    committer: 'y',
    committerEmail,
    coAuthors: [],
    signature: 'unsigned',
    subject: 's',
  };
}

describe('commit verdicts', () => {
  test('the bot identity (with or without id), and GitHub web-flow as committer, count as the agent', () => {
    expect(
      classify(
        c('42+bot-app[bot]@users.noreply.github.com', '42+bot-app[bot]@users.noreply.github.com'),
        agents,
      ),
    ).toBe('agent');
    expect(classify(c('bot-app[bot]@users.noreply.github.com', 'noreply@github.com'), agents)).toBe('agent');
    expect(
      classify(
        c('42+BOT-APP[bot]@users.noreply.github.com', '42+bot-app[bot]@users.noreply.github.com'),
        agents,
      ),
    ).toBe('agent');
  });

  test('a human author or committer with an agent identity issued is impersonation', () => {
    expect(classify(c('mona@example.com', '42+bot-app[bot]@users.noreply.github.com'), agents)).toBe(
      'impersonation',
    );
    expect(classify(c('42+bot-app[bot]@users.noreply.github.com', 'mona@example.com'), agents)).toBe(
      'impersonation',
    );
  });

  test('without an agent identity nothing can be attributed', () => {
    expect(classify(c('42+bot-app[bot]@users.noreply.github.com', 'mona@example.com'), [])).toBe(
      'unattributed',
    );
  });

  test('Co-authored-by trailers, any case', () => {
    expect(
      coAuthors(
        'subject\n\nbody\n\nCo-authored-by: A <a@x>\nco-authored-by:B <b@x>  \nSigned-off-by: C <c@x>\n',
      ),
    ).toEqual(['A <a@x>', 'B <b@x>']);
  });

  test('impersonation error names the commits and the input', () => {
    const e = impersonationError({
      base: 'b',
      head: 'h',
      commits: [{ ...c('mona@example.com', 'mona@example.com'), verdict: 'impersonation' }],
    });
    expect(e?.input).toBe('fail-on-impersonation');
    expect(e?.message).toMatch(/aaaaaaaaaaaa by x <mona@example.com>/);
    expect(impersonationError({ base: 'b', head: 'h', commits: [] })).toBeUndefined();
  });

  test("hostile: the error's names are cut and shown without a right-to-left override: 5 commits with 4000-character names stay short", () => {
    const long = `Mona\u202e${'x'.repeat(4000)}`;
    const bad = Array.from({ length: 5 }, (_, i) => ({
      ...c(`${'m'.repeat(4000)}@example.com`, 'mona@example.com'),
      sha: String(i).repeat(40),
      author: long,
      committer: long,
      verdict: 'impersonation' as const,
    }));
    const e = impersonationError({ base: 'b', head: 'h', commits: bad });
    expect(e?.message).not.toContain('\u202e');
    expect(e?.message).toContain('Mona\\u202e');
    expect(e?.message.length).toBeLessThan(3000);
  });

  test('a list cut short with an agent identity issued is an error too; without one it is not', () => {
    const agent = {
      ...c('42+bot-app[bot]@users.noreply.github.com', '42+bot-app[bot]@users.noreply.github.com'),
      verdict: 'agent' as const,
    };
    const e = impersonationError(
      { base: 'b'.repeat(40), head: 'h', commits: [agent], truncated: true },
      'report',
    );
    expect(e?.input).toBe('fail-on-impersonation');
    expect(e?.message).toMatch(/^report: more than 1000 commits were made in this run .* not classified/);
    expect(e?.message).toMatch(/Fix: review the authors of every commit since bbbbbbbbbbbb/);
    const both = impersonationError({
      base: 'b',
      head: 'h',
      commits: [agent, { ...c('mona@example.com', 'mona@example.com'), verdict: 'impersonation' }],
      truncated: true,
    });
    expect(both?.message).toMatch(
      /1 commit\(s\) made in this run carry a human identity.*; and more than 1000/,
    );
    const unattributed = { ...agent, verdict: 'unattributed' as const };
    expect(
      impersonationError({ base: 'b', head: 'h', commits: [unattributed], truncated: true }),
    ).toBeUndefined();
    expect(impersonationError({ base: 'b', head: 'h', commits: [agent] })).toBeUndefined();
  });
});

describe('raw commits and reflogs', () => {
  test('a raw commit: the first author and committer, a signature header, the message; control bytes stay in their field', () => {
    const raw = Buffer.from(
      [
        'tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904',
        'author Mona\x1fbot@example.com\x1fX <mona@example.com> 1700000000 +0000',
        'committer Bot <bot@example.com> 1700000000 +0000',
        'gpgsig -----BEGIN PGP SIGNATURE-----',
        ' forged',
        ' -----END PGP SIGNATURE-----',
        'author Second <second@example.com> 1 +0000',
        '',
        'subject line',
        'continued',
        '',
        'Co-authored-by: A <a@x>',
      ].join('\n'),
    );
    expect(parseCommit(raw)).toEqual({
      author: 'Mona\x1fbot@example.com\x1fX',
      authorEmail: 'mona@example.com',
      committer: 'Bot',
      committerEmail: 'bot@example.com',
      signed: true,
      message: 'subject line\ncontinued\n\nCo-authored-by: A <a@x>',
      ambiguous: false,
      parents: [],
    });
  });

  test('cat-file --batch output is read by length: a message that looks like the next header is not one', () => {
    const a = 'a'.repeat(40);
    const b = 'b'.repeat(40);
    const bodyA = `author X <x@x> 1 +0000\n\nmsg\n${b} commit 5\nfake\n`;
    const bodyB = 'author Y <y@y> 1 +0000\n\nreal';
    const out = Buffer.from(
      `${a} commit ${Buffer.byteLength(bodyA)}\n${bodyA}\n${'c'.repeat(40)} missing\n${b} commit ${Buffer.byteLength(bodyB)}\n${bodyB}\n`,
    );
    const objects = readBatch(out);
    expect([...objects.keys()]).toEqual([a, b]);
    expect(objects.get(a)?.toString()).toBe(bodyA);
    expect(objects.get(b)?.toString()).toBe(bodyB);
  });

  test('reflog entries from the run on count; a fetch into a remote-tracking ref does not, a push does', () => {
    const dir = tempDir('reflog-');
    try {
      const sha = (c: string): string => c.repeat(40);
      const line = (from: string, to: string, t: number, msg: string): string =>
        `${from} ${to} A <a@x> ${t} +0000\t${msg}\n`;
      mkdirSync(join(dir, 'logs', 'refs', 'remotes', 'origin'), { recursive: true });
      writeFileSync(
        join(dir, 'logs', 'HEAD'),
        line('0'.repeat(40), sha('1'), 100, 'clone') + line(sha('1'), sha('2'), 1000, 'commit: x'),
      );
      writeFileSync(
        join(dir, 'logs', 'refs', 'remotes', 'origin', 'main'),
        line(sha('1'), sha('3'), 1000, 'fetch: fast-forward') +
          line(sha('3'), sha('4'), 1000, 'update by push'),
      );
      expect(reflogUpdates(dir, 500).sort()).toEqual([sha('2'), sha('4')]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('commit objects as read', () => {
  function repo(): { dir: string; git: TestGit } {
    const dir = tempDir('objects-');
    const git = gitIn(dir, dir);
    git(['init', '-q', '-b', 'main']);
    return { dir, git };
  }

  test("hostile: an identity with a second address, read as the bot's by git and as the human's by libgit2, is not the agent's", () => {
    const { dir, git } = repo();
    try {
      const base = commitAs(git, 'base');
      // git takes the first <...> as the address, libgit2 (GitHub's reader) the last one.
      const raw = [
        `tree ${git(['rev-parse', 'HEAD^{tree}'])}`,
        `parent ${base}`,
        `author Mona Lisa <${BOT}> <mona@example.com> 1700000000 +0000`,
        `committer bot-app[bot] <${BOT}> 1700000000 +0000`,
        '',
        'two addresses',
        '',
      ].join('\n');
      writeFileSync(join(dir, 'c'), raw);
      const sha = git(['hash-object', '-t', 'commit', '-w', '--literally', 'c']);
      git(['branch', 'two', sha]);
      expect(git(['log', '-1', '--format=%ae', sha])).toBe(BOT);
      const seen = observed(dir, recorded(base));
      expect(seen.commits.find((x) => x.sha === sha)).toMatchObject({
        verdict: 'impersonation',
        ambiguousIdentity: true,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("hostile: a human commit whose loose object is rewritten in place to name the bot is not the agent's", () => {
    const { dir, git } = repo();
    try {
      const base = commitAs(git, 'base');
      const human = commitAs(git, 'human work');
      // What the agent does once the real commit is pushed: the same name, the bot's identity inside.
      const forged = Buffer.from(
        git(['cat-file', 'commit', human]).replace(
          /Mona Lisa <mona@example\.com>/g,
          `bot-app[bot] <${BOT}>`,
        ) + '\n',
      );
      const file = join(dir, '.git', 'objects', human.slice(0, 2), human.slice(2));
      chmodSync(file, 0o644);
      writeFileSync(file, deflateSync(Buffer.concat([Buffer.from(`commit ${forged.length}\0`), forged])));
      expect(git(['log', '-1', '--format=%ae', human])).toBe(BOT); // git reads it as the bot's

      const seen = observed(dir, recorded(base));
      expect(seen.commits).toHaveLength(1);
      expect(seen.commits[0]).toMatchObject({ sha: human, objectMismatch: true, verdict: 'impersonation' });

      // The control: an untouched bot commit beside it (on the base: git itself now refuses
      // to commit on the rewritten one) is the agent's, its object as named.
      const bot = git(['commit-tree', '-p', base, '-m', 'bot work', `${base}^{tree}`], AS_BOT);
      git(['branch', 'bot', bot]);
      const again = observed(dir, recorded(base));
      expect(again.commits.find((x) => x.sha === bot)).toMatchObject({ verdict: 'agent', authorEmail: BOT });
      expect(again.commits.find((x) => x.sha === bot)?.objectMismatch).toBeUndefined();
      expect(again.commits.find((x) => x.sha === human)?.verdict).toBe('impersonation');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
