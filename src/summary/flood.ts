/** The summary's lines for a flood of refused DNS names (threshold in docs/egress.md). */
import type { EgressReport } from '../ledger/events.js';
import type { Block } from './doc.js';

/** For each report that saw a flood: what it amounted to, and who sent the most. */
export function floodBlocks(reports: EgressReport[]): Block[] {
  return reports.flatMap((r) => {
    const f = r.refusals;
    if (!f?.flood) return [];
    return [
      {
        kind: 'para',
        text: `A flood of refused DNS names: ${f.total} refused, up to ${f.peakPerSecond} a second; ${f.unanswered} left unanswered and ${f.kernelDropped} dropped by the kernel (a source over its budget).`,
        strong: true,
      },
      ...(f.droppedByUid?.length
        ? [
            {
              kind: 'table' as const,
              headers: ['User over its DNS rate', 'Dropped by the kernel'],
              rows: f.droppedByUid.map((u) => [`uid ${u.uid}`, String(u.dropped)]),
            },
          ]
        : []),
      {
        kind: 'table',
        headers: ['Flood source', 'Refused', 'Most in a second'],
        rows: f.topSources.map((x) => [
          x.process ?? `${x.protocol} ${x.address} port ${x.port}`,
          String(x.queries),
          String(x.peakPerSecond),
        ]),
      },
    ];
  });
}
