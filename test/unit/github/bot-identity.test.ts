import { describe, expect, test } from '@jest/globals';
import { botIdentity, noreplyHosts, shown } from '../../../src/github/bot-identity.js';
import { agentIdentities, classify } from '../../../src/github/commits.js';
import type { LedgerEvent } from '../../../src/ledger/ledger.js';
import { gitIdentity } from '../../../src/actions/run/home.js';
import { tempDir } from '../../harness/tmp.js';
import { BOT, issued as tokenIssued } from './fixtures.js';

/** The token's record with the git identity it names. */
const good = { ...tokenIssued.data, gitUserName: 'bot-app[bot]', gitUserEmail: BOT };

/** The token's record, with `data` over `good`. */
const issued = (data: object): LedgerEvent => ({ ...tokenIssued, data: { ...good, ...data } });

function refused(data: object, hosts = ['github.com']): string {
  const r = botIdentity({ ...good, ...data }, hosts);
  return 'refused' in r ? r.refused : '';
}

describe('the bot identity a token.issued names', () => {
  test("GitHub's form for the App's bot is its identity, on github.com and on the job's GHES host", () => {
    expect(botIdentity(good, ['github.com'])).toEqual({
      identity: {
        name: 'bot-app[bot]',
        emails: ['42+bot-app[bot]@users.noreply.github.com', 'bot-app[bot]@users.noreply.github.com'],
      },
    });
    const ghes = { gitUserEmail: '42+bot-app[bot]@users.noreply.ghes.example.com' };
    expect(refused(ghes)).toContain('"42+bot-app[bot]@users.noreply.ghes.example.com"');
    const hosts = noreplyHosts({ GITHUB_API_URL: 'https://ghes.example.com/api/v3' });
    expect(hosts).toEqual(['github.com', 'ghes.example.com']);
    expect(refused(ghes, hosts)).toBe('');
    // Older lines with no git identity recorded: the id form and the login form.
    expect(botIdentity({ app: 'bot-app', bot: 'bot-app[bot]' }, ['github.com'])).toEqual({
      identity: { name: 'bot-app[bot]', emails: ['bot-app[bot]@users.noreply.github.com'] },
    });
  });

  test("hostile: a person's address, login or name named as the bot's is refused, and names no agent", () => {
    expect(refused({ gitUserEmail: 'mona@example.com' })).toBe(
      `names "mona@example.com" as the bot's address, not GitHub's for it (42+bot-app[bot]@users.noreply.github.com)`,
    );
    // A person's noreply address (id form and login form): no `[bot]`.
    expect(refused({ gitUserEmail: '583231+mona@users.noreply.github.com' })).toMatch(
      /^names "583231\+mona@/,
    );
    expect(refused({ app: 'mona', bot: 'mona', gitUserEmail: undefined })).toMatch(
      /^names "mona" as the bot/,
    );
    // Another id than the line's, another App's bot, no id with an address, a name that is not the bot's.
    expect(refused({ gitUserEmail: '43+bot-app[bot]@users.noreply.github.com' })).toMatch(/bot's address/);
    expect(refused({ gitUserEmail: '42+other[bot]@users.noreply.github.com' })).toMatch(/bot's address/);
    expect(refused({ botId: undefined })).toMatch(/<id>\+bot-app\[bot\]@/);
    expect(refused({ botId: -1 })).toMatch(/user id/);
    expect(refused({ gitUserName: 'Mona Lisa' })).toMatch(/^names "Mona Lisa" as the bot's git name/);
    expect(refused({ app: 'a@b.c' })).toMatch(/not an App's slug/);
    expect(refused({ app: undefined })).toMatch(/^names "undefined" as the App/);
    expect(botIdentity(null, ['github.com'])).toHaveProperty('refused');
    // Such a line makes no commit the agent's, and leaves the real bot's commits the agent's.
    const agents = agentIdentities([issued({}), issued({ gitUserEmail: 'mona@example.com' })]);
    expect(agents).toHaveLength(1);
    const commit = (email: string) => ({
      sha: 'a'.repeat(40),
      author: 'x',
      authorEmail: email,
      committer: 'x',
      committerEmail: email,
      coAuthors: [],
      signature: 'unsigned',
      subject: 's',
    });
    expect(classify(commit('mona@example.com'), agents)).toBe('impersonation');
    expect(classify(commit('42+bot-app[bot]@users.noreply.github.com'), agents)).toBe('agent');
  });

  test('a claimed value is shown quoted, escaped and cut', () => {
    expect(shown('a"b\\c\x1b[31m\x85')).toBe('"a\\"b\\\\c\\x1b[31m\\x85"');
    expect(shown('x'.repeat(200))).toBe(`"${'x'.repeat(80)}..."`);
    expect(shown({ a: 1 })).toBe('"{\\"a\\":1}"');
  });

  test('hostile: a claimed value with a right-to-left override, isolates and zero-width marks shows them escaped, so the rest of the finding reads as written', () => {
    expect(shown('mona\u202e@example.com\u2067x\u2069\u200b\u200f\ufeff')).toBe(
      '"mona\\u202e@example.com\\u2067x\\u2069\\u200b\\u200f\\ufeff"',
    );
    const r = botIdentity(
      { ...good, gitUserEmail: '42+bot-app[bot]@users.noreply.github.com\u202emoc.elpmaxe@anom' },
      ['github.com'],
    );
    expect('refused' in r && r.refused).toContain('\\u202e');
    expect(JSON.stringify(r)).not.toContain('\u202e');
  });

  test("hostile: run does not give the agent a person's identity from a token.issued naming one", () => {
    // No global git identity: run falls back to the last token.issued naming an App's bot.
    const env = { HOME: tempDir('cordon-botid-home-') };
    const forged = issued({ gitUserName: 'bot-app[bot]', gitUserEmail: 'mona@example.com' });
    expect(gitIdentity(env, [issued({}), forged])).toEqual({
      name: 'bot-app[bot]',
      email: '42+bot-app[bot]@users.noreply.github.com',
    });
    expect(gitIdentity(env, [forged])).toBeUndefined();
  });
});
