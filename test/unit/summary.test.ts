import { describe, expect, test } from '@jest/globals';
import { join } from 'node:path';
import { Ledger } from '../../src/ledger/ledger.js';
import { SecretRegistry } from '../../src/platform/mask.js';
import { buildAttribution, renderSummaryHtml, renderSummaryMarkdown } from '../../src/summary/render.js';
import { verdictFor } from '../../src/ledger/verify.js';
import { sampleEvents } from '../harness/sample-events.js';
import { appendAny } from '../harness/ledger.js';
import { tempDir } from '../harness/tmp.js';

function ledgerWithEverything(extra: Record<string, unknown>[] = []): Ledger {
  const ledger = new Ledger(join(tempDir('cordon-sum-'), 'ledger.jsonl'), {
    action: 'test',
    registry: new SecretRegistry(() => {}),
  });
  const nonce = ledger.open();
  // ledger.tampered would (rightly) turn the verdict to altered: see test/unit/run/verify.test.ts.
  // run's own check closes the agent's window: it is written as run.
  const asRun = new Ledger(ledger.path, { action: 'run', registry: new SecretRegistry(() => {}) });
  for (const [type, data] of Object.entries(sampleEvents).filter(([t]) => t !== 'ledger.tampered'))
    appendAny(type === 'ledger.verified' ? asRun : ledger, type, data, nonce);
  for (const e of extra) appendAny(ledger, 'custom.thing', e);
  return ledger;
}

describe('summary', () => {
  test('renders every event type in its section', () => {
    const lines = ledgerWithEverything([{ note: 'unknown event' }]).read();
    const md = renderSummaryMarkdown({ lines, verdict: verdictFor(lines) });
    for (const heading of [
      'Who the agent was',
      'What the agent was allowed',
      'What the agent touched',
      'What was blocked',
      'Commits the agent authored',
      'Other events',
    ]) {
      expect(md).toContain(`### ${heading}`);
    }
    expect(md).toContain('Record intact');
    expect(md).toContain('cordon-agent\\[bot\\]');
    expect(md).toContain('arn:aws:sts::123456789012:assumed-role/agent/cordon-4242-1-agent');
    expect(md).toContain('exfil.evil.test');
    expect(md).toContain('203.0.113.9');
    expect(md).toContain('Rebinding attempt: name answered inward');
    expect(md).toMatch(
      /imds\.wild\.test \| 169\.254\.169\.254 \(metadata\) \| 2 \| the agent's user \| refused/,
    );
    expect(md).toContain('IMPERSONATION');
    expect(md).toContain('NPM\\_TOKEN');
    expect(md).toContain('notes.txt:3');
    expect(md).toContain('**Not read by the leak scan: bomb.gz (over 67108864 decompressed bytes).**');
    expect(md).toContain('custom.thing');
    expect(md).toContain('GitHub token revoked (confirmed: HTTP 401)');
    expect(md).toContain(
      "**DNS proxy: 7 answered from the proxy's cache, 0 upstream timeouts, 1 malformed queries refused, 2 answers refused (SERVFAIL) because the firewall's sets could not be updated.**",
    );
  });

  test('escapes untrusted strings so they cannot break tables or inject HTML', () => {
    const lines = ledgerWithEverything().read();
    const md = renderSummaryMarkdown({ lines, verdict: verdictFor(lines) });
    expect(md).not.toContain('<script>');
    expect(md).toContain('&lt;script&gt;');
    expect(md).toContain('\\| pipe');
    const html = renderSummaryHtml({ lines, verdict: verdictFor(lines) });
    expect(html).not.toContain('<script>');
  });

  test('an altered ledger is reported at the top, not rendered as fine', () => {
    const lines = ledgerWithEverything().read();
    lines[3] = { ...lines[3], hash: 'x' };
    const md = renderSummaryMarkdown({ lines, verdict: verdictFor(lines) });
    expect(md.indexOf('RECORD ALTERED')).toBeLessThan(md.indexOf('### Who'));
    expect(md).toContain('line 5 does not chain');
  });

  test('a huge ledger degrades under 1 MiB and keeps every section', () => {
    const many = Array.from({ length: 5000 }, (_, i) => ({
      name: `host-${i}.example.test`,
      queries: i,
      addresses: ['192.0.2.1'],
    }));
    const ledger = ledgerWithEverything();
    ledger.append('egress.report', {
      policy: 'block',
      allowed: many,
      blockedNames: many.map((m) => ({ name: m.name, queries: 1 })),
      blockedDestinations: [],
    });
    const lines = ledger.read();
    const md = renderSummaryMarkdown({ lines, verdict: verdictFor(lines) }, 200 * 1024);
    expect(Buffer.byteLength(md)).toBeLessThanOrEqual(200 * 1024);
    expect(md).toContain('more row(s) not shown here');
    expect(md).toContain('### Commits the agent authored');
  });

  test('attribution.json carries identities, egress and commits', () => {
    const lines = ledgerWithEverything().read();
    const a = buildAttribution({ lines, verdict: verdictFor(lines) }) as {
      identities: { github: unknown[] };
      commits: unknown[];
      verdict: { status: string };
    };
    expect(a.identities.github).toHaveLength(1);
    expect(a.commits).toHaveLength(2);
    expect(a.verdict.status).toBe('intact');
  });
});
