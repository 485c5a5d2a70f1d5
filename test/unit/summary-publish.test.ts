/** The summary's "Published" part: publish.pushed and publish.refused in every form. */
import { describe, expect, test } from '@jest/globals';
import { join } from 'node:path';
import { Ledger, type LedgerLine } from '../../src/ledger/ledger.js';
import { SecretRegistry } from '../../src/platform/mask.js';
import {
  buildAttribution,
  renderSummaryHtml,
  renderSummaryMarkdown,
  renderSummaryText,
} from '../../src/summary/render.js';
import { verdictFor } from '../../src/ledger/verify.js';
import { sampleEvents } from '../harness/sample-events.js';
import { appendAny } from '../harness/ledger.js';
import { tempDir } from '../harness/tmp.js';

const COMMIT = 'c'.repeat(40);
const TOKEN = 'ghs_' + 'A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8';

/** A ledger of run.recorded, commits.observed and the given publish lines. */
function ledgerOf(publish: [string, object][]): LedgerLine[] {
  const ledger = new Ledger(join(tempDir('cordon-sum-pub-'), 'ledger.jsonl'), {
    action: 'test',
    registry: new SecretRegistry(() => {}),
  });
  ledger.open();
  appendAny(ledger, 'run.recorded', sampleEvents['run.recorded']);
  appendAny(ledger, 'commits.observed', sampleEvents['commits.observed']);
  const asPublish = new Ledger(ledger.path, { action: 'publish', registry: new SecretRegistry(() => {}) });
  for (const [type, data] of publish) appendAny(asPublish, type, data);
  return ledger.read();
}

function forms(lines: LedgerLine[]): { md: string; html: string; text: string; json: string } {
  const input = { lines, verdict: verdictFor(lines) };
  return {
    md: renderSummaryMarkdown(input),
    html: renderSummaryHtml(input),
    text: renderSummaryText(input),
    json: JSON.stringify(buildAttribution(input)),
  };
}

