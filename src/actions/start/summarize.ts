/** `start`'s post step, last of the job: verify the ledger and render the attribution summary. */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CordonError, describeError } from '../../platform/errors.js';
import { flushLedgerCopy } from '../../ledger/copy.js';
import { ledgerCopyPathsFor } from '../../rootd/protocol.js';
import { Ledger, ledgerDir, parseLedgerText, type LedgerLine } from '../../ledger/ledger.js';
import type { Runner } from '../../platform/runner.js';
import { impersonationError, recordCommits } from '../../github/commits.js';
import { buildAttribution, renderSummaryMarkdown, type SummaryInput } from '../../summary/render.js';
import { compareWithCopy, untrustedLines, verdictFor, type Verdict } from '../../ledger/verify.js';
import { checkSeals, readSealKey, sealKeyPath } from '../../ledger/seal.js';
import type { StartInputs } from './inputs.js';

/** The verdict alone, for when the ledger's lines cannot be rendered. */
export function verdictOnlyMarkdown(v: Verdict): string {
  const head =
    v.status === 'intact'
      ? '**Record intact**, but the summary could not be rendered from the ledger.'
      : v.status === 'altered'
        ? '**RECORD ALTERED while the agent ran**: the summary could not be rendered from the ledger.'
        : '**Record not verified**.';
  const lines = [
    '## Cordon: what the agent did',
    '',
    head,
    '',
    ...v.details.map((d) => `- ${d.replace(/[<>]/g, '')}`),
  ];
  if (v.duringRun?.length) {
    lines.push('', `Written while the agent ran (${v.duringRun.length} line(s)):`, '');
    for (const d of v.duringRun.slice(0, 200))
      lines.push(
        `- line ${d.line}: ${String(d.type ?? '(not an event)').replace(/[<>`|]/g, '')}${d.chained ? '' : ' (does not chain)'}`,
      );
  }
  return lines.join('\n') + '\n';
}

/**
 * The egress daemon's root-owned copy of the ledger, when the fence ran in this job; it is
 * read after this step's own lines have reached it.
 */
async function readCopy(ledgerFile: string): Promise<LedgerLine[] | undefined> {
  await flushLedgerCopy();
  const { copy } = ledgerCopyPathsFor(ledgerFile);
  if (!existsSync(copy)) return undefined;
  return parseLedgerText(readFileSync(copy, 'utf8'));
}

/**
 * What the summary is rendered from: the ledger's lines (the egress daemon's copy when it
 * exists, compared with the file) and the verdict, with the lines the agent forged left
 * out of the sections rendered as Cordon's own.
 */
export async function judgeLedger(
  ledgerFile: string,
  opts: { nonce?: string; head?: string; sealKey?: string },
): Promise<{ input: SummaryInput; lineCount: number; fromCopy: boolean }> {
  const fileLines = parseLedgerText(existsSync(ledgerFile) ? readFileSync(ledgerFile, 'utf8') : '');
  const copyLines = await readCopy(ledgerFile);
  // With the daemon's copy, the summary is rendered from it: the runner user cannot edit it.
  const compared = copyLines ? compareWithCopy(fileLines, copyLines, { nonce: opts.nonce }) : undefined;
  const lines = compared ? compared.lines : fileLines;
  const verdict = verdictFor(lines, opts);
  if (!compared && fileLines.some((l) => l.event?.type === 'egress.started'))
    verdict.source = 'file-copy-gone';
  if (compared) {
    verdict.source = 'daemon-copy';
    if (compared.details.length) {
      verdict.status = 'altered';
      verdict.details.push(...compared.details);
    }
  }
  // Lines that close a command's window count only when run sealed them (start made the key).
  const seals = opts.sealKey
    ? checkSeals(lines, {
        head: opts.head,
        publicKey: opts.sealKey,
        held: readSealKey(sealKeyPath(ledgerFile)),
      })
    : undefined;
  if (seals?.details.length) {
    verdict.status = 'altered';
    verdict.details.push(...seals.details);
  }
  // Lines the agent forged are listed in the verdict, not rendered as Cordon's own events.
  const untrusted = untrustedLines(verdict);
  for (const n of seals?.unproven ?? []) untrusted.add(n);
  for (const n of compared?.untrusted ?? []) untrusted.add(n);
  return {
    input: { lines: lines.filter((l) => !untrusted.has(l.line)), verdict },
    lineCount: lines.length,
    fromCopy: compared !== undefined,
  };
}

export async function writeSummary(inputs: StartInputs, runner: Runner): Promise<void> {
  const ledger = Ledger.forEnv(runner.env, { action: 'start' });
  const commits = recordCommits(ledger, runner);
  const { input, lineCount, fromCopy } = await judgeLedger(ledger.path, {
    nonce: runner.getState('nonce') || undefined,
    head: runner.getState('head') || undefined,
    sealKey: runner.getState('seal-key') || undefined,
  });
  const { verdict } = input;
  // A line the agent forged can be shaped to break the renderer: the verdict still shows.
  const [markdown, attribution] = [
    () => renderSummaryMarkdown(input),
    () => JSON.stringify(buildAttribution(input), null, 2) + '\n',
  ].map((render) => {
    try {
      return render();
    } catch (e) {
      runner.warning(`start: the summary could not be rendered from the ledger: ${describeError(e)}`);
      return undefined;
    }
  });
  if (inputs.summary) {
    if (!runner.appendSummary(markdown ?? verdictOnlyMarkdown(verdict)))
      runner.info('start: no job summary file; skipped the summary');
  }
  const path = join(ledgerDir(runner.env), 'attribution.json');
  writeFileSync(path, attribution ?? JSON.stringify({ version: 1, verdict }, null, 2) + '\n', {
    mode: 0o644,
  });
  runner.setOutput('attribution-path', path);
  runner.info(
    `start: attribution written to ${path} (${lineCount} ledger lines${fromCopy ? ", from the egress daemon's copy" : ''}, record ${verdict.status})`,
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
