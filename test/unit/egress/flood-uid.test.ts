/**
 * The report's drops per local user (firewall.ts DNS_FLOOD_PER_UID): the daemon's list
 * reaches the ledger event, the annotation and the summary, naming the uid that flooded.
 */
import { describe, expect, test } from '@jest/globals';
import { floodNote, toEvent } from '../../../src/actions/egress/report.js';
import type { DaemonReport } from '../../../src/rootd/protocol.js';
import { blockedSection } from '../../../src/summary/blocked.js';
import { daemonReport, egressReportLine } from '../../harness/sample-events.js';

const report = (refusals: DaemonReport['refusals']): DaemonReport => daemonReport({ refusals });

describe('DNS dropped per uid', () => {
  test('the uid over its rate is in the event, the annotation and the summary, and makes it a flood', () => {
    const event = toEvent(
      report({
        total: 9000,
        peakPerSecond: 900,
        unanswered: 0,
        kernelDropped: 250000,
        droppedByUid: [
          { uid: 61007, dropped: 249990 },
          { uid: 1001, dropped: 10 },
        ],
        sources: [],
      }),
    );
    expect(event.refusals?.flood).toBe(true);
    expect(event.refusals?.droppedByUid).toEqual([
      { uid: 61007, dropped: 249990 },
      { uid: 1001, dropped: 10 },
    ]);
    expect(floodNote(event.refusals!)).toContain("over a user's rate: uid 61007 (249990), uid 1001 (10)");
    const text = JSON.stringify(blockedSection([egressReportLine(event)]));
    expect(text).toContain('User over its DNS rate');
    expect(text).toContain('uid 61007');
    expect(text).toContain('249990');
  });

  test('without drops per uid the report and summary stay as before', () => {
    const event = toEvent(
      report({ total: 3, peakPerSecond: 1, unanswered: 0, kernelDropped: 0, sources: [] }),
    );
    expect(event.refusals).not.toHaveProperty('droppedByUid');
    expect(event.refusals?.flood).toBe(false);
    expect(floodNote(event.refusals!)).not.toContain("user's rate");
    expect(JSON.stringify(blockedSection([egressReportLine(event)]))).not.toContain('User over its DNS rate');
  });
});
