/** The summary's HTML page laid out by a real browser: the alerts stand above every table. */
import { describe, expect, test } from '@jest/globals';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ledger } from '../../src/ledger/ledger.js';
import { SecretRegistry } from '../../src/platform/mask.js';
import { renderSummaryHtml } from '../../src/summary/render.js';
import { renderHtmlPage } from '../../src/summary/doc.js';
import { verdictFor } from '../../src/ledger/verify.js';
import { sampleEvents } from '../harness/sample-events.js';
import { appendAny } from '../harness/ledger.js';
import { tempDir } from '../harness/tmp.js';
import { chromiumOrSkip, expectAlertsAboveTables, layout } from '../harness/chromium.js';

describe('the summary page in headless Chromium', () => {
  test('the alert boxes stand above every table', async () => {
    const chromium = chromiumOrSkip();
    if (!chromium) return;
    const dir = tempDir('cordon-page-');
    const ledger = new Ledger(join(dir, 'ledger.jsonl'), {
      action: 'test',
      registry: new SecretRegistry(() => {}),
    });
    const nonce = ledger.open();
    for (const [type, data] of Object.entries(sampleEvents))
      if (type !== 'ledger.tampered' && type !== 'ledger.verified') appendAny(ledger, type, data, nonce);
    const lines = ledger.read();
    const page = join(dir, 'summary.html');
    writeFileSync(page, renderSummaryHtml({ lines, verdict: verdictFor(lines) }));
    const boxes = await layout(chromium, page);
    // Without run's own check (ledger.verified) the record is altered: its section and table come
    // right after the alerts. Altered, impersonation, leak, tampering (caution), blocked and
    // what the leak scan could not read, and publish refused (warning).
    expect(boxes.alerts).toHaveLength(7);
    expectAlertsAboveTables(boxes);
  }, 90000);

  test('the check sees an alert below a table', async () => {
    const chromium = chromiumOrSkip();
    if (!chromium) return;
    const page = join(tempDir('cordon-page-'), 'wrong.html');
    writeFileSync(
      page,
      renderHtmlPage('wrong order', [
        { kind: 'table', headers: ['a'], rows: [['1']] },
        { kind: 'alert', level: 'warning', text: 'below the table' },
      ]),
    );
    const boxes = await layout(chromium, page);
    expect(boxes.alerts).toHaveLength(1);
    expect(() => expectAlertsAboveTables(boxes)).toThrow();
  }, 90000);
});
