/**
 * The summary's sections, one function each, in the order they are shown: who the agent was,
 * what it was allowed, what it touched, (blocked.ts: what was blocked, secrets left behind)
 * the commits it authored, (publish.ts: what publish pushed or refused) and everything else. Each turns the ledger's events into blocks (see doc.ts).
 */
import type { LedgerEvent, LedgerLine } from '../ledger/ledger.js';
import {
  commitsListed,
  eventsOf,
  unclassifiedCommits,
  type CommitsObserved,
  type EgressReport,
  type EgressStarted,
  type EventTypes,
  type RunFinished,
  type RunStarted,
  type TokenRevoked,
} from '../ledger/events.js';
import { oneLine, scrubShapes, shownReached } from '../platform/redact.js';
import type { Block } from './doc.js';
import { listedNames } from './blocked.js';

type Known = keyof EventTypes;
const KNOWN: Known[] = [
  'run.recorded',
  'credentials.issued',
  'credentials.ended',
  'token.issued',
  'token.revoked',
  'egress.started',
  'egress.report',
  'egress.tampered',
  'secrets.fetched',
  'run.started',
  'run.finished',
  'run.sealed',
  'commits.observed',
  'broker.started',
  'credentials.refreshed',
  'token.refreshed',
  'broker.stopped',
  'ledger.verified',
  'ledger.tampered',
  'report.written',
  'report.followed',
  'publish.pushed',
  'publish.refused',
];

/** Who asked the broker: `comm (pid N, uid U)`, or `uid U` when only the socket's owner is known. */
function askedBy(r: { pid?: number; comm?: string; uid?: number }): string {
  const uid = typeof r.uid === 'number' ? `uid ${r.uid}` : '';
  if (typeof r.pid !== 'number') return uid || '?';
  return `${str(r.comm ?? '?')} (pid ${r.pid}${uid ? `, ${uid}` : ''})`;
}

/** Who the agent was: every identity issued to it (by a step or the broker), and the run it ran in. */
export function whoSection(events: LedgerEvent[]): Block[] {
  const blocks: Block[] = [];
  const run = eventsOf(events, 'run.recorded')[0];
  const tokens = eventsOf(events, 'token.issued');
  const creds = eventsOf(events, 'credentials.issued');
  blocks.push({ kind: 'heading', level: 3, text: 'Who the agent was' });
  const who: string[][] = [];
  for (const t of tokens)
    who.push(['GitHub App bot', t.bot, `app ${t.app}, installation ${t.installationId}`]);
  for (const c of creds) who.push(['AWS role session', c.assumedRoleArn, `session ${c.sessionName}`]);
  // The Unix user each run step's command ran as: its own (made and removed) or the runner's.
  const finished = eventsOf(events, 'run.finished');
  eventsOf(events, 'run.started').forEach((r, i) => {
    const u = r.user;
    if (!u) return;
    if (u.mode === 'agent') {
      const end = finished[i]?.agentUser;
      const removed = end
        ? end.removed
          ? 'removed at its end'
          : 'NOT removed at its end'
        : 'its end not recorded';
      who.push([
        'Unix user',
        str(u.name),
        `uid ${str(u.uid)}, made for this step (via ${str(u.via)}), ${removed}`,
      ]);
    } else
      who.push([
        'Unix user',
        'the runner user',
        u.fallback
          ? `shared with the runner and every later step: ${str(u.reason)}`
          : 'shared with the runner and every later step (user: runner)',
      ]);
  });

  // Identities the credential broker issued that no step recorded as issued.
  for (const arn of new Set(eventsOf(events, 'credentials.refreshed').map((c) => c.assumedRoleArn)))
    if (!creds.some((c) => c.assumedRoleArn === arn))
      who.push(['AWS role session (broker)', arn, 'refreshed by the credential broker']);
  for (const inst of new Set(eventsOf(events, 'token.refreshed').map((t) => `${t.app} ${t.installationId}`)))
    if (!tokens.some((t) => `${t.app} ${t.installationId}` === inst)) {
      const [app, id] = inst.split(' ');
      who.push(['GitHub App (broker)', `${app}[bot]`, `app ${app}, installation ${id}`]);
    }
  if (who.length === 0) who.push(['(none issued)', 'the agent ran with no identity of its own', '']);
  blocks.push({ kind: 'table', headers: ['Identity', 'Name', 'Detail'], rows: who });
  if (run) {
    const rows: string[][] = [
      ['Repository', str(run.repository)],
      ['Workflow / job', `${str(run.workflow)} / ${str(run.job)}`],
      ['Run', `${str(run.runId)} attempt ${str(run.runAttempt)}`],
      ['Event', str(run.event)],
      ['Commit at start', str(run.sha)],
      ['Ref', str(run.ref)],
      ['Started by (human, not the agent)', `${str(run.triggeringActor || run.actor)}`],
    ];
    if (run.oidc) rows.push(['OIDC subject', str(run.oidc.sub)], ['OIDC issuer', str(run.oidc.iss)]);
    blocks.push({ kind: 'table', headers: ['Run', 'Value'], rows });
  }
  return blocks;
}

