/** The summary as a reviewer reads it: the status line and alerts first, each finding in its section, nothing forged. */
import { describe, expect, test } from '@jest/globals';
import { join } from 'node:path';
import { Ledger, type LedgerLine } from '../../src/ledger/ledger.js';
import type { EventTypes } from '../../src/ledger/events.js';
import { SecretRegistry } from '../../src/platform/mask.js';
import { commandPreview } from '../../src/platform/redact.js';
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

type Overrides = Partial<{ [K in keyof EventTypes]: EventTypes[K] | null }>;

/** Every sample event (ledger.tampered left out: it alters the verdict), with some replaced or dropped. */
function ledgerLines(over: Overrides = {}): LedgerLine[] {
  const ledger = new Ledger(join(tempDir('cordon-find-'), 'ledger.jsonl'), {
    action: 'test',
    registry: new SecretRegistry(() => {}),
  });
  const nonce = ledger.open();
  const asRun = new Ledger(ledger.path, { action: 'run', registry: new SecretRegistry(() => {}) });
  const events = { ...sampleEvents, ...over } as Record<string, object | null>;
  for (const [type, data] of Object.entries(events))
    if (data && type !== 'ledger.tampered')
      appendAny(type === 'ledger.verified' ? asRun : ledger, type, data, nonce);
  return ledger.read();
}

const md = (over: Overrides = {}): string => {
  const lines = ledgerLines(over);
  return renderSummaryMarkdown({ lines, verdict: verdictFor(lines) });
};

/** The lines of a markdown table, by its header's first cell. */
function tableRows(text: string, firstHeader: string): string[] {
  const lines = text.split('\n');
  const at = lines.findIndex((l) => l.startsWith(`| ${firstHeader} |`));
  expect(at).toBeGreaterThanOrEqual(0);
  const rows: string[] = [];
  for (let i = at + 2; i < lines.length && lines[i].startsWith('|'); i++) rows.push(lines[i]);
  return rows;
}

/** Cells of a table row; `\|` is an escaped pipe inside a cell. */
const cells = (row: string): number => row.split(/(?<!\\)\|/).length - 2;

const quietRun: Overrides = {
  'run.finished': { ...sampleEvents['run.finished'], leaks: [], leaksNotScanned: undefined },
  'commits.observed': {
    ...sampleEvents['commits.observed'],
    commits: [sampleEvents['commits.observed'].commits[0]],
  },
  'egress.report': {
    ...sampleEvents['egress.report'],
    blockedNames: [],
    blockedDestinations: [],
    rebinding: [],
  },
  'egress.tampered': null,
  'broker.stopped': null,
  'publish.refused': null,
};

