/**
 * The summary's egress and secrets sections: what the fence blocked (with who asked and a
 * paste-ready allowlist) and the secrets the leak scan found left behind.
 */
import type { LedgerEvent } from '../ledger/ledger.js';
import { eventsOf, type EgressReport } from '../ledger/events.js';
import { oneLine, redactLabels, shownName, shownReached } from '../platform/redact.js';
import { floodBlocks } from './flood.js';
import type { Block } from './doc.js';

/** Names offered in the allowlist at most; a run that asked for thousands needs a look, not a paste. */
const MAX_ALLOWLIST = 100;

type Asker = { process?: string; identity?: 'agent' | 'runner' };

/** The agents' Unix users by uid, from run.started, to name a process that was already gone. */
function agentUsers(events: LedgerEvent[]): Map<number, string> {
  const users = new Map<number, string>();
  for (const r of eventsOf(events, 'run.started'))
    if (r.user?.mode === 'agent' && typeof r.user.uid === 'number' && r.user.name)
      users.set(r.user.uid, r.user.name);
  return users;
}

/**
 * Who asked for a blocked name or destination. The daemon finds the process from its
 * socket, which is often closed by the time it looks (a refused name is answered at once;
 * a rejected connection ends at once): then the uid it left, or the identity whose set
 * refused it (the agent's own user or anyone else), still says who.
 */
export function askedBy(a: Asker, users: Map<number, string>): string {
  const gone = a.process?.match(/^uid (\d+) \(process already gone\)$/);
  if (a.process && !gone) return oneLine(a.process, 80);
  const uid = gone ? Number(gone[1]) : undefined;
  const name = uid === undefined ? undefined : users.get(uid);
  if (name) return `the agent's user ${name} (uid ${uid}; process already gone)`;
  if (uid === undefined && a.identity === 'agent') return "the agent's user";
  if (uid === undefined && a.identity === 'runner') return 'the runner user or root';
  return uid === undefined ? '' : `uid ${uid} (process already gone)`;
}

/** A name fit for `allowed-domains` as it is, or undefined (then it is not offered). */
function allowlistEntry(name: string): string | undefined {
  return /^[a-z0-9*]([a-z0-9_-]*\.)*[a-z0-9_-]+\.?$/i.test(name) && name.length <= 253
    ? name.replace(/\.$/, '')
    : undefined;
}

/** A comment for the allowlist: printable ASCII on one line, never a line break into the YAML. */
const comment = (s: string): string => oneLine(s, 100).replace(/[^\x20-\x7e]/g, '?');

function allowlistBlocks(
  events: LedgerEvent[],
  reports: EgressReport[],
  users: Map<number, string>,
): Block[] {
  const asked = new Map<string, string>();
  let unfit = 0;
  for (const r of reports)
    for (const b of r.blockedNames) {
      const entry = allowlistEntry(b.name);
      if (!entry || redactLabels(entry) !== entry) unfit++;
      else if (!asked.has(entry) && asked.size < MAX_ALLOWLIST) asked.set(entry, askedBy(b, users));
      else if (!asked.has(entry)) unfit++;
    }
  // In audit mode the daemon also suggests what was used; offered as it is.
  const used = reports
    .flatMap((r) => r.suggestedAllowlist ?? [])
    .filter((n) => allowlistEntry(n))
    .slice(0, MAX_ALLOWLIST);
  if (!asked.size && !used.length) return [];
  const already = [...new Set(eventsOf(events, 'egress.started').flatMap((e) => e.domains))].filter((d) =>
    allowlistEntry(d),
  );
  const blocked = reports.some((r) => r.policy === 'audit') ? 'would be blocked' : 'blocked';
  const lines = ['allowed-domains: |'];
  for (const d of already) lines.push(`  ${d}  # allowed already`);
  for (const d of used) if (!already.includes(d) && !asked.has(d)) lines.push(`  ${d}  # used (audit)`);
  for (const [name, who] of asked)
    if (!already.includes(name))
      lines.push(`  ${name}  # ${blocked}${who ? `; asked by ${comment(who)}` : ''}`);
  const blocks: Block[] = [
    {
      kind: 'para',
      text: 'Allowlist to paste into the egress step if these names were meant (review each one first: a name the agent was not meant to reach is what the fence is for):',
    },
    { kind: 'code', lang: 'yaml', text: lines.join('\n') },
  ];
  if (unfit)
    blocks.push({
      kind: 'para',
      text: `${unfit} blocked name(s) are left out of it: past the first ${MAX_ALLOWLIST}, not a plain domain name, or carrying what looks like data.`,
    });
  return blocks;
}

/**
 * An egress.report with its names as the summary shows them: a refused name or one that
 * answered inward was chosen by the agent and can carry a secret it is smuggling out, and
 * attribution.json is uploaded where everyone who can read the run reads it; so can the
 * labels of a reached name left of the listed wildcard it matched (`listed`: the egress
 * steps' names). Names of
 * another shape (a forged line) are left to the record's own finding.
 */