/** What the agent was allowed: AWS policies, GitHub permissions, the network policy, secrets. */
export function allowedSection(events: LedgerEvent[]): Block[] {
  const blocks: Block[] = [];
  const creds = eventsOf(events, 'credentials.issued');
  const tokens = eventsOf(events, 'token.issued');
  blocks.push({ kind: 'heading', level: 3, text: 'What the agent was allowed' });
  const allowedRows: string[][] = [];
  // The broker's first issuance of a role no step recorded as issued stands for its credentials.
  const brokered = eventsOf(events, 'credentials.refreshed').filter(
    (c) => c.issuance === 1 && !creds.some((i) => i.role === c.role),
  );
  for (const c of [...creds, ...brokered]) {
    const stmts = (c.statements ?? [])
      .map((s) => `${s.effect} ${s.actions.join(', ')} on ${s.resources.join(', ')}`)
      .join('; ');
    allowedRows.push([
      'issuance' in c ? 'AWS (broker)' : 'AWS',
      c.role,
      c.unscoped
        ? `UNSCOPED: every permission the role has (no session policy${c.unscoped === 'chosen' ? "; allow: '*'" : ''})`
        : stmts || 'role policy only',
      [...(c.managedPolicies ?? [])].join(', '),
      until(c.expiration),
    ]);
  }
  for (const t of tokens) {
    const perms = Object.entries(t.permissions)
      .map(([k, v]) => `${k}: ${v}`)
      .join(', ');
    allowedRows.push(['GitHub', t.repositories.join(', '), perms, '', until(t.expiresAt)]);
  }
  for (const e of eventsOf(events, 'egress.started')) {
    allowedRows.push([
      'Network',
      `${e.policy} mode, preset ${e.preset}`,
      [...e.domains, ...e.ips].join(', ') || 'nothing',
      lockText(e),
      '',
    ]);
  }
  for (const s of eventsOf(events, 'secrets.fetched')) {
    allowedRows.push([
      'Secrets',
      s.secrets.map((x) => x.name).join(', '),
      s.secrets.map((x) => x.source).join(', '),
      s.export ?? 'command only',
      '',
    ]);
  }
  blocks.push(
    allowedRows.length
      ? { kind: 'table', headers: ['Kind', 'Scope', 'Grants', 'Also', 'Expires'], rows: allowedRows }
      : { kind: 'para', text: 'No credentials, tokens, network policy or secrets were recorded.' },
  );
  return blocks;
}

