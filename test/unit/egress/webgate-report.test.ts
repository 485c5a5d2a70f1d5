/**
 * The agent's web gate's counts go from the daemon's report into egress.report and the
 * summary, as one line that is there only when the daemon had a gate (block mode).
 */
import { describe, expect, test } from '@jest/globals';
import { join } from 'node:path';
import { toEvent } from '../../../src/actions/egress/report.js';
import { Ledger } from '../../../src/ledger/ledger.js';
import { verdictFor } from '../../../src/ledger/verify.js';
import { SecretRegistry } from '../../../src/platform/mask.js';
import { renderSummaryMarkdown } from '../../../src/summary/render.js';
import type { DaemonReport } from '../../../src/rootd/protocol.js';
import { daemonReport } from '../../harness/sample-events.js';
import { tempDir } from '../../harness/tmp.js';

function summaryOf(webGate: DaemonReport['webGate']): string {
  const ledger = new Ledger(join(tempDir('cordon-gate-'), 'ledger.jsonl'), {
    action: 'egress',
    registry: new SecretRegistry(() => {}),
  });
  ledger.open();
  ledger.append('egress.report', toEvent(daemonReport(webGate ? { webGate } : {})));
  const lines = ledger.read();
  return renderSummaryMarkdown({ lines, verdict: verdictFor(lines) });
}

describe("the agent's web gate in the report", () => {
  test('the daemon’s counts arrive in egress.report; none from a daemon without a gate', () => {
    expect(toEvent(daemonReport({ webGate: { passed: 4, refused: 2, overCap: 1 } })).webGate).toEqual({
      passed: 4,
      refused: 2,
      overCap: 1,
    });
    expect(toEvent(daemonReport()).webGate).toBeUndefined();
  });

  test('the summary says how many went through and how many were reset, only with a gate', () => {
    expect(summaryOf({ passed: 4, refused: 2, overCap: 1 })).toContain(
      '**Web gate: 4 agent connections on ports 80/443 let through by the name they asked for, 2 reset (another name, none, or an address not answered for it), 1 reset because the gate held as many as it keeps at once.**',
    );
    expect(summaryOf({ passed: 4, refused: 0, overCap: 0 })).toContain(
      'Web gate: 4 agent connections on ports 80/443 let through by the name they asked for, 0 reset (another name, none, or an address not answered for it).',
    );
    expect(summaryOf(undefined)).not.toContain('Web gate');
  });
});
