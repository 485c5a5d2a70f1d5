/** `start`'s post step, last of the job: verify the ledger and render the attribution summary. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CordonError } from '../core/errors.js';
import { Ledger, ledgerDir } from '../core/ledger.js';
import type { Runner } from '../core/runner.js';
import { impersonationError, recordCommits } from '../github/commits.js';
import { buildAttribution, renderSummaryMarkdown } from '../summary/render.js';
import { verdictFor } from '../summary/verify.js';
import type { StartInputs } from './inputs.js';

export function writeSummary(inputs: StartInputs, runner: Runner): void {
  const ledger = Ledger.forEnv(runner.env, { action: 'start' });
  const commits = recordCommits(ledger, runner);
  const nonce = runner.getState('nonce') || undefined;
  const head = runner.getState('head') || undefined;
  const lines = ledger.read();
  const verdict = verdictFor(lines, { nonce, head });
  const input = { lines, verdict };
  if (inputs.summary) {
    if (!runner.appendSummary(renderSummaryMarkdown(input)))
      runner.info('start: no job summary file; skipped the summary');
  }
  const path = join(ledgerDir(runner.env), 'attribution.json');
  writeFileSync(path, JSON.stringify(buildAttribution(input), null, 2) + '\n', { mode: 0o644 });
  runner.setOutput('attribution-path', path);
  runner.info(
    `start: attribution written to ${path} (${lines.length} ledger lines, record ${verdict.status})`,
  );
  if (verdict.status === 'altered' && inputs.failOnTamper) {
    throw new CordonError({
      what: 'start: the run ledger was altered while the job ran',
      why: verdict.details.join('; '),
      fix: 'treat this run as compromised: review the agent step; set fail-on-tamper: false only to debug',
    });
  }
  const impersonation = commits && inputs.failOnImpersonation ? impersonationError(commits) : undefined;
  if (impersonation) throw impersonation;
}