/** What the agent touched: its commands, the names it reached, credentials ended and revoked, the broker's issuances. */
export function touchedSection(events: LedgerEvent[]): Block[] {
  const blocks: Block[] = [];
  blocks.push({ kind: 'heading', level: 3, text: 'What the agent touched' });
  const runsStarted = eventsOf(events, 'run.started');
  const runsFinished = eventsOf(events, 'run.finished');
  if (runsStarted.length || runsFinished.length) {
    const rows = runsFinished.map((f, i) => runRow(runsStarted[i], f));
    if (runsStarted.length > runsFinished.length)
      rows.push(runRow(runsStarted[runsStarted.length - 1], undefined));
    blocks.push({
      kind: 'table',
      headers: ['Command', 'sha256', 'Secrets given', 'Exit', 'Duration', 'Bytes scrubbed'],
      rows,
    });
    for (const st of runsStarted) {
      if (st.containment === 'process-group')
        blocks.push({
          kind: 'para',
          text: `Containment was weaker: the command ran in a process group only, not a cgroup of its own (${str(st.containmentReason)}).`,
          strong: true,
        });
      if (st.withheld?.length)
        blocks.push({
          kind: 'para',
          text: `Withheld from the command (earlier steps' credentials): ${st.withheld.join(', ')}.`,
        });
    }
    for (const f of runsFinished)
      if (f.processesAlive)
        blocks.push({
          kind: 'para',
          text: `${f.processesAlive} process(es) the command left running were killed when it ended${f.containment === 'cgroup' ? ' (with its cgroup)' : ''}${f.processesLeft ? `; ${f.processesLeft} would not die in time` : ''}.`,
          strong: !!f.processesLeft,
        });
  }
  const reports = eventsOf(events, 'egress.report');
  const allowedNames = reports.flatMap((r) => r.allowed);
  const listed = listedNames(events);
  if (allowedNames.length) {
    blocks.push({
      kind: 'table',
      headers: ['Name reached', 'Queries', 'Addresses'],
      rows: allowedNames.map((a) => [
        shownReached(a.name, listed),
        String(a.queries),
        a.addresses.join(', '),
      ]),
    });
  }
  for (const r of reports) if (r.dns) blocks.push(dnsHealthText(r.dns));
  for (const r of reports) if (r.webGate) blocks.push(webGateText(r.webGate));
  for (const c of eventsOf(events, 'credentials.ended')) {
    blocks.push({
      kind: 'para',
      text: `AWS credentials for ${c.role} ended with ${c.secondsLeft}s left; removed: ${c.filesRemoved.join(', ') || 'nothing'}.`,
    });
  }
  for (const t of eventsOf(events, 'token.revoked'))
    blocks.push({ kind: 'para', text: tokenRevokedText(t), strong: t.status !== 'revoked' });
  const brokerRows = [
    ...eventsOf(events, 'credentials.refreshed').map((c) => [
      'AWS',
      c.assumedRoleArn,
      String(c.issuance),
      c.expiration,
      c.requester,
    ]),
    ...eventsOf(events, 'token.refreshed').map((t) => [
      'GitHub',
      t.repositories.join(', '),
      String(t.issuance),
      t.expiresAt,
      t.requester,
    ]),
  ].map(([kind, scope, n, expires, who]) => {
    const r = who as { pid?: number; comm?: string; uid?: number } | undefined;
    return [str(kind), str(scope), str(n), until(str(expires)), r ? askedBy(r) : ''];
  });
  if (brokerRows.length)
    blocks.push({
      kind: 'table',
      headers: ['Broker issued', 'Scope', 'Issuance', 'Expires', 'Asked by'],
      rows: brokerRows,
    });
  for (const b of eventsOf(events, 'broker.stopped'))
    blocks.push({
      kind: 'para',
      text:
        `Credential broker stopped (${b.reason}): ${b.requests} request(s), ${b.unauthorized} refused (401), ` +
        `${b.awsRefreshes} AWS issuance(s), ${b.tokenRefreshes} GitHub token(s); revoked ${b.revocations.revoked}, ` +
        `failed ${b.revocations.failed}` +
        (b.handedOutValidUntil ? `; credentials handed out stay valid until ${b.handedOutValidUntil}.` : '.'),
      strong: b.unauthorized > 0 || b.revocations.failed > 0,
    });
  if (!runsStarted.length && !allowedNames.length)
    blocks.push({ kind: 'para', text: 'No command or network use was recorded.' });
  return blocks;
}

/** The commits the agent authored, with who they claim to be by and the verdict on it. */
export function commitsSection(events: LedgerEvent[]): Block[] {
  const blocks: Block[] = [];
  blocks.push({ kind: 'heading', level: 3, text: 'Commits the agent authored' });
  const commits = commitsListed(eventsOf(events, 'commits.observed'));
  const unchecked = new Set(
    eventsOf(events, 'commits.observed').flatMap((c) => (c.unchecked ? [c.unchecked] : [])),
  );
  blocks.push(
    commits.length
      ? {
          kind: 'table',
          headers: ['Commit', 'Author', 'Committer', 'Co-authors', 'Signature', 'Verdict', 'Subject'],
          rows: commits.map((c) => [
            c.sha.slice(0, 12),
            `${c.author} <${c.authorEmail}>`,
            `${c.committer} <${c.committerEmail}>`,
            c.coAuthors.join(', '),
            c.signature,
            verdictLabel(c.verdict) +
              (c.objectMismatch ? ' (object rewritten)' : '') +
              (c.ambiguousIdentity ? ' (two addresses)' : '') +
              (c.hiddenFromHistory ? " (hidden from git's history)" : ''),
            c.subject,
          ]),
        }
      : unchecked.size
        ? { kind: 'para', text: 'No commits listed.' }
        : { kind: 'para', text: 'No new commits.' },
  );
  for (const why of unchecked)
    blocks.push({ kind: 'para', text: `The commits could not be checked: ${why}.`, strong: true });
  const partial = new Set(
    eventsOf(events, 'commits.observed').flatMap((c) => (Array.isArray(c.partial) ? c.partial : [])),
  );
  if (partial.size)
    blocks.push({
      kind: 'para',
      text: `The commits were looked for only in part: ${[...partial].join('; ').slice(0, 1000)}.`,
      strong: true,
    });
  // With an agent identity issued the cut list is a caution alert (findings.ts), not said twice.
  if (eventsOf(events, 'commits.observed').some((c) => c.truncated && !unclassifiedCommits(c))) {
    blocks.push({
      kind: 'para',
      text: 'More commits were made than listed; see the repository history.',
      strong: true,
    });
  }
  return blocks;
}

