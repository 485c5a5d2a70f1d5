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

  test("attribution.json gives start's tag record as its count, not its 8192 digests twice; the ledger line keeps them", () => {
    const ledger = new Ledger(join(tempDir('cordon-sum-'), 'ledger.jsonl'), {
      action: 'start',
      registry: new SecretRegistry(() => {}),
    });
    const nonce = ledger.open();
    const salt = 'f'.repeat(32);
    // The most start records (src/github/tags.ts): 8192 digests of 16 characters, 128 KiB.
    const digests = Array.from({ length: 8192 }, (_, i) => i.toString(16).padStart(16, '0')).join('');
    const tags = { salt, count: 8192, digests, cut: true };
    appendAny(
      ledger,
      'run.recorded',
      { ...sampleEvents['run.recorded'], workspace: { shaPresent: true, tags } },
      nonce,
    );
    appendAny(ledger, 'token.issued', sampleEvents['token.issued']);
    const lines = ledger.read();
    // The ledger is untouched: its line is what the chain hashes.
    expect(lines.filter((l) => l.raw.includes(digests))).toHaveLength(1);
    const a = buildAttribution({ lines, verdict: verdictFor(lines) }) as {
      run: { repository: string; workspace: { shaPresent: boolean; tags: unknown } };
      events: { type: string; data: { workspace?: { tags: unknown } } }[];
    };
    const json = JSON.stringify(a, null, 2);
    // Not the digests (any 4 KiB of them), not the salt: either copy was 128 KiB.
    expect(json.includes(digests.slice(0, 4096))).toBe(false);
    expect(json.includes(salt)).toBe(false);
    expect(Buffer.byteLength(json)).toBeLessThan(16 * 1024);
    expect(a.run.repository).toBe('octo-org/octo-repo');
    expect(a.run.workspace).toEqual({ shaPresent: true, tags: { count: 8192, cut: true } });
    expect(a.events.find((e) => e.type === 'run.recorded')?.data.workspace).toEqual({
      shaPresent: true,
      tags: { count: 8192, cut: true },
    });
  });

  test('attribution.json: a tag record of another shape (a forged line) is shown as what count it names, nothing else', () => {
    const ledger = new Ledger(join(tempDir('cordon-sum-'), 'ledger.jsonl'), {
      action: 'start',
      registry: new SecretRegistry(() => {}),
    });
    const nonce = ledger.open();
    const huge = 'x'.repeat(64 * 1024);
    appendAny(ledger, 'run.recorded', { workspace: { shaPresent: true, tags: huge } }, nonce);
    appendAny(ledger, 'run.recorded', {
      workspace: { shaPresent: false, tags: { count: '7', cut: 'yes', digests: huge } },
    });
    appendAny(ledger, 'run.recorded', { workspace: { shaPresent: true } });
    const lines = ledger.read();
    const a = buildAttribution({ lines, verdict: verdictFor(lines) }) as {
      events: { data: { workspace?: unknown } }[];
    };
    expect(JSON.stringify(a).includes(huge)).toBe(false);
    expect(a.events.map((e) => e.data.workspace)).toEqual([
      { shaPresent: true, tags: {} },
      { shaPresent: false, tags: {} },
      { shaPresent: true },
    ]);
  });
});
