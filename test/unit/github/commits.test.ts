import { describe, expect, test } from '@jest/globals';
import { agentIdentities, classify, coAuthors, impersonationError } from '../../../src/github/commits.js';
import type { LedgerEvent } from '../../../src/ledger/ledger.js';

const issued: LedgerEvent = {
  v: 1,
  time: '2026-01-01T00:00:00Z',
  action: 'github-token',
  type: 'token.issued',
  prev: '',
  data: {
    app: 'bot-app',
    bot: 'bot-app[bot]',
    botId: 42,
    installationId: 1,
    repositories: [],
    permissions: {},
    expiresAt: '',
  },
};
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
});
