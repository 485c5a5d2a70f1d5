/**
 * `report`, a main step placed last: judge the ledger, record the run's commits, render the
 * job summary and attribution.json, and set them as outputs later steps can read (an
 * upload step; start's post runs after every main step, too late for that).
 */
import type { Ledger, LedgerEvent, LedgerLine } from '../../ledger/ledger.js';
import type { Runner } from '../../platform/runner.js';
import { fenceId, requestReport } from '../../rootd/protocol.js';
import { recordCommits } from '../../github/commits-record.js';
import { noreplyHosts } from '../../github/bot-identity.js';
import { toEvent } from '../egress/report.js';
import {
  eventsIn,
  failIfAsked,
  judgeLedger,
  recordedCommits,
  renderReport,
  writeAttribution,
} from '../attribution.js';
import type { ReportInputs } from './inputs.js';

export interface ReportDeps {
  runner: Runner;
  ledger: Ledger;
}

/**
 * What the fence saw so far, as the event the egress post will write at the end of the job:
 * rendered in this summary and attribution.json as pending, never appended to the ledger
 * (the egress post's line is the record). Nothing when the fence did not run or does not answer.
 */
async function fenceSoFar(
  lines: LedgerLine[],
  deps: ReportDeps,
): Promise<{ event?: LedgerEvent; suggested?: string[] }> {
  if (!lines.some((l) => l.event?.type === 'egress.started' && l.event.action === 'egress')) return {};
  try {
    const event = toEvent(await requestReport(fenceId(deps.runner.tempDir)));
    return {
      event: {
        v: 1,
        time: new Date().toISOString(),
        action: 'report',
        type: 'egress.report',
        data: { ...event },
        prev: '',
      },
      suggested: event.suggestedAllowlist,
    };
  } catch (e) {
    deps.runner.warning(
      `report: the egress daemon did not answer: ${e instanceof Error ? e.message : String(e)}`,
    );
    return {};
  }
}

export async function writeReport(inputs: ReportInputs, deps: ReportDeps): Promise<void> {
  const { runner, ledger } = deps;
  // report has no nonce (start's main kept it for its post): start's post verifies with it.
  // The seal key is public: start hands it over as a step output, which no later step can change.
  const opts = { sealKey: inputs.sealKey, noreplyHosts: noreplyHosts(runner.env) };
  const before = await judgeLedger(ledger.path, opts);
  for (const r of before.botsRefused) runner.warning(`report: ledger ${r}`);
  const commits = recordCommits(ledger, runner, undefined, {
    who: 'report',
    known: recordedCommits(before.input.lines),
    trusted: eventsIn(before.input.lines),
  });
  const { input, lineCount, fromCopy } = await judgeLedger(ledger.path, opts);
  const { verdict } = input;
  const fence = await fenceSoFar(input.lines, deps);
  const rendered = renderReport(fence.event ? { ...input, pending: [fence.event] } : input, runner, 'report');
  const summary = inputs.summary && runner.appendSummary(rendered.markdown);
  if (inputs.summary && !summary) runner.info('report: no job summary file; skipped the summary');
  const written = writeAttribution(runner.env, rendered.attribution);
  const last = input.lines[input.lines.length - 1];
  ledger.append('report.written', {
    upTo: last?.line ?? 0,
    head: last?.hash ?? '',
    verdict: verdict.status,
    details: verdict.details.length,
    attribution: written.sha256,
    attributionBytes: written.bytes,
    summary,
  });
  runner.setOutput('attribution-path', written.path);
  runner.setOutput('verdict', verdict.status);
  runner.setOutput('suggested-allowed-domains', (fence.suggested ?? []).join('\n'));
  runner.info(
    `report: attribution written to ${written.path} (${lineCount} ledger lines${fromCopy ? ", from the egress daemon's copy" : ''}, record ${verdict.status})`,
  );
  failIfAsked(inputs, verdict, commits, 'report');
}