/** Events the summary does not know (shown generically), malformed lines, and the full ledger. */
export function otherSection(events: LedgerEvent[], lines: LedgerLine[]): Block[] {
  const blocks: Block[] = [];
  const other = events.filter((e) => !(KNOWN as string[]).includes(e.type));
  if (other.length) {
    blocks.push({ kind: 'heading', level: 3, text: 'Other events' });
    blocks.push({
      kind: 'table',
      headers: ['Time', 'Action', 'Event', 'Data'],
      rows: other.map((e) => [e.time, e.action, e.type, str(e.data)]),
    });
  }
  const bad = lines.filter((l) => l.error);
  if (bad.length)
    blocks.push({
      kind: 'table',
      headers: ['Ledger line', 'Problem'],
      rows: bad.map((l) => [String(l.line), l.error ?? '']),
    });
  blocks.push({
    kind: 'details',
    summary: `Full ledger (${lines.length} lines)`,
    blocks: [
      {
        kind: 'table',
        headers: ['#', 'Time', 'Action', 'Event'],
        rows: lines.map((l) => [
          String(l.line),
          l.event?.time ?? '',
          l.event?.action ?? '',
          l.event?.type ?? '(invalid)',
        ]),
      },
    ],
  });
  return blocks;
}

function str(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

function until(expiration: string | undefined): string {
  if (!expiration) return '';
  return expiration.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function lockText(e: EgressStarted): string {
  const locks = [
    e.disableSudo ? 'sudo locked' : 'sudo open',
    e.disableDocker ? 'docker locked' : 'docker open',
  ];
  return locks.join(', ');
}

function runRow(s: RunStarted | undefined, f: RunFinished | undefined): string[] {
  return [
    // Recorded scrubbed; scrubbed again for what looks like a credential (older ledgers, forged lines).
    s?.command ? oneLine(scrubShapes(s.command), 100) : '',
    s ? s.commandSha256.slice(0, 16) : '',
    s ? s.secrets.map((x) => x.name).join(', ') : '',
    f
      ? f.notStarted
        ? 'not started'
        : f.timedOut
          ? 'timed out'
          : String(f.exitCode ?? f.signal ?? '')
      : 'still running or lost',
    f ? `${(f.durationMs / 1000).toFixed(1)}s` : '',
    f ? String(f.bytesScrubbed) : '',
  ];
}

function tokenRevokedText(t: TokenRevoked): string {
  if (t.status === 'revoked')
    return `GitHub token revoked${t.confirmStatus ? ` (confirmed: HTTP ${t.confirmStatus})` : ''}.`;
  if (t.status === 'skipped')
    return `GitHub token NOT revoked: ${t.detail ?? 'skip-token-revoke was set; it stays valid until it expires'}.`;
  return `GitHub token revocation FAILED${t.detail ? `: ${t.detail}` : ''}; it stays valid until it expires.`;
}

function verdictLabel(v: CommitsObserved['commits'][number]['verdict']): string {
  return {
    agent: 'by the agent',
    impersonation: 'IMPERSONATION',
    unattributed: 'unattributed',
    human: 'human',
  }[v];
}

/** One line on the agent's web gate; strong when it reset a connection. */
function webGateText(g: NonNullable<EgressReport['webGate']>): Block {
  const parts = [
    `${g.passed} agent connections on ports 80/443 let through by the name they asked for`,
    `${g.refused} reset (another name, none, or an address not answered for it)`,
  ];
  if (g.overCap) parts.push(`${g.overCap} reset because the gate held as many as it keeps at once`);
  return { kind: 'para', text: `Web gate: ${parts.join(', ')}.`, strong: g.refused + g.overCap > 0 };
}

/** One line on how the DNS proxy did; strong when an answer was refused for want of a set update. */
function dnsHealthText(d: NonNullable<EgressReport['dns']>): Block {
  const parts = [
    `${d.answeredFromCache} answered from the proxy's cache`,
    `${d.upstreamTimeouts} upstream timeouts`,
  ];
  if (d.malformed) parts.push(`${d.malformed} malformed queries refused`);
  if (d.setFailures)
    parts.push(
      `${d.setFailures} answers refused (SERVFAIL) because the firewall's sets could not be updated`,
    );
  // Only a client holding many connections open at once (a flood, or a leak) gets here.
  if (d.tcpEvicted)
    parts.push(
      `${d.tcpEvicted} TCP clients closed to make room for new ones (more were held open at once than the proxy keeps; the least recently active went, with any lookup still waiting on it)`,
    );
  return { kind: 'para', text: `DNS proxy: ${parts.join(', ')}.`, strong: d.setFailures > 0 };
}