describe('the summary: what publish pushed or refused', () => {
  test('publish.pushed: a Published part names the branch, the commit, how many commits and the repository, in markdown, HTML, text and attribution.json', () => {
    const lines = ledgerOf([['publish.pushed', sampleEvents['publish.pushed']]]);
    const { md, html, text, json } = forms(lines);
    expect(md).toContain('### Published');
    expect(md).toContain(
      "| Pushed to branch | Commit | Commits | Repository | publish's token |\n| --- | --- | --- | --- | --- |\n" +
        '| agent/issue-42 | cccccccccccc | 2 | github.com/octo-org/octo-repo | revoked (a call with it answered 401) |',
    );
    expect(md).not.toContain('### Other events');
    expect(md.indexOf('### Published')).toBeGreaterThan(md.indexOf('### Commits the agent authored'));
    expect(html).toContain('<h3>Published</h3>');
    expect(html).toContain('<td>github.com/octo-org/octo-repo</td>');
    expect(text).toContain('-- Published --');
    expect(text).toMatch(/agent\/issue-42 +\| cccccccccccc \| 2 +\| github\.com\/octo-org\/octo-repo/);
    const attribution = JSON.parse(json) as { publish: { pushed: unknown[]; refused: unknown[] } };
    expect(attribution.publish).toEqual({
      pushed: [
        {
          branch: 'agent/issue-42',
          commit: COMMIT,
          commits: 2,
          repository: 'github.com/octo-org/octo-repo',
          token: 'revoked (a call with it answered 401)',
        },
      ],
      refused: [],
    });
  });

  test('publish.refused: a hostile reason with markdown, HTML and control characters is shown inert in every form', () => {
    const reason =
      'HEAD is not the agent\'s\n\n## Injected heading\n<img src=x onerror="alert(1)"> \x1b[31m**bold**|col| ' +
      '[link](https://evil.test) @octocat \u202Eright-to-left\r- a list item';
    const lines = ledgerOf([
      ['publish.refused', { branch: 'agent/issue-42', commit: COMMIT, reason, token: 'revoked' }],
    ]);
    // The line holds the hostile text as written: what the summary shows is its doing.
    expect(lines.some((l) => l.raw.includes('<img src=x'))).toBe(true);
    const { md, html, text, json } = forms(lines);
    expect(md).toContain('### Published');
    expect(md).toContain('**Refused: nothing was pushed to branch agent/issue-42 (HEAD cccccccccccc): ');
    for (const out of [md, html, text, json]) {
      expect(out).not.toContain('\x1b');
      expect(out).not.toContain('\u202E');
    }
    expect(md).not.toMatch(/^## Injected/m);
    expect(md).not.toMatch(/^- a list item/m);
    expect(md).not.toContain('<img');
    expect(md).toContain('&lt;img src=x onerror="alert(1)"&gt;');
    expect(md).toContain('\\\\x1b\\[31m\\*\\*bold\\*\\*\\|col\\|');
    expect(md).toContain('\\[link\\](https://evil.test) &#64;octocat \\\\u202eright-to-left');
    expect(html).not.toContain('<img');
    expect(html).toContain('&lt;img src=x onerror=&quot;alert(1)&quot;&gt;');
    expect(html).toContain('\\x1b[31m');
    expect(text).not.toMatch(/^## Injected/m);
    expect(text).toContain('>> Refused: nothing was pushed to branch agent/issue-42');
    expect(text).toContain('\\x1b[31m**bold**');
    const attribution = JSON.parse(json) as { publish: { refused: { reason: string }[] } };
    expect(attribution.publish.refused[0].reason).toContain('\\x1b[31m');
    expect(attribution.publish.refused[0].reason).not.toContain('\n');
  });

  test('neither publish.pushed nor publish.refused: no Published part', () => {
    const lines = ledgerOf([]);
    const { md, html, text, json } = forms(lines);
    expect(md).toContain('### Commits the agent authored');
    expect(md).not.toContain('Published');
    expect(html).not.toContain('Published');
    expect(text).not.toContain('Published');
    expect(JSON.parse(json)).toMatchObject({ publish: { pushed: [], refused: [] } });
  });

  test('a publish line with a token-like field shows no token, in no form', () => {
    const lines = ledgerOf([
      [
        'publish.pushed',
        {
          ...sampleEvents['publish.pushed'],
          remote: `https://x-access-token:${TOKEN}@github.com/octo-org/octo-repo.git?t=${TOKEN}`,
          token: TOKEN,
          accessToken: TOKEN,
        },
      ],
      [
        'publish.refused',
        { branch: 'agent/x', reason: 'refused', token: `not revoked: HTTP 500 token=${TOKEN}`, auth: TOKEN },
      ],
    ]);
    // The lines hold it (a forged line can): the summary must not show it.
    expect(lines.filter((l) => l.raw.includes(TOKEN))).toHaveLength(2);
    const { md, html, text, json } = forms(lines);
    for (const out of [md, html, text]) expect(out).not.toContain(TOKEN.slice(4, 16));
    const attribution = JSON.parse(json) as {
      publish: { pushed: Record<string, unknown>[]; refused: Record<string, unknown>[] };
      events: unknown[];
    };
    expect(JSON.stringify(attribution.publish)).not.toContain(TOKEN.slice(4, 16));
    expect(JSON.stringify(attribution.events)).not.toContain(TOKEN.slice(4, 16));
    expect(md).not.toContain('accessToken');
    expect(md).toContain('github.com/octo-org/octo-repo');
    expect(md).toContain('(not a state publish records: not shown)');
    expect(md).toContain("**publish's token for agent/issue-42 was not confirmed revoked");
    expect(md).toContain('NOT confirmed revoked: HTTP 500 token=\\*\\*\\*');
    expect(attribution.publish.pushed[0]).toEqual({
      branch: 'agent/issue-42',
      commit: COMMIT,
      commits: 2,
      repository: 'github.com/octo-org/octo-repo',
      token: '(not a state publish records: not shown)',
    });
  });
});

/** The alerts at the top of a markdown summary: each `> [!LEVEL]` block's level and text. */
function alertsOf(md: string): { level: string; text: string }[] {
  const lines = md.split('\n');
  return lines.flatMap((l, i) => {
    const m = /^> \[!(CAUTION|WARNING)\]$/.exec(l);
    return m ? [{ level: m[1], text: lines[i + 1].replace(/^> /, '') }] : [];
  });
}

describe('the summary: publish at the top', () => {
  test('publish.refused is a warning alert above every table, its reason shown inert, and named in the status line', () => {
    const reason =
      'HEAD is not the agent\'s\n\n## Injected heading\n<img src=x onerror="alert(1)"> \x1b[31m\u202E|col|';
    const lines = ledgerOf([['publish.refused', { branch: 'agent/issue-42\n# hi', commit: COMMIT, reason }]]);
    const { md, html, text } = forms(lines);
    const status = md.split('\n')[2];
    expect(status).toMatch(/^\*\*Cordon: \d+ findings? needs? a human — .*publish refused/);
    const refused = alertsOf(md).filter((a) => a.text.startsWith('publish refused'));
    expect(refused).toHaveLength(1);
    expect(refused[0].level).toBe('WARNING');
    expect(refused[0].text).toContain(
      'publish refused: nothing pushed to agent/issue-42 \\# hi: HEAD is not the agent\'s  \\#\\# Injected heading &lt;img src=x onerror="alert(1)"&gt; \\\\x1b\\[31m\\\\u202e\\|col\\|. See "Published".',
    );
    const lines2 = md.split('\n');
    const at = lines2.findIndex((l) => l.startsWith('> publish refused'));
    expect(at).toBeLessThan(lines2.findIndex((l) => l.startsWith('| ')));
    expect(md).not.toMatch(/^(## Injected|# hi)/m);
    for (const out of [md, html]) expect(out).not.toContain('<img');
    for (const out of [md, html, text]) {
      expect(out).not.toContain('\x1b');
      expect(out).not.toContain('\u202E');
    }
    expect(html).toContain(
      'publish refused: nothing pushed to agent/issue-42 # hi: HEAD is not the agent&#39;s',
    );
    expect(text).toContain('publish refused: nothing pushed to agent/issue-42 # hi:');
    // Its token was revoked: no caution about it.
    expect(alertsOf(md).some((a) => a.text.includes('not confirmed revoked'))).toBe(false);
  });

  test('a push whose token was not confirmed revoked is a caution alert; a confirmed one is none', () => {
    const confirmed = forms(ledgerOf([['publish.pushed', sampleEvents['publish.pushed']]])).md;
    expect(alertsOf(confirmed).some((a) => a.text.startsWith('publish'))).toBe(false);
    expect(confirmed.split('\n')[2]).not.toContain('publish');
    const lines = ledgerOf([
      [
        'publish.pushed',
        { ...sampleEvents['publish.pushed'], token: `not revoked: HTTP 500 token=${TOKEN}` },
      ],
    ]);
    const { md, html, text, json } = forms(lines);
    const alerts = alertsOf(md).filter((a) => a.text.startsWith('publish'));
    expect(alerts).toEqual([
      {
        level: 'CAUTION',
        text: 'publish pushed to agent/issue-42, but its contents: write token was not confirmed revoked (NOT confirmed revoked: HTTP 500 token=\\*\\*\\*): it can write to the repository until it expires. Revoke it from the App\'s settings; see "Published".',
      },
    ]);
    expect(md.split('\n')[2]).toContain("publish's token not confirmed revoked");
    for (const out of [md, html, text, json]) expect(out).not.toContain(TOKEN.slice(4, 16));
    // A push line with no token state at all was not confirmed either.
    const { token: _dropped, ...noToken } = sampleEvents['publish.pushed'];
    void _dropped;
    const none = forms(ledgerOf([['publish.pushed', noToken]])).md;
    expect(alertsOf(none)).toContainEqual({
      level: 'CAUTION',
      text: expect.stringContaining('was not confirmed revoked (no state recorded)') as unknown as string,
    });
  });

  test('a refusal whose minted token was not confirmed revoked is a warning and a caution', () => {
    const lines = ledgerOf([
      [
        'publish.refused',
        { branch: 'main', reason: 'branch main is the default branch', token: 'not revoked: HTTP 502' },
      ],
    ]);
    const alerts = alertsOf(forms(lines).md).filter((a) => a.text.startsWith('publish'));
    // The caution first, as every caution comes before every warning.
    expect(alerts.map((a) => a.level)).toEqual(['CAUTION', 'WARNING']);
    expect(alerts.find((a) => a.level === 'CAUTION')?.text).toContain(
      'publish refused to push to main, but the contents: write token it had minted was not confirmed revoked (NOT confirmed revoked: HTTP 502)',
    );
  });
});
