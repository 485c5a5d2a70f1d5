/**
 * What needs a human, found in the ledger's events and the verdict on the record: one
 * status line for the top of the summary and one alert per finding above the tables, so
 * a reviewer who reads only the first lines still sees an altered record, an impersonating
 * commit or a leaked secret. Each finding is also shown in its own section below.
 */
import type { LedgerEvent } from '../ledger/ledger.js';
import {
  commitsListed,
  eventsOf,
  unclassifiedCommits,
  type CommitObserved,
  type RunFinished,
  type Unscoped,
} from '../ledger/events.js';
import type { Verdict } from '../ledger/verify.js';
import type { AlertLevel, Block } from './doc.js';
import { shownRefused, shownText, tokenState } from './publish.js';

export interface Finding {
  level: AlertLevel;
  /** For the status line: `2 names blocked`. */
  short: string;
  /** The alert's text. */
  text: string;
}

const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

function recordFindings(v: Verdict): Finding[] {
  if (v.status === 'altered')
    return [
      {
        level: 'caution',
        short: 'record ALTERED',
        text: `RECORD ALTERED while the agent ran (${plural(v.details.length, 'problem')}, listed under "The record"): lines were changed, removed or inserted. Do not trust this summary as written.`,
      },
    ];
  if (v.status === 'unverified')
    return [
      {
        level: 'caution',
        short: 'record not verified',
        text: `Record not verified: ${v.details.join('; ')}. What follows cannot be vouched for.`,
      },
    ];
  return [];
}

/** Most commits an alert names, and most characters of an author it shows: the agent chose both. */
const ALERT_COMMITS = 5;
const ALERT_NAME = 60;
/** Most characters of one alert: what follows it must stay above the summary's limit too. */
const ALERT_TEXT = 1000;

const cut = (s: string, n: number): string => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

/** The first commits by sha and author, each name cut, and how many more. */
function named(commits: readonly CommitObserved[]): string {
  const shown = commits
    .slice(0, ALERT_COMMITS)
    .map(
      (c) =>
        `${c.sha.slice(0, 12)} as ${cut(c.author, ALERT_NAME)}${c.objectMismatch ? ' (its object rewritten)' : ''}${c.hiddenFromHistory ? " (hidden from git's history)" : ''}`,
    );
  const more = commits.length - shown.length;
  return `${shown.join(', ')}${more > 0 ? `, and ${more} more` : ''}`;
}

function commitFindings(events: LedgerEvent[]): Finding[] {
  const observed = eventsOf(events, 'commits.observed');
  const impersonating = commitsListed(observed).filter((c) => c.verdict === 'impersonation');
  const out: Finding[] = observed.some(unclassifiedCommits)
    ? [
        {
          level: 'caution',
          short: 'commits not classified',
          text: 'More commits were made than Cordon lists while the agent had an identity of its own: those past the list were not checked for a human author or committer, so any of them may impersonate one. Review them in the repository history.',
        },
      ]
    : [];
  const unchecked = observed.find((o) => o.unchecked)?.unchecked;
  if (unchecked)
    out.push({
      level: 'caution',
      short: 'commits not checked',
      text: `The commits made in this run could not be checked for a human author or committer: ${cut(unchecked, 300)}. Review them in what was pushed.`,
    });
  const partial = [...new Set(observed.flatMap((o) => (Array.isArray(o.partial) ? o.partial : [])))];
  if (partial.length)
    out.push({
      level: 'caution',
      short: 'commits partly checked',
      text: `The commits made in this run were looked for only in part, so a commit with a human author or committer may not be listed: ${cut(partial.join('; '), 300)}. Review them in what was pushed.`,
    });
  if (!impersonating.length) return out;
  return [
    ...out,
    {
      level: 'caution',
      short: plural(impersonating.length, 'impersonating commit'),
      text: `${plural(impersonating.length, 'commit')} made while the agent had an identity of its own claim a human author or committer (${named(impersonating)}): see "Commits the agent authored".`,
    },
  ];
}

