/**
 * What `report` and `start`'s post share: judging the ledger (the egress daemon's copy when
 * there is one), rendering the summary and attribution.json from it, writing attribution.json
 * over whatever is at its path, and the failures the verdict and the commits call for.
 */
import { createHash } from 'node:crypto';
import {
  closeSync,
  constants,
  existsSync,
  fchmodSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { CordonError, describeError } from '../platform/errors.js';
import { readRegularFile } from '../platform/regular-file.js';
import { flushLedgerCopy } from '../ledger/copy.js';
import { ledgerCopyPathsFor } from '../rootd/protocol.js';
import {
  assertRegularLedger,
  ledgerDir,
  parseLedgerText,
  readLedgerText,
  type LedgerEvent,
  type LedgerLine,
} from '../ledger/ledger.js';
import {
  commitsListed,
  dataOf,
  type CommitObserved,
  type CommitsObserved,
  type ReportWritten,
} from '../ledger/events.js';
import type { Env, Runner } from '../platform/runner.js';
import { impersonationError } from '../github/commits-record.js';
import { botIdentity } from '../github/bot-identity.js';
import { buildAttribution, renderSummaryMarkdown, type SummaryInput } from '../summary/render.js';
import { mdEscape } from '../summary/doc.js';
import { checkSeals, readSealKey, sealKeyPath } from '../ledger/seal.js';
import { compareWithCopy, linesDuringRun, ranges, verdictFor, type Verdict } from '../ledger/verify.js';

/** What both steps are told by their inputs. */
export interface VerdictInputs {
  failOnTamper: boolean;
  failOnImpersonation: boolean;
  summary: boolean;
}

/** The verdict alone, for when the ledger's lines cannot be rendered. */
export function verdictOnlyMarkdown(v: Verdict, heading = '## Cordon: what the agent did'): string {
  const head =
    v.status === 'intact'
      ? '**Record intact**, but the summary could not be rendered from the ledger.'
      : v.status === 'altered'
        ? '**RECORD ALTERED while the agent ran**: the summary could not be rendered from the ledger.'
        : '**Record not verified**.';
  // Escaped as the summary escapes: a detail names the type and action of a line the agent
  // wrote, which may hold a line break (a lone CR too), `#` or a list marker of its own.
  const lines = [heading, '', head, '', ...v.details.map((d) => `- ${mdEscape(d)}`)];
  if (v.duringRun?.length) {
    lines.push('', `Written while the agent ran (${v.duringRun.length} line(s)):`, '');
    for (const d of v.duringRun.slice(0, 200))
      lines.push(
        `- line ${d.line}: ${mdEscape(String(d.type ?? '(not an event)'))}${d.chained ? '' : ' (does not chain)'}`,
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
  opts: { nonce?: string; head?: string; sealKey?: string; noreplyHosts?: readonly string[] },
): Promise<{
  input: SummaryInput;
  all: LedgerLine[];
  lineCount: number;
  fromCopy: boolean;
  /** Findings on `token.issued` lines naming a bot identity GitHub never gives an App. */
  botsRefused: string[];
}> {
  assertRegularLedger(ledgerFile);
  const fileLines = parseLedgerText(readLedgerText(ledgerFile) ?? '');
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
  // Lines that close a command's window count only when run sealed them (start made the key;
  // only start's post holds the public key, so report's verdict does not include this).
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
  // Lines the agent forged are listed in the verdict, not rendered as Cordon's own events:
  // every one, also past the lines a verdict lists.
  const { during, untrusted } = linesDuringRun(lines);
  for (const n of seals?.unproven ?? []) untrusted.add(n);
  for (const n of compared?.untrusted ?? []) untrusted.add(n);
  const breaking = breakingLines(lines, during, untrusted);
  for (const [a, b] of ranges(breaking.alone))
    verdict.details.push(
      `${a === b ? `line ${a} was` : `lines ${a}-${b} were`} written while the agent ran in the shape of the credential broker's events, but cannot be read as one: not Cordon's`,
    );
  for (const [a, b] of ranges(breaking.beside))
    verdict.details.push(
      `${a === b ? `line ${a}` : `lines ${a}-${b}`}, written while the agent ran or opening a command's window, cannot be read beside Cordon's own lines: not Cordon's`,
    );
  for (const [a, b] of ranges(breaking.outside))
    verdict.details.push(
      `${a === b ? `line ${a}` : `lines ${a}-${b}`}, outside the agent's windows, cannot be read as the event it names: not Cordon's`,
    );
  const left = [...breaking.alone, ...breaking.beside, ...breaking.outside];
  for (const n of left) untrusted.add(n);
  const botsRefused = refusedBots(lines, untrusted, opts.noreplyHosts ?? ['github.com']);
  for (const r of botsRefused) {
    untrusted.add(r.line);
    verdict.details.push(r.detail);
  }
  if (left.length || botsRefused.length) verdict.status = 'altered';
  return {
    input: { lines: lines.filter((l) => !untrusted.has(l.line)), verdict },
    all: lines,
    lineCount: lines.length,
    fromCopy: compared !== undefined,
    botsRefused: botsRefused.map((r) => r.detail),
  };
}

/**
 * The trusted `token.issued` lines that name as the App's bot anything but the identity
 * GitHub gives it: github-token writes only what GitHub answered, so such a line is not
 * Cordon's (a step outside every window wrote it, T32), and the address it names, a person's
 * perhaps, must not make that person's commits the agent's (T27). Left out, record altered.
 */
function refusedBots(
  lines: LedgerLine[],
  untrusted: ReadonlySet<number>,
  hosts: readonly string[],
): { line: number; detail: string }[] {
  return lines.flatMap((l) => {
    if (untrusted.has(l.line) || l.event?.type !== 'token.issued') return [];
    const r = botIdentity(l.event.data, hosts);
    return 'refused' in r
      ? [
          {
            line: l.line,
            detail: `line ${l.line}, a token.issued, ${r.refused}: not Cordon's (github-token records the bot GitHub gives the App), and no commit counts as the agent's by it`,
          },
        ]
      : [];
  });
}

/**
 * The commits a `commits.observed` line lists. A line outside the agent's windows is trusted
 * for rendering but not proved to be Cordon's (T32): `commits` of another shape is none,
 * never an error that stops the verdict from being written.
 */
function observedCommits(l: LedgerLine): (CommitObserved | null)[] {
  const commits: unknown = dataOf(l.event, 'commits.observed')?.commits;
  return Array.isArray(commits) ? (commits as (CommitObserved | null)[]) : [];
}

/** The most start's post reads of attribution.json (report records its size; this caps a forged one). */
const MAX_ATTRIBUTION = 256 * 1024 * 1024;

/** Lines written while the agent ran that are tried one by one when they fail to render together. */
const PROBED = 500;
/** Lines outside the agent's windows tried one by one, alone, when the rest fails to render. */
const PROBED_OUTSIDE = 5000;

/**
 * The agent's lines that break the summary, left out so that the rest renders with every
 * alert. Cordon's own lines always render; a line of the broker's kinds written while the
 * agent ran (not tampering by its kind, T32), or a `run.started` (which opens a window), may
 * be shaped to break it, alone (`alone`: in the broker's shape but not readable as one) or
 * only beside Cordon's lines (`beside`: a broker line with a null field next to start's
 * credentials). One render of every trusted line when they render together (the common
 * path); else each of those lines is rendered beside the rest (or alone, when the rest does
 * not render either: then it is not to blame), for at most PROBED of them.
 */
function breakingLines(
  lines: LedgerLine[],
  during: Set<number>,
  untrusted: Set<number>,
): { alone: number[]; beside: number[]; outside: number[] } {
  const trusted = lines.filter((l) => !untrusted.has(l.line));
  if (renders(trusted)) return { alone: [], beside: [], outside: [] };
  const suspect = (l: LedgerLine): boolean => during.has(l.line) || l.event?.type === 'run.started';
  const candidates = trusted.filter(suspect);
  if (candidates.length > PROBED) return { alone: [], beside: candidates.map((l) => l.line), outside: [] };
  const base = trusted.filter((l) => !suspect(l));
  let context = base;
  let outside: number[] = [];
  if (!renders(base)) {
    // A chained line outside every window (a later step's, or a process that outlived its
    // step) that cannot be rendered on its own is not Cordon's either: Cordon's own lines
    // always render. Without this, one such line left the verdict "intact" with every alert gone.
    const broken = new Set(base.slice(0, PROBED_OUTSIDE).filter((l) => !renders([l])));
    outside = [...broken].map((l) => l.line);
    const rest = base.filter((l) => !broken.has(l));
    context = broken.size && renders(rest) ? rest : [];
  }
  const alone: number[] = [];
  const beside: number[] = [];
  for (const c of candidates) {
    if (renders([...context, c].sort((a, b) => a.line - b.line))) continue;
    const broker = during.has(c.line) && (context.length === 0 || !renders([c]));
    (broker ? alone : beside).push(c.line);
  }
  return { alone, beside, outside };
}

/** Whether the summary and attribution.json render from these lines alone. */
function renders(lines: LedgerLine[]): boolean {
  const input: SummaryInput = { lines, verdict: { status: 'intact', details: [] } };
  try {
    renderSummaryMarkdown(input);
    buildAttribution(input);
    return true;
  } catch {
    return false;
  }
}

/** The events of these lines (the trusted ones `judgeLedger` returns). */
export function eventsIn(lines: LedgerLine[]): LedgerEvent[] {
  return lines.flatMap((l) => (l.event ? [l.event] : []));
}

/**
 * The commits the trusted lines already record, by hash, each with every entry that lists
 * it: recordCommits lists a commit again when its own reading disagrees with all of them.
 */
export function recordedCommits(lines: LedgerLine[]): Map<string, CommitObserved[]> {
  const shas = new Map<string, CommitObserved[]>();
  for (const l of lines)
    for (const c of observedCommits(l)) {
      if (!c?.sha) continue;
      const entries = shas.get(c.sha);
      if (entries) entries.push(c);
      else shas.set(c.sha, [c]);
    }
  return shas;
}

/**
 * `commits` with every commit the trusted lines already record added, for start's
 * `fail-on-impersonation`: the commits report recorded are not listed again by start's post,
 * and report's own input may have been off. A commit recorded more than once is taken as
 * the last line that calls it `impersonation` lists it, as in the summary (commitsListed):
 * the first line may be the agent's own calling it the agent's, and report's listing it
 * again comes after (T27).
 */
export function withRecordedCommits(
  lines: LedgerLine[],
  commits: CommitsObserved | undefined,
): CommitsObserved | undefined {
  const seen = new Set(commits?.commits.map((c) => c.sha));
  const recorded = commitsListed(
    lines.map((l) => ({ commits: observedCommits(l).filter((c): c is CommitObserved => !!c?.sha) })),
  ).filter((c) => !seen.has(c.sha));
  if (!recorded.length) return commits;
  // A list report cut short stays cut short here: past it, no commit was classified.
  const truncated = lines.some((l) => dataOf(l.event, 'commits.observed')?.truncated === true);
  return {
    base: commits?.base ?? '',
    head: commits?.head ?? '',
    ...commits,
    ...(truncated ? { truncated } : {}),
    commits: [...(commits?.commits ?? []), ...recorded],
  };
}

/** The last `report.written` among the trusted lines, written by `report` itself. */
export function lastReport(
  lines: LedgerLine[],
): { line: LedgerLine; data: Partial<ReportWritten> } | undefined {
  for (let i = lines.length - 1; i >= 0; i--) {
    const l = lines[i];
    const data = dataOf(l.event, 'report.written');
    if (data && l.event?.action === 'report') return { line: l, data };
  }
  return undefined;
}

/**
 * The summary's markdown (the verdict alone if the lines cannot be rendered) and
 * attribution.json's text: a line the agent forged can be shaped to break the renderer,
 * and the verdict still shows.
 */
export function renderReport(
  input: SummaryInput,
  runner: Runner,
  who: string,
): { markdown: string; attribution: string } {
  const [markdown, attribution] = [
    () => renderSummaryMarkdown(input),
    () => JSON.stringify(buildAttribution(input), null, 2) + '\n',
  ].map((render) => {
    try {
      return render();
    } catch (e) {
      runner.warning(`${who}: the summary could not be rendered from the ledger: ${describeError(e)}`);
      return undefined;
    }
  });
  return {
    markdown: markdown ?? verdictOnlyMarkdown(input.verdict),
    attribution: attribution ?? JSON.stringify({ version: 1, verdict: input.verdict }, null, 2) + '\n',
  };
}

/**
 * Writes attribution.json next to the ledger, replacing whatever is there: a file, a link
 * or a FIFO an earlier step left at that path is removed first, and the new file is created
 * afresh (never opened through a link). Returns its path, SHA-256 and size.
 */
export function writeAttribution(env: Env, text: string): { path: string; sha256: string; bytes: number } {
  const dir = ledgerDir(env);
  // As the ledger makes it: a job that failed before start has none yet.
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, 'attribution.json');
  rmSync(path, { force: true, recursive: true });
  const fd = openSync(
    path,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o644,
  );
  try {
    // Whatever the umask: readable by whoever uploads it.
    fchmodSync(fd, 0o644);
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
  return {
    path,
    sha256: createHash('sha256').update(text, 'utf8').digest('hex'),
    bytes: Buffer.byteLength(text, 'utf8'),
  };
}

/**
 * Whether attribution.json is still the file `report` wrote (`written`, from its
 * `report.written` line): start's post, the last step of the job, runs after any upload
 * step, so a file another step rewrote (a link, a FIFO, a larger file) is named here. It is
 * read without following a link, without blocking, and no further than report's size.
 */
export function checkAttribution(
  env: Env,
  written: { attribution?: unknown; attributionBytes?: unknown },
): { state: 'same' | 'changed' | 'gone'; detail?: string } {
  const path = join(ledgerDir(env), 'attribution.json');
  if (!lstatSync(path, { throwIfNoEntry: false })) return { state: 'gone' };
  const bytes = typeof written.attributionBytes === 'number' ? written.attributionBytes : MAX_ATTRIBUTION;
  let sha256: string;
  try {
    const text = readRegularFile(path, {
      reader: 'start',
      maxBytes: Math.min(bytes, MAX_ATTRIBUTION),
      noFollow: true,
      expected: "report's attribution.json",
    });
    sha256 = createHash('sha256').update(text, 'utf8').digest('hex');
  } catch (e) {
    return { state: 'changed', detail: `attribution.json is not the file report wrote: ${describeError(e)}` };
  }
  return sha256 === written.attribution
    ? { state: 'same' }
    : {
        state: 'changed',
        detail: `attribution.json was rewritten after report wrote it (SHA-256 ${sha256.slice(0, 16)}, report wrote ${String(written.attribution).slice(0, 16)}): an upload after that took another file, not report's`,
      };
}

/** Fails the step as the inputs ask: an altered record, or commits made as a human. */
export function failIfAsked(
  inputs: VerdictInputs,
  verdict: Verdict,
  commits: CommitsObserved | undefined,
  who: string,
): void {
  if (verdict.status === 'altered' && inputs.failOnTamper) {
    throw new CordonError({
      what: `${who}: the run ledger was altered while the job ran`,
      why: verdict.details.join('; '),
      fix: 'treat this run as compromised: review the agent step; set fail-on-tamper: false only to debug',
    });
  }
  const impersonation = commits && inputs.failOnImpersonation ? impersonationError(commits, who) : undefined;
  if (impersonation) throw impersonation;
}
