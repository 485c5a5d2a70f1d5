/**
 * Ledger -> attribution summary: who the agent was, what it was allowed, what it touched,
 * what was blocked, which commits it authored and what publish pushed. The same model renders to the job
 * summary (markdown), a standalone HTML page and attribution.json.
 */
import type { LedgerEvent, LedgerLine } from '../ledger/ledger.js';
import {
  commitsListed,
  dataOf,
  eventsOf,
  type CredentialsIssued,
  type RunRecorded,
  type TagsAtStart,
  type TokenIssued,
} from '../ledger/events.js';
import type { Verdict } from '../ledger/verify.js';
import { capTables, renderHtmlPage, renderMarkdown, renderText, type Block } from './doc.js';
import { allowedSection, commitsSection, otherSection, touchedSection, whoSection } from './sections.js';
import { blockedSection, leaksSection, listedNames, shownReport } from './blocked.js';
import { findingBlocks } from './findings.js';
import { publishSection, shownPublishEvent, shownPushed, shownRefused } from './publish.js';

export const SUMMARY_LIMIT_BYTES = 1024 * 1024;

/**
 * What every renderer takes: the ledger's lines and the verdict on them, and optionally a
 * scrubber for every string shown (the caller's secret registry), so start's post and
 * `actions/report` render the same summary from the same call.
 */
export interface SummaryInput {
  lines: LedgerLine[];
  verdict: Verdict;
  /**
   * Events not (yet) in the ledger, rendered with its own: `report` adds what the egress
   * daemon has seen so far, which the egress post records only after every main step.
   */
  pending?: LedgerEvent[];
  scrub?: (text: string) => string;
}

function eventsIn(input: SummaryInput): LedgerEvent[] {
  return [...input.lines.flatMap((l) => (l.event ? [l.event] : [])), ...(input.pending ?? [])];
}

function duringRunBlocks(v: Verdict): Block[] {
  if (!v.duringRun?.length) return [];
  return [
    {
      kind: 'para',
      text: `Written while the agent ran (${v.duringRun.length} line(s)): the agent could have written these, so they are not vouched for as Cordon's own.`,
    },
    {
      kind: 'table',
      headers: ['Line', 'Time', 'Action', 'Event', 'Chained'],
      rows: v.duringRun.map((d) => [
        String(d.line),
        d.time ?? '',
        d.action ?? '',
        d.type ?? '(not an event)',
        d.chained ? 'yes' : 'NO',
      ]),
    },
  ];
}

/** The record's own section: how the chain checked out (its finding is an alert at the top). */
function verdictBlocks(v: Verdict): Block[] {
  const heading: Block = { kind: 'heading', level: 3, text: 'The record' };
  if (v.status === 'intact')
    return [
      heading,
      { kind: 'para', text: 'Record intact: every ledger line chains to the one before it.' },
      ...duringRunBlocks(v),
    ];
  if (v.status === 'unverified')
    return [
      heading,
      { kind: 'para', text: 'Record not verified: the chain could not be checked.' },
      { kind: 'list', items: v.details },
    ];
  return [
    heading,
    {
      kind: 'para',
      text: 'RECORD ALTERED while the agent ran: these lines were changed, removed or inserted.',
      strong: true,
    },
    { kind: 'list', items: v.details },
    ...duringRunBlocks(v),
  ];
}

/** Every string in `blocks` through `scrub`. */
function scrubBlocks(blocks: Block[], scrub: (t: string) => string): Block[] {
  return blocks.map((b): Block => {
    switch (b.kind) {
      case 'table':
        return {
          ...b,
          headers: b.headers.map(scrub),
          rows: b.rows.map((r) => r.map(scrub)),
          note: b.note && scrub(b.note),
        };
      case 'details':
        return { ...b, summary: scrub(b.summary), blocks: scrubBlocks(b.blocks, scrub) };
      case 'list':
        return { ...b, items: b.items.map(scrub) };
      default:
        return { ...b, text: scrub(b.text) };
    }
  });
}

function sourceBlocks(v: Verdict): Block[] {
  if (v.source === 'file-copy-gone')
    return [
      {
        kind: 'para',
        text: "The egress fence ran in this job, but its daemon's copy of the ledger is gone (`teardown: true` removes it with the daemon's directory): rendered from the ledger file, which the runner user can write.",
      },
    ];
  if (v.source !== 'daemon-copy') return [];
  return [
    {
      kind: 'para',
      text: "Rendered from the egress daemon's root-owned copy of the ledger, which the runner user can read but not write; any difference from the ledger file is listed above.",
    },
  ];
}

/**
 * The whole summary: the status line and an alert per finding that needs a human (above
 * every table), then section by section (sections.ts, blocked.ts); the record's section
 * first when it is not intact, last when it is.
 */