function leakFindings(events: LedgerEvent[]): Finding[] {
  const finished = eventsOf(events, 'run.finished');
  const leaks = finished.flatMap((f) => f.leaks);
  const unread = finished.flatMap((f) => f.leaksNotScanned ?? []);
  const out: Finding[] = unread.length
    ? [
        {
          level: 'warning',
          short: `${plural(unread.length, 'item')} the leak scan could not read`,
          text: `The leak scan could not read ${plural(unread.length, 'item')} (past its bounds or in a format it does not open): a secret there would not be found; see "Secrets left behind".`,
        },
      ]
    : [];
  for (const f of finished.flatMap((e) => e.secretsInNames ?? []))
    out.push({
      level: 'caution',
      short: `secret ${f.secret} in DNS names`,
      text: `The ${f.identity === 'agent' ? "agent's command" : 'command'} put secret ${f.secret} into ${plural(f.names, 'DNS name')} (${plural(f.queries, 'query', 'queries')}): ${f.forwarded ? 'they were sent on, so treat it as leaked and rotate it' : 'every one was refused, none left the runner'}. The names are shown as their length only.`,
    });
  for (const f of finished.flatMap((e) => e.secretsInProcessNames ?? []))
    out.push({
      level: 'caution',
      short: `secret ${f.secret} in a process name`,
      text: `The command named ${plural(f.processes, 'process', 'processes')} the fence reported (who asked a refused name or sent to a blocked destination) with secret ${f.secret}: an attempt to carry it into this job's records. Those names are shown as their length only.`,
    });
  for (const secret of new Set(finished.flatMap((e) => e.secretsHiddenInOutput ?? [])))
    out.push({
      level: 'caution',
      short: `secret ${secret} hidden in the output`,
      text: `The command printed secret ${secret} with terminal escape sequences or invisible characters between its characters, which the job log does not show and masking does not see: it is in the log unmasked. Treat it as leaked and rotate it.`,
    });
  out.push(...dnsNameFindings(events, finished));
  if (!leaks.length) return out;
  const names = [...new Set(leaks.map((l) => l.secret))];
  return [
    ...out,
    {
      level: 'caution',
      short: `${plural(names.length, 'secret')} left in the workspace`,
      text: `${plural(names.length, 'secret')} (${names.join(', ')}) left in the workspace or its history at ${plural(leaks.length, 'place')}: rotate ${names.length === 1 ? 'it' : 'them'}; see "Secrets left behind".`,
    },
  ];
}

/**
 * What run could not check of the DNS names for its secrets, and names marked as carrying
 * one that run did not find: only run marks them, unless the command could reach the
 * daemon too (user: runner) and hid a name behind a mark of its own.
 */
function dnsNameFindings(events: LedgerEvent[], finished: RunFinished[]): Finding[] {
  const out: Finding[] = [];
  for (const f of finished)
    if (f.dnsNamesNotChecked)
      out.push({
        level: 'caution',
        short: 'DNS names not checked for secrets',
        text: `${plural(f.dnsNamesNotChecked.names, 'DNS name')} the command asked could not be checked for its secrets (${f.dnsNamesNotChecked.why}): a name shown in this job's records may carry one.`,
      });
  const found = finished.reduce((n, f) => n + (f.secretsInNames ?? []).reduce((m, s) => m + s.names, 0), 0);
  const marked = eventsOf(events, 'egress.report')
    .at(-1)
    ?.blockedNames.filter((b) => b.carriesSecret).length;
  if (marked !== undefined && marked > found)
    out.push({
      level: 'caution',
      short: 'DNS names hidden without a finding',
      text: `${plural(marked - found, 'refused DNS name')} ${marked - found === 1 ? 'is' : 'are'} shown as carrying a secret that run did not find in them: something other than run marked them (under user: runner the command can), which hides what was asked.`,
    });
  return out;
}