export function shownReport(r: EgressReport, listed: readonly string[]): EgressReport {
  const named = <T extends { name: string }>(
    list: T[] | undefined,
    show: (n: T) => string,
  ): T[] | undefined =>
    Array.isArray(list) ? list.map((n) => (typeof n?.name === 'string' ? { ...n, name: show(n) } : n)) : list;
  return {
    ...r,
    blockedNames: named(r.blockedNames, shownName) ?? r.blockedNames,
    allowed: named(r.allowed, (n) => shownReached(n.name, listed)) ?? r.allowed,
    ...(r.rebinding ? { rebinding: named(r.rebinding, (n) => redactLabels(n.name)) } : {}),
  };
}

/** The names the egress steps listed (preset, Cordon's own and the workflow's). */
export function listedNames(events: LedgerEvent[]): string[] {
  return eventsOf(events, 'egress.started').flatMap((e) => (Array.isArray(e.domains) ? e.domains : []));
}

/** What was blocked: answers pointing inward, names and destinations refused, tampering with the fence. */
export function blockedSection(events: LedgerEvent[]): Block[] {
  const blocks: Block[] = [{ kind: 'heading', level: 3, text: 'What was blocked' }];
  const reports = eventsOf(events, 'egress.report');
  const users = agentUsers(events);
  const rebinding = reports.flatMap((r) =>
    (r.rebinding ?? []).map((b) => [
      redactLabels(b.name),
      b.addresses.map((a) => `${a.address} (${a.kind})`).join(', '),
      String(b.answers),
      askedBy(b, users),
      r.policy === 'audit' ? 'would refuse (audit)' : 'refused',
    ]),
  );
  const names = reports.flatMap((r) =>
    r.blockedNames.map((b) => [
      shownName(b),
      String(b.queries),
      askedBy(b, users),
      r.policy === 'audit' ? 'would block (audit)' : 'refused',
    ]),
  );
  const dests = reports.flatMap((r) =>
    r.blockedDestinations.map((d) => [
      d.address,
      `${d.protocol}${d.port ? `/${d.port}` : ''}`,
      String(d.packets ?? ''),
      askedBy(d, users),
    ]),
  );
  blocks.push(...floodBlocks(reports));
  if (rebinding.length)
    blocks.push({
      kind: 'table',
      headers: ['Rebinding attempt: name answered inward', 'Addresses', 'Answers', 'Asked by', 'Outcome'],
      rows: rebinding,
    });
  if (names.length)
    blocks.push({ kind: 'table', headers: ['Name', 'Queries', 'Asked by', 'Outcome'], rows: names });
  if (dests.length)
    blocks.push({
      kind: 'table',
      headers: ['Destination', 'Protocol/port', 'Packets', 'Asked by'],
      rows: dests,
    });
  for (const r of reports) {
    const left = r.blockedDestinationsLeftOut;
    if (left?.destinations)
      blocks.push({
        kind: 'para',
        text: `${left.destinations} more blocked destination(s), ${left.packets} packet(s) in all, are left out of this list: it holds those with the most packets.`,
      });
    if (r.blockedUnrecordedPackets)
      blocks.push({
        kind: 'para',
        text: `${r.blockedUnrecordedPackets} packet(s) went to destinations the full record could not hold: refused, but not listed.`,
        strong: true,
      });
  }
  if (!rebinding.length && !names.length && !dests.length)
    blocks.push({ kind: 'para', text: 'Nothing was blocked.' });
  for (const t of reports.flatMap((r) => r.tamper ?? []))
    blocks.push({ kind: 'para', text: `Egress fence tampered with: ${t}.`, strong: true });
  blocks.push(...allowlistBlocks(events, reports, users));
  return blocks;
}

/**
 * Secrets the leak scan found written to the workspace or its history (by name and place),
 * and what it could not read (past its bounds, or a format it does not open).
 */
export function leaksSection(events: LedgerEvent[]): Block[] {
  const finished = eventsOf(events, 'run.finished');
  const leaks = finished.flatMap((f) => f.leaks);
  const unread = finished.flatMap((f) => f.leaksNotScanned ?? []);
  if (!leaks.length && !unread.length) return [];
  const blocks: Block[] = [{ kind: 'heading', level: 3, text: 'Secrets left behind' }];
  if (leaks.length)
    blocks.push({
      kind: 'table',
      headers: ['Secret written to the workspace', 'Where'],
      rows: leaks.map((l) => [l.secret, `${l.path}:${l.line}`]),
    });
  if (unread.length)
    blocks.push({ kind: 'para', text: `Not read by the leak scan: ${unread.join('; ')}.`, strong: true });
  return blocks;
}