describe('summary findings', () => {
  test('one status line opens it, and every finding is an alert above every table', () => {
    const text = md();
    const lines = text.split('\n');
    expect(lines[2]).toMatch(
      /^\*\*Cordon: \d+ findings need a human — record intact, 1 impersonating commit, 1 secret left in the workspace, .*1 name, 1 destination, 1 name answering inward blocked/,
    );
    const alerts = lines.flatMap((l, i) => (/^> \[!(CAUTION|WARNING)\]$/.test(l) ? [i] : []));
    expect(lines.filter((l) => l === '> [!CAUTION]')).toHaveLength(3); // impersonation, leak, tampering
    expect(text).toContain('> [!WARNING]\n> 1 name, 1 destination, 1 name answering inward blocked');
    const firstTable = lines.findIndex((l) => l.startsWith('| '));
    expect(Math.max(...alerts)).toBeLessThan(firstTable);
    // The leak is in a section of its own, not among what was blocked.
    const blocked = text.slice(text.indexOf('### What was blocked'), text.indexOf('### Secrets left behind'));
    expect(blocked).not.toContain('NPM\\_TOKEN');
    expect(text.indexOf('### Secrets left behind')).toBeGreaterThan(0);
    expect(text.slice(text.indexOf('### Secrets left behind'))).toContain('notes.txt:3');
  });

  test('a quiet run says so in one line, with no alert', () => {
    const text = md(quietRun);
    expect(text.split('\n')[2]).toBe(
      '**Cordon: nothing needs a human — record intact, nothing blocked, no secret left behind**',
    );
    expect(text).not.toContain('> [!');
  });

  test('an altered record, a shared runner user and an unconfirmed revocation are each an alert', () => {
    const lines = ledgerLines({
      ...quietRun,
      'run.started': {
        ...sampleEvents['run.started'],
        user: { mode: 'runner', fallback: true, reason: 'no root and no passwordless sudo' },
      },
      'token.revoked': { status: 'failed', detail: 'HTTP 500' },
    });
    lines[3] = { ...lines[3], hash: 'x' };
    const text = renderSummaryMarkdown({ lines, verdict: verdictFor(lines) });
    expect(text.split('\n')[2]).toMatch(
      /^\*\*Cordon: 3 findings need a human — record ALTERED, GitHub token revocation not confirmed, the agent shared the runner's user\*\*$/,
    );
    expect(text).toContain('> [!CAUTION]\n> RECORD ALTERED while the agent ran');
    expect(text).toContain(
      "> [!WARNING]\n> The agent's command ran as the runner user, because no root and no passwordless sudo",
    );
    expect(text).toContain('> [!WARNING]\n> The GitHub token was NOT revoked (failed: HTTP 500)');
    expect(text.indexOf('### The record')).toBeLessThan(text.indexOf('### Who'));
  });

  test('a secret in DNS names, names run could not check, and names marked by something else are each a caution', () => {
    const marked = {
      name: '[22 chars carrying TOKEN]',
      queries: 2,
      carriesSecret: 'TOKEN',
      identity: 'agent' as const,
    };
    const found = md({
      ...quietRun,
      'run.finished': {
        ...sampleEvents['run.finished'],
        leaks: [],
        leaksNotScanned: undefined,
        secretsInNames: [{ secret: 'TOKEN', names: 1, queries: 2, identity: 'agent', forwarded: false }],
      },
      'egress.report': { ...sampleEvents['egress.report'], blockedNames: [marked], blockedDestinations: [] },
    });
    expect(found).toContain(
      "> [!CAUTION]\n> The agent's command put secret TOKEN into 1 DNS name (2 queries)",
    );
    // Markdown-escaped, as every cell is.
    expect(found).toContain('| \\[22 chars carrying TOKEN\\] |');
    expect(found).not.toContain('hidden without a finding');

    // Run found none, yet a name is marked: someone else marked it (the command under user: runner).
    const forged = md({
      ...quietRun,
      'egress.report': { ...sampleEvents['egress.report'], blockedNames: [marked], blockedDestinations: [] },
    });
    expect(forged).toContain(
      '> [!CAUTION]\n> 1 refused DNS name is shown as carrying a secret that run did not find',
    );

    const unchecked = md({
      ...quietRun,
      'run.finished': {
        ...sampleEvents['run.finished'],
        leaks: [],
        leaksNotScanned: undefined,
        dnsNamesNotChecked: { names: 40, why: "the proxy's name table was full, so they were not recorded" },
      },
    });
    expect(unchecked).toContain(
      "> [!CAUTION]\n> 40 DNS names the command asked could not be checked for its secrets (the proxy's name table was full",
    );
  });

  test('a secret in the name of a process the fence reported is a caution', () => {
    const text = md({
      ...quietRun,
      'run.finished': {
        ...sampleEvents['run.finished'],
        leaks: [],
        leaksNotScanned: undefined,
        secretsInProcessNames: [{ secret: 'TOKEN', processes: 1 }],
      },
    });
    expect(text).toContain('> [!CAUTION]\n> The command named 1 process the fence reported');
    expect(text).toContain('secret TOKEN in a process name');
  });

  test('a secret printed behind terminal escapes or invisible characters is a caution', () => {
    const text = md({
      ...quietRun,
      'run.finished': {
        ...sampleEvents['run.finished'],
        leaks: [],
        leaksNotScanned: undefined,
        secretsHiddenInOutput: ['TOKEN'],
      },
    });
    expect(text).toContain('> [!CAUTION]\n> The command printed secret TOKEN with terminal escape sequences');
    expect(text).toContain('secret TOKEN hidden in the output');
  });

  test('commits past the list while the agent had its own identity are a caution; without one they are not', () => {
    const cut = (verdict: 'agent' | 'unattributed'): string =>
      md({
        ...quietRun,
        'commits.observed': {
          ...sampleEvents['commits.observed'],
          commits: [{ ...sampleEvents['commits.observed'].commits[0], verdict }],
          truncated: true,
        },
      });
    const withIdentity = cut('agent');
    expect(withIdentity).toContain(
      '> [!CAUTION]\n> More commits were made than Cordon lists while the agent had an identity of its own',
    );
    expect(withIdentity.split('\n')[2]).toMatch(/commits not classified/);
    // Said once: the alert, not also the plain line under the commits table.
    expect(withIdentity).not.toContain('More commits were made than listed');
    const without = cut('unattributed');
    expect(without).not.toContain('> [!');
    expect(without).toContain('More commits were made than listed');
  });

  test('commits looked for only in part (a bound reached) are a caution, named in the commits section too', () => {
    const why = '10001 reflogs changed in the run: those past the first 10000 were not read';
    const text = md({
      ...quietRun,
      'commits.observed': { ...sampleEvents['commits.observed'], partial: [why] },
    });
    expect(text).toContain(
      `> [!CAUTION]\n> The commits made in this run were looked for only in part, so a commit with a human author or committer may not be listed: ${why}.`,
    );
    expect(text.split('\n')[2]).toMatch(/commits partly checked/);
    expect(text).toContain(`**The commits were looked for only in part: ${why}.**`);
    expect(md({ ...quietRun })).not.toContain('looked for only in part');
  });

  test('hostile: impersonating commits with huge author names do not push the other alerts past the summary limit', () => {
    // 300 commits of the agent's, each named by 4000 characters it chose: 1.2 MB of names.
    const human = sampleEvents['commits.observed'].commits[1];
    const commits = Array.from({ length: 300 }, (_, i) => ({
      ...human,
      sha: (0x1000 + i).toString(16).padStart(40, '0'),
      author: `Mona ${'A'.repeat(4000)}`,
    }));
    const text = md({ 'commits.observed': { ...sampleEvents['commits.observed'], commits } });
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(1024 * 1024);
    const lines = text.split('\n');
    expect(lines[2]).toMatch(/300 impersonating commits, 1 secret left in the workspace/);
    // Every caution and warning the full ledger holds is still an alert, above every table.
    expect(text).toContain(
      '> [!CAUTION]\n> 300 commits made while the agent had an identity of its own claim',
    );
    expect(text).toContain('> [!CAUTION]\n> 1 secret (');
    expect(text).toContain('> [!CAUTION]\n> The egress fence was tampered with');
    expect(text).toContain('> [!WARNING]\n> 1 name, 1 destination, 1 name answering inward blocked');
    const alert = lines.find((l) => l.startsWith('> 300 commits')) ?? '';
    expect(alert.length).toBeLessThan(2000);
    expect(alert).toContain('and 295 more');
    // The commits table is cut to fit, with a note, never dropped.
    expect(text).toContain('| Commit | Author |');
  });

  test('in block mode, a paste-ready allowlist names who asked; a process already gone is named by its user', () => {
    const text = md({
      'run.started': {
        ...sampleEvents['run.started'],
        user: { mode: 'agent', name: 'cordon-agent-abc123', uid: 61127, via: 'root' },
      },
      'egress.report': {
        ...sampleEvents['egress.report'],
        blockedNames: [
          {
            name: 'exfil.evil.test',
            queries: 2,
            process: 'uid 61127 (process already gone)',
            identity: 'agent',
          },
          { name: 'pypi.org', queries: 1, process: "pip (pid 77, under run's command)", identity: 'agent' },
        ],
        blockedDestinations: [
          { address: '203.0.113.50', protocol: 'tcp', port: 80, packets: 1, identity: 'agent' },
        ],
      },
    });
    expect(text).toContain(
      "exfil.evil.test | 2 | the agent's user cordon-agent-abc123 (uid 61127; process already gone) | refused",
    );
    expect(text).toContain("203.0.113.50 | tcp/80 | 1 | the agent's user |");
    expect(text).toContain(
      [
        '```yaml',
        'allowed-domains: |',
        '  registry.npmjs.org  # allowed already',
        '  *.githubusercontent.com  # allowed already',
        "  exfil.evil.test  # blocked; asked by the agent's user cordon-agent-abc123 (uid 61127; process already gone)",
        "  pypi.org  # blocked; asked by pip (pid 77, under run's command)",
        '```',
      ].join('\n'),
    );
  });

  test('columns empty in every row are left out', () => {
    const text = md();
    // No co-author on any commit, no managed policy on the GitHub row: the co-authors column goes.
    expect(text).toContain('| Commit | Author | Committer | Signature | Verdict | Subject |');
    for (const row of tableRows(text, 'Commit')) expect(cells(row)).toBe(6);
  });

  test("the agent's command is shown scrubbed, on one line of at most 100 characters, with its hash", () => {
    const registry = new SecretRegistry(() => {});
    const secret = 'hunter2-very-secret-value';
    registry.register(secret, { name: 'DB_PASSWORD' });
    const command = `./agent --db "${secret}" --gh ghp_${'A1b2'.repeat(9)}\nnpm test -- ${'x'.repeat(200)}`;
    const recorded = commandPreview(command, (t) => registry.scrub(t));
    expect(recorded).not.toContain(secret);
    expect(recorded).not.toContain('A1b2A1b2');
    const text = md({ 'run.started': { ...sampleEvents['run.started'], command: recorded } });
    const row = tableRows(text, 'Command')[0];
    expect(row).toContain('./agent --db "\\*\\*\\*" --gh \\*\\*\\* ⏎ npm test');
    expect(row).toContain('…');
    expect(row).toContain('ffffffffffffffff');
    const shown = row
      .split(/(?<!\\)\|/)[1]
      .trim()
      .replace(/\\(.)/g, '$1');
    expect(shown.length).toBeLessThanOrEqual(100);
  });

  test('hostile: a secret in the command line or a blocked name never reaches the summary', () => {
    const value = 'sk-live-9f8e7d6c5b4a39281706';
    const registry = new SecretRegistry(() => {});
    registry.register(value, { name: 'API_KEY' });
    const hex = Buffer.from(value).toString('hex');
    // A forged or older line carrying the value raw: the shapes and the caller's registry take it out.
    const lines = ledgerLines({
      'run.started': {
        ...sampleEvents['run.started'],
        command: `curl -H "Authorization: Bearer ${value}" x`,
      },
      'egress.report': {
        ...sampleEvents['egress.report'],
        blockedNames: [
          { name: `${hex.slice(0, 40)}.${hex.slice(40)}.exfil.evil.test`, queries: 1 },
          { name: `${value}.evil.test`, queries: 1 },
        ],
        rebinding: [
          {
            name: `${value}.rebind.test`,
            answers: 1,
            addresses: [{ address: '127.0.0.1', kind: 'loopback' }],
          },
        ],
      },
    });
    const input = { lines, verdict: verdictFor(lines), scrub: (t: string) => registry.scrub(t) };
    for (const out of [renderSummaryMarkdown(input), renderSummaryHtml(input), renderSummaryText(input)]) {
      expect(out).not.toContain(value);
      expect(out).not.toContain(hex.slice(0, 16));
      expect(out.replace(/\\/g, '')).not.toContain(value);
    }
    // Without the registry, the shapes alone still take the names' data-carrying labels out.
    const bare = renderSummaryMarkdown({ lines, verdict: verdictFor(lines) });
    expect(bare.replace(/\\/g, '')).not.toContain(value);
    expect(bare).not.toContain(hex.slice(0, 16));
    expect(bare).toContain('\\[40 chars\\].\\[16 chars\\].exfil.evil.test');
  });

  test('hostile: a secret-looking label exfiltrated as a DNS name is not in attribution.json, as in the summary', () => {
    // The agent smuggles a value it read (no registry knows it) out in the labels of names the fence refuses.
    const value = 'ghs_Q7vX2mK9pL4nR8sT1wY6zB3cD5fH0jA';
    const hex = Buffer.from(value).toString('hex');
    const report = {
      ...sampleEvents['egress.report'],
      blockedNames: [
        { name: `${value.toLowerCase()}.evil.test`, queries: 1 },
        { name: `${hex.slice(0, 40)}.${hex.slice(40)}.exfil.evil.test`, queries: 2 },
      ],
      rebinding: [
        {
          name: `${value.toLowerCase()}.rebind.test`,
          answers: 1,
          addresses: [{ address: '127.0.0.1', kind: 'loopback' as const }],
        },
      ],
    };
    const lines = ledgerLines({ 'egress.report': report });
    // report also renders what the daemon has seen so far, not yet in the ledger.
    const pending = [
      { ...lines.find((l) => l.event?.type === 'egress.report')!.event!, data: { ...report } },
    ];
    const json = JSON.stringify(buildAttribution({ lines, verdict: verdictFor(lines), pending }));
    expect(json.toLowerCase()).not.toContain(value.toLowerCase());
    expect(json).not.toContain(hex.slice(0, 16));
    expect(json).not.toContain(hex.slice(40));
    // Shown as in the summary, everywhere attribution.json holds the report.
    const a = JSON.parse(json) as {
      egress: { reports: { blockedNames: { name: string }[]; rebinding: { name: string }[] }[] };
      events: { type: string; data: { blockedNames: { name: string }[] } }[];
      pending: { data: { blockedNames: { name: string }[] } }[];
    };
    const shown = ['[35 chars].evil.test', '[40 chars].[30 chars].exfil.evil.test'];
    expect(a.egress.reports.flatMap((r) => r.blockedNames.map((b) => b.name))).toEqual([...shown, ...shown]);
    expect(a.egress.reports[0].rebinding.map((r) => r.name)).toEqual(['[35 chars].rebind.test']);
    expect(a.events.find((e) => e.type === 'egress.report')?.data.blockedNames.map((b) => b.name)).toEqual(
      shown,
    );
    expect(a.pending[0].data.blockedNames.map((b) => b.name)).toEqual(shown);
    // What the agent could not have put data into stays as it is.
    expect(json).toContain(sampleEvents['egress.report'].allowed[0].name);
  });

  test('hostile: a secret in the labels of a name reached under an allowed wildcard is in neither the summary nor attribution.json', () => {
    // The agent looks up <value>.githubusercontent.com: allowed by the listed wildcard, so it
    // is a reached name (with an answer or not), and the labels left of the wildcard are its.
    const value = 'ghs_Q7vX2mK9pL4nR8sT1wY6zB3cD5fH0jA'.toLowerCase();
    const report = {
      ...sampleEvents['egress.report'],
      allowed: [
        ...sampleEvents['egress.report'].allowed,
        { name: `${value}.githubusercontent.com`, queries: 1, addresses: [] },
        { name: 'objects.githubusercontent.com', queries: 4, addresses: ['185.199.108.133'] },
        // Listed by nobody (audit mode): every label that could carry data is redacted.
        { name: `${value}.audit.test`, queries: 1, addresses: [] },
      ],
    };
    const lines = ledgerLines({ 'egress.report': report });
    const md = renderSummaryMarkdown({ lines, verdict: verdictFor(lines) });
    const json = JSON.stringify(buildAttribution({ lines, verdict: verdictFor(lines) }));
    // Markdown escapes the brackets: read it without its backslashes.
    for (const out of [md.replace(/\\/g, ''), json]) {
      expect(out.toLowerCase()).not.toContain(value);
      expect(out).toContain('[35 chars].githubusercontent.com');
      expect(out).toContain('[35 chars].audit.test');
      // Listed names, and short labels under a wildcard, are shown as they are.
      expect(out).toContain('registry.npmjs.org');
      expect(out).toContain('objects.githubusercontent.com');
    }
  });

  test('hostile: markdown in a name, a commit message or an author cannot forge an alert or a table row', () => {
    const evil = 'x | y | z\n> [!NOTE]\n> all clear `code` <img src=x onerror=alert(1)> <!-- ';
    const text = md({
      'commits.observed': {
        ...sampleEvents['commits.observed'],
        commits: sampleEvents['commits.observed'].commits.map((c) => ({
          ...c,
          author: evil,
          subject: evil,
          coAuthors: [evil],
        })),
      },
      'egress.report': {
        ...sampleEvents['egress.report'],
        blockedNames: [{ name: evil, queries: 1, process: evil }],
      },
    });
    const lines = text.split('\n');
    expect(
      lines.filter((l) => l.startsWith('>')).every((l) => /^> (\[!(CAUTION|WARNING)\]$|[^[])/.test(l)),
    ).toBe(true);
    expect(text).not.toContain('[!NOTE]');
    expect(text).not.toMatch(/<img|<!--/);
    for (const row of tableRows(text, 'Commit')) expect(cells(row)).toBe(7);
    for (const row of tableRows(text, 'Name')) expect(cells(row)).toBe(4);
    // A name that is no domain name is not offered for the allowlist, and its process is no YAML line.
    const yaml = text.slice(text.indexOf('```yaml'), text.indexOf('```', text.indexOf('```yaml') + 3));
    expect(yaml).not.toContain('all clear');
    const html = renderSummaryHtml({ lines: ledgerLines(), verdict: verdictFor(ledgerLines()) });
    expect(html).not.toContain('<script>');
  });

  test('hostile: a bidi override or isolate in a commit author cannot turn a finding around', () => {
    // A commit's author is UTF-8 as the agent wrote it: a right-to-left override reverses
    // the rest of the alert as shown ("tnega eht yb" reads "by the agent").
    const author = 'Mona \u202etnega eht yb\u2066';
    const lines = ledgerLines({
      'commits.observed': {
        ...sampleEvents['commits.observed'],
        commits: sampleEvents['commits.observed'].commits.map((c) => ({
          ...c,
          author,
          subject: 's\u2028- ok',
        })),
      },
    });
    const text = renderSummaryMarkdown({ lines, verdict: verdictFor(lines) });
    expect(text).not.toMatch(/[\r\u2028\u2029\u202a-\u202e\u2066-\u2069]/);
    expect(text).toContain('Mona \\\\u202etnega eht yb\\\\u2066');
    const html = renderSummaryHtml({ lines, verdict: verdictFor(lines) });
    expect(html).not.toMatch(/[\u202a-\u202e\u2066-\u2069]/);
    expect(html).toContain('Mona \\u202etnega eht yb\\u2066');
  });
});

describe('summary: AWS credentials no session policy narrowed', () => {
  test('unscoped credentials (none given, or allow: *) are an alert at the top and UNSCOPED in the allowed table', () => {
    const scoped = md(quietRun);
    expect(scoped).not.toContain('UNSCOPED');
    const issued = { ...sampleEvents['credentials.issued'], statements: [], managedPolicies: [] };
    const none = md({ ...quietRun, 'credentials.issued': { ...issued, unscoped: 'default' } });
    expect(none.split('\n')[2]).toContain('AWS credentials UNSCOPED');
    expect(none).toContain(
      'AWS credentials UNSCOPED: arn:aws:iam::123456789012:role/agent was handed out with no session policy',
    );
    expect(none).toContain('(no session policy was given)');
    const row = tableRows(none, 'Kind').find((r) => r.startsWith('| AWS |'));
    expect(row).toContain('UNSCOPED: every permission the role has (no session policy)');
    const chosen = md({ ...quietRun, 'credentials.issued': { ...issued, unscoped: 'chosen' } });
    // Markdown escapes the star.
    expect(chosen).toContain("the workflow chose this with allow: '\\*'");
    expect(tableRows(chosen, 'Kind').find((r) => r.startsWith('| AWS |'))).toContain("allow: '\\*'");
  });

  test("the broker's credentials: its first issuance stands for them in the allowed table, and unscoped ones are an alert", () => {
    const first = {
      ...sampleEvents['credentials.refreshed'],
      role: 'arn:aws:iam::123456789012:role/brokered',
      issuance: 1,
      reason: 'start' as const,
      unscoped: 'chosen' as const,
    };
    const text = md({ ...quietRun, 'credentials.refreshed': first });
    const row = tableRows(text, 'Kind').find((r) => r.startsWith('| AWS (broker) |'));
    expect(row).toContain('arn:aws:iam::123456789012:role/brokered');
    expect(row).toContain('UNSCOPED');
    expect(text.split('\n')[2]).toContain('AWS credentials UNSCOPED');
    const scopedFirst = {
      ...first,
      unscoped: undefined,
      statements: [{ effect: 'Allow', actions: ['s3:GetObject'], resources: ['arn:aws:s3:::b/*'] }],
    };
    const scopedText = md({ ...quietRun, 'credentials.refreshed': scopedFirst });
    expect(tableRows(scopedText, 'Kind').find((r) => r.startsWith('| AWS (broker) |'))).toContain(
      'Allow s3:GetObject on arn:aws:s3:::b/\\*',
    );
    expect(scopedText).not.toContain('UNSCOPED');
  });
});