function fenceFindings(events: LedgerEvent[]): Finding[] {
  const reports = eventsOf(events, 'egress.report');
  const out: Finding[] = [];
  const tamper = [
    ...reports.flatMap((r) => r.tamper ?? []),
    ...eventsOf(events, 'egress.tampered').flatMap((t) => t.changes.map((c) => c.what)),
  ];
  if (tamper.length)
    out.push({
      level: 'caution',
      short: 'egress fence tampered with',
      text: `The egress fence was tampered with: ${[...new Set(tamper)].join('; ')}.`,
    });
  const audit = reports.some((r) => r.policy === 'audit');
  const names = reports.reduce((n, r) => n + r.blockedNames.length, 0);
  const dests = reports.reduce(
    (n, r) => n + r.blockedDestinations.length + (r.blockedDestinationsLeftOut?.destinations ?? 0),
    0,
  );
  const unrecorded = reports.reduce((n, r) => n + (r.blockedUnrecordedPackets ?? 0), 0);
  const rebound = reports.reduce((n, r) => n + (r.rebinding?.length ?? 0), 0);
  const parts = [
    names ? plural(names, 'name') : '',
    dests ? plural(dests, 'destination') : '',
    rebound ? plural(rebound, 'name answering inward', 'names answering inward') : '',
  ].filter(Boolean);
  if (parts.length) {
    const verb = audit ? 'would have been blocked (audit mode)' : 'blocked';
    out.push({
      level: 'warning',
      short: `${parts.join(', ')} ${audit ? 'would be blocked' : 'blocked'}`,
      text: `${parts.join(', ')} ${verb}: see "What was blocked" for who asked, and the allowlist to paste if they were meant.`,
    });
  }
  if (unrecorded)
    out.push({
      level: 'warning',
      short: 'the record of blocked destinations was full',
      text: `The fence's record of blocked destinations was full: ${plural(unrecorded, 'packet')} went to destinations it could not record (refused all the same). Something tried thousands of destinations: a scan, or a flood meant to bury what else it tried.`,
    });
  const floods = reports.flatMap((r) => (r.refusals?.flood ? [r.refusals] : []));
  if (floods.length) {
    const total = floods.reduce((n, f) => n + f.total, 0);
    const peak = Math.max(...floods.map((f) => f.peakPerSecond));
    out.push({
      level: 'warning',
      short: 'a flood of refused DNS names',
      text: `A flood of refused DNS names (${total} refused, up to ${peak} a second): something on the runner tried to starve the DNS proxy; see "What was blocked" for its sources.`,
    });
  }
  return out;
}

function revocationFindings(events: LedgerEvent[]): Finding[] {
  const out: Finding[] = [];
  for (const t of eventsOf(events, 'token.revoked'))
    if (t.status !== 'revoked' || t.confirmStatus === undefined)
      out.push({
        level: 'warning',
        short: 'GitHub token revocation not confirmed',
        text:
          t.status === 'revoked'
            ? 'The GitHub token was revoked, but no follow-up call confirmed it no longer works.'
            : `The GitHub token was NOT revoked (${t.status}${t.detail ? `: ${t.detail}` : ''}): it stays valid until it expires.`,
      });
  for (const b of eventsOf(events, 'broker.stopped'))
    if (b.revocations.failed > 0)
      out.push({
        level: 'warning',
        short: 'broker revocation failed',
        text: `The credential broker failed to revoke ${plural(b.revocations.failed, 'token')}${b.handedOutValidUntil ? `; what it handed out stays valid until ${b.handedOutValidUntil}` : ''}.`,
      });
  return out;
}

/**
 * What publish did that needs a human: a refusal (nothing pushed: the agent's work waits
 * for one), and a push or refusal whose own `contents: write` token was not confirmed
 * revoked (it can write to the repository until it expires). The branch and reason are
 * shown as the Published part shows them (shownRefused: one line, controls made visible).
 */
