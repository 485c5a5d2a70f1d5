/**
 * `start`'s post step, last of the job: verify the ledger with the nonce and head start's
 * main kept, and record what happened after `report`; render the summary and
 * attribution.json itself only when `report` never ran (the job failed before it).
 */
import { Ledger } from '../../ledger/ledger.js';
import type { LedgerLineRef } from '../../ledger/events.js';
import type { Runner } from '../../platform/runner.js';
import { recordCommits } from '../../github/commits-record.js';
import { noreplyHosts } from '../../github/bot-identity.js';
import {
  checkAttribution,
  eventsIn,
  failIfAsked,
  judgeLedger,
  lastReport,
  recordedCommits,
  renderReport,
  verdictOnlyMarkdown,
  withRecordedCommits,
  writeAttribution,
} from '../attribution.js';
import type { StartInputs } from './inputs.js';

export async function writeSummary(inputs: StartInputs, runner: Runner): Promise<void> {
  const ledger = Ledger.forEnv(runner.env, { action: 'start' });
  const opts = {
    nonce: runner.getState('nonce') || undefined,
    head: runner.getState('head') || undefined,
    sealKey: runner.getState('seal-key') || undefined,
    noreplyHosts: noreplyHosts(runner.env),
  };
  const before = await judgeLedger(ledger.path, opts);
  for (const r of before.botsRefused) runner.warning(`start: ledger ${r}`);
  const report = lastReport(before.input.lines);
  const commits = recordCommits(ledger, runner, undefined, {
    known: report ? recordedCommits(before.input.lines) : undefined,
    trusted: eventsIn(before.input.lines),
  });
  const { input, all, lineCount, fromCopy } = await judgeLedger(ledger.path, opts);
  const { verdict } = input;
  if (report) {
    // report's line is among the lines judged again (trusted both times): what follows it is
    // new, every line of it (one left out of the summary as not Cordon's among them).
    const after: LedgerLineRef[] = all.flatMap((l, i) =>
      l.line > report.line.line
        ? [
            {
              line: l.line,
              action: l.event?.action,
              type: l.event?.type,
              time: l.event?.time,
              chained: !!l.event && l.event.prev === all[i - 1]?.hash,
            },
          ]
        : [],
    );
    // The file an upload step took may not be report's: a step after report can rewrite it.
    const attribution = checkAttribution(runner.env, report.data);
    if (attribution.detail) {
      verdict.status = 'altered';
      verdict.details.push(attribution.detail);
    } else if (attribution.state === 'gone')
      runner.info('start: attribution.json is gone: a step after report removed it');
    const changed = report.data.verdict !== verdict.status || report.data.details !== verdict.details.length;
    ledger.append('report.followed', {
      reportLine: report.line.line,
      after: after.slice(0, 500),
      verdict: verdict.status,
      changed,
      attribution: attribution.state,
    });
    runner.info(
      `start: report ran (ledger line ${report.line.line}); ${after.length} line(s) since: ${after.map((a) => `${a.line} ${a.type ?? '?'} (${a.action ?? '?'})`).join(', ') || 'none'}; record ${verdict.status}`,
    );
    if (changed) {
      runner.warning(
        `start: the record is ${verdict.status} at the end of the job, where report found it ${String(report.data.verdict)}: ${verdict.details.join('; ')}`,
        { title: 'Cordon ledger' },
      );
      if (inputs.summary) runner.appendSummary(verdictOnlyMarkdown(verdict, '### Cordon: after the report'));
    }
  } else {
    const rendered = renderReport(input, runner, 'start');
    if (inputs.summary && !runner.appendSummary(rendered.markdown))
      runner.info('start: no job summary file; skipped the summary');
    const { path } = writeAttribution(runner.env, rendered.attribution);
    runner.setOutput('attribution-path', path);
    runner.info(
      `start: report did not run; attribution written to ${path} (${lineCount} ledger lines${fromCopy ? ", from the egress daemon's copy" : ''}, record ${verdict.status})`,
    );
  }
  // Every impersonating commit of the run fails it here, those report recorded included.
  failIfAsked(inputs, verdict, report ? withRecordedCommits(input.lines, commits) : commits, 'start');
}
