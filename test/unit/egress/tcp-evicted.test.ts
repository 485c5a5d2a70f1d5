/**
 * TCP clients the DNS proxy closed to make room (its cap, MAX_TCP_CLIENTS in
 * src/fence/proxy.ts) go from the daemon's report into egress.report and the summary, as
 * one line that is there only when there were any.
 */
import { describe, expect, test } from '@jest/globals';
import { join } from 'node:path';
import { toEvent } from '../../../src/actions/egress/report.js';
import { Ledger } from '../../../src/ledger/ledger.js';
import { verdictFor } from '../../../src/ledger/verify.js';
import { SecretRegistry } from '../../../src/platform/mask.js';
import { renderSummaryMarkdown } from '../../../src/summary/render.js';
import { daemonReport } from '../../harness/sample-events.js';
import { tempDir } from '../../harness/tmp.js';

function summaryOf(tcpEvicted: number | undefined): string {
  const ledger = new Ledger(join(tempDir('cordon-evict-'), 'ledger.jsonl'), {
    action: 'egress',
    registry: new SecretRegistry(() => {}),
  });
  ledger.open();
  ledger.append('egress.report', toEvent(daemonReport(tcpEvicted === undefined ? {} : { tcpEvicted })));
  const lines = ledger.read();
  return renderSummaryMarkdown({ lines, verdict: verdictFor(lines) });
}

describe('the DNS proxy’s evicted TCP clients in the report', () => {
  test('the daemon’s count arrives in egress.report; a daemon that did not report it counts 0', () => {
    expect(toEvent(daemonReport({ tcpEvicted: 3 })).dns?.tcpEvicted).toBe(3);
    expect(toEvent(daemonReport()).dns?.tcpEvicted).toBe(0);
  });

  test('the summary says how many were closed and why, only when there were any', () => {
    const md = summaryOf(3);
    expect(md).toContain(
      '3 TCP clients closed to make room for new ones (more were held open at once than the proxy keeps',
    );
    for (const none of [0, undefined]) {
      const quiet = summaryOf(none);
      expect(quiet).toContain("DNS proxy: 0 answered from the proxy's cache, 0 upstream timeouts.");
      expect(quiet).not.toContain('TCP clients closed');
    }
  });
});