export function buildBlocks(input: SummaryInput): Block[] {
  const events = eventsIn(input);
  // An intact record needs no reading past the status line: its section goes last.
  const record = [...verdictBlocks(input.verdict), ...sourceBlocks(input.verdict)];
  const intact = input.verdict.status === 'intact';
  const blocks: Block[] = [
    { kind: 'heading', level: 2, text: 'Cordon: what the agent did' },
    ...findingBlocks(events, input.verdict),
    ...(intact ? [] : record),
    ...whoSection(events),
    ...allowedSection(events),
    ...touchedSection(events),
    ...blockedSection(events),
    ...leaksSection(events),
    ...commitsSection(events),
    ...publishSection(events),
    ...(intact ? record : []),
    ...otherSection(events, input.lines),
  ];
  return input.scrub ? scrubBlocks(blocks, input.scrub) : blocks;
}

/** Markdown for the job summary, degraded (tables cut, noted) until it fits the limit. */
export function renderSummaryMarkdown(input: SummaryInput, limit = SUMMARY_LIMIT_BYTES): string {
  const blocks = buildBlocks(input);
  let md = renderMarkdown(blocks);
  for (const rows of [500, 100, 20, 5, 0]) {
    if (Buffer.byteLength(md) <= limit) return md;
    md = renderMarkdown(capTables(blocks, rows));
  }
  if (Buffer.byteLength(md) <= limit) return md;
  const tail = '\n\n_Summary cut to fit the job summary limit; see attribution.json._\n';
  return (
    Buffer.from(md)
      .subarray(0, limit - Buffer.byteLength(tail))
      .toString('utf8')
      .replace(/\uFFFD$/, '') + tail
  );
}

/** The summary for a terminal (`cordon demo`, `cordon summary --text`). */
export function renderSummaryText(input: SummaryInput): string {
  return renderText(buildBlocks(input)) + '\n';
}

export function renderSummaryHtml(input: SummaryInput): string {
  return renderHtmlPage('Cordon attribution summary', buildBlocks(input));
}

/**
 * An event as attribution.json holds it: a publish line as the summary shows it (publish.ts),
 * an egress.report's names as the summary shows them,
 * and run.recorded's tag record (a salt and up to 8192 digests, 128 KiB) as its count and
 * whether it was cut. The ledger keeps the record: post reads it there, and the chain hashes
 * the line as written; the artifact holds parsed events, not lines to verify.
 */
function shownEvent(e: LedgerEvent, listed: readonly string[]): LedgerEvent {
  const published = shownPublishEvent(e);
  if (published) return published;
  const report = dataOf(e, 'egress.report');
  if (report) return { ...e, data: { ...shownReport(report, listed) } };
  const run = dataOf(e, 'run.recorded');
  const workspace: unknown = run?.workspace;
  if (!workspace || typeof workspace !== 'object' || !('tags' in workspace)) return e;
  return { ...e, data: { ...run, workspace: { ...workspace, tags: shownTags(workspace.tags) } } };
}

/** A tag record as attribution.json shows it: how many tags start recorded, and whether there were more. */
function shownTags(tags: unknown): { count?: number; cut?: true } {
  const t = tags && typeof tags === 'object' ? (tags as Partial<Record<keyof TagsAtStart, unknown>>) : {};
  return {
    ...(typeof t.count === 'number' ? { count: t.count } : {}),
    ...(t.cut === true ? { cut: true as const } : {}),
  };
}

/**
 * The machine-readable record uploaded as an artifact, readable by everyone who can read
 * the run: names the agent chose are redacted as in the summary (the ledger keeps them).
 */
export function buildAttribution(input: SummaryInput): Record<string, unknown> {
  const listed = listedNames(eventsIn(input));
  const shown = (e: LedgerEvent): LedgerEvent => shownEvent(e, listed);
  const events = eventsIn(input).map(shown);
  return {
    version: 1,
    verdict: input.verdict,
    run: eventsOf(events, 'run.recorded')[0] ?? null,
    identities: {
      github: eventsOf(events, 'token.issued'),
      aws: eventsOf(events, 'credentials.issued'),
    },
    credentialsEnded: eventsOf(events, 'credentials.ended'),
    tokensRevoked: eventsOf(events, 'token.revoked'),
    egress: {
      started: eventsOf(events, 'egress.started'),
      reports: eventsOf(events, 'egress.report'),
    },
    secrets: eventsOf(events, 'secrets.fetched'),
    runs: { started: eventsOf(events, 'run.started'), finished: eventsOf(events, 'run.finished') },
    commits: commitsListed(eventsOf(events, 'commits.observed')),
    publish: {
      pushed: eventsOf(eventsIn(input), 'publish.pushed').map(shownPushed),
      refused: eventsOf(eventsIn(input), 'publish.refused').map(shownRefused),
    },
    events: input.lines.flatMap((l) => (l.event ? [shown(l.event)] : [])),
    ...(input.pending?.length ? { pending: input.pending.map(shown) } : {}),
  };
}

export type { CredentialsIssued, RunRecorded, TokenIssued };