function publishFindings(events: LedgerEvent[]): Finding[] {
  const out: Finding[] = [];
  for (const p of eventsOf(events, 'publish.pushed')) {
    // publish writes a token state on every push: a push without one was not confirmed either.
    const t = tokenState(p.token) ?? { text: 'no state recorded', bad: true };
    if (t.bad)
      out.push({
        level: 'caution',
        short: "publish's token not confirmed revoked",
        text: `publish pushed to ${shownText(p.branch, 300)}, but its contents: write token was not confirmed revoked (${cut(t.text, 300)}): it can write to the repository until it expires. Revoke it from the App's settings; see "Published".`,
      });
  }
  for (const r of eventsOf(events, 'publish.refused')) {
    const s = shownRefused(r);
    out.push({
      level: 'warning',
      short: 'publish refused',
      text: `publish refused: nothing pushed to ${String(s.branch)}: ${cut(String(s.reason), 300)}. See "Published".`,
    });
    const t = tokenState(r.token);
    if (t?.bad)
      out.push({
        level: 'caution',
        short: "publish's token not confirmed revoked",
        text: `publish refused to push to ${String(s.branch)}, but the contents: write token it had minted was not confirmed revoked (${cut(t.text, 300)}): it can write to the repository until it expires. Revoke it from the App's settings; see "Published".`,
      });
  }
  return out;
}

/** AWS credentials no session policy narrowed: every permission the role has, said at the top. */
function scopeFindings(events: LedgerEvent[]): Finding[] {
  const unscoped = new Map<string, Unscoped>();
  for (const c of [...eventsOf(events, 'credentials.issued'), ...eventsOf(events, 'credentials.refreshed')])
    if (c.unscoped && !unscoped.has(c.role)) unscoped.set(c.role, c.unscoped);
  return [...unscoped].map(([role, how]) => ({
    level: 'warning',
    short: 'AWS credentials UNSCOPED',
    text: `AWS credentials UNSCOPED: ${cut(role, 200)} was handed out with no session policy, so they carried every permission the role has (${how === 'chosen' ? "the workflow chose this with allow: '*'" : 'no session policy was given'}).`,
  }));
}

function identityFindings(events: LedgerEvent[]): Finding[] {
  const out: Finding[] = [];
  const finished = eventsOf(events, 'run.finished');
  eventsOf(events, 'run.started').forEach((r, i) => {
    if (r.user?.mode === 'runner')
      out.push({
        level: 'warning',
        short: "the agent shared the runner's user",
        text: `The agent's command ran as the runner user${r.user.fallback ? `, because ${r.user.reason ?? 'no user of its own could be had'}` : ' (user: runner)'}: it could change what later steps run and read their files. Set user: agent to require a user of its own.`,
      });
    const end = finished[i]?.agentUser;
    if (end && !end.removed)
      out.push({
        level: 'warning',
        short: "the agent's user not removed",
        text: `The agent's user ${end.name} was NOT removed at the end of its step.`,
      });
  });
  return out;
}

/** Every finding that needs a human, cautions first. */
export function findings(events: LedgerEvent[], verdict: Verdict): Finding[] {
  const all = [
    ...recordFindings(verdict),
    ...commitFindings(events),
    ...leakFindings(events),
    ...fenceFindings(events),
    ...revocationFindings(events),
    ...publishFindings(events),
    ...scopeFindings(events),
    ...identityFindings(events),
  ];
  return [...all.filter((f) => f.level === 'caution'), ...all.filter((f) => f.level === 'warning')];
}

/** The status line and the alerts, for the top of the summary. */
export function findingBlocks(events: LedgerEvent[], verdict: Verdict): Block[] {
  const found = findings(events, verdict);
  const record =
    verdict.status === 'intact' ? ['record intact'] : found.length ? [] : [`record ${verdict.status}`];
  const status = found.length
    ? `Cordon: ${plural(found.length, 'finding needs', 'findings need')} a human — ${[...record, ...found.map((f) => f.short)].join(', ')}`
    : `Cordon: nothing needs a human — ${[...record, 'nothing blocked, no secret left behind'].join(', ')}`;
  return [
    { kind: 'para', text: status, strong: true },
    // Each alert bounded: one the agent's strings fill cannot push the others past the limit.
    ...found.map((f): Block => ({ kind: 'alert', level: f.level, text: cut(f.text, ALERT_TEXT) })),
  ];
}
