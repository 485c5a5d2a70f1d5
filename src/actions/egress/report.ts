/**
 * Post: ask the daemon what it saw, record it in the ledger, annotate each blocked name
 * once, and in audit mode print an `allowed-domains` block built from what was used.
 * Nothing that keeps the fence up is stopped unless `teardown` asks for it.
 */
import { spawnSync } from 'node:child_process';
import { CordonError } from '../../platform/errors.js';
import type { EgressReport } from '../../ledger/events.js';
import type { Ledger } from '../../ledger/ledger.js';
import type { Runner } from '../../platform/runner.js';
import { shownName } from '../../platform/redact.js';
import { requestReport, type DaemonReport } from '../../rootd/protocol.js';
import type { EgressSettings } from './inputs.js';
import { suggestAllowlist } from '../../fence/policy.js';

const MAX_ANNOTATIONS = 40;
/**
 * Refused queries in one second from which the report calls it a flood (docs/egress.md):
 * a job's programs asking for names they may not have do so a few times a lookup.
 */
export const REFUSED_FLOOD_PER_SECOND = 1000;

export interface ReportDeps {
  runner: Runner;
  ledger: Ledger;
  daemonScript: string;
  isRoot?: boolean;
  node?: string;
}

export function toEvent(r: DaemonReport): EgressReport {
  // A name answered for both identities is one entry: its queries summed, its addresses joined.
  const answered = (names: DaemonReport['names']): EgressReport['allowed'] => {
    const byName = new Map<string, EgressReport['allowed'][number]>();
    for (const n of names) {
      const had = byName.get(n.name);
      if (!had) byName.set(n.name, { name: n.name, queries: n.queries, addresses: [...n.addresses] });
      else {
        had.queries += n.queries;
        had.addresses = [...new Set([...had.addresses, ...n.addresses])];
      }
    }
    return [...byName.values()];
  };
  const refused = r.names.filter((n) => !n.allowed);
  const event: EgressReport = {
    policy: r.policy,
    allowed: answered(r.policy === 'audit' ? r.names : r.names.filter((n) => n.allowed)),
    blockedNames: refused.map((n) => ({
      name: n.name,
      queries: n.queries,
      ...(n.process ? { process: n.process } : {}),
      ...(n.identity ? { identity: n.identity } : {}),
      ...(n.carriesSecret ? { carriesSecret: n.carriesSecret } : {}),
    })),
    blockedDestinations: r.blocked.map((b) => ({
      address: b.address,
      protocol: b.protocol,
      port: b.port || undefined,
      packets: b.packets,
      ...(b.process ? { process: b.process } : {}),
      ...(b.identity ? { identity: b.identity } : {}),
    })),
    ...(r.blockedLeftOut?.destinations ? { blockedDestinationsLeftOut: r.blockedLeftOut } : {}),
    ...(r.blockedUnrecorded ? { blockedUnrecordedPackets: r.blockedUnrecorded } : {}),
    ...(r.rebinding?.length ? { rebinding: r.rebinding } : {}),
    forgedAnswers: r.forgedAnswers,
    tamper: r.tamper,
    namesDropped: r.namesDropped,
    ...(r.refusals ? { refusals: refusalsOf(r.refusals) } : {}),
    dns: {
      answeredFromCache: r.cacheHits ?? 0,
      upstreamTimeouts: r.upstreamTimeouts,
      malformed: r.malformed,
      setFailures: r.setFailures,
      tcpEvicted: r.tcpEvicted ?? 0,
    },
    ...(r.webGate ? { webGate: r.webGate } : {}),
    ...(r.runCgroups?.length ? { runCgroups: r.runCgroups } : {}),
  };
  if (r.policy === 'audit')
    event.suggestedAllowlist = suggestAllowlist(
      r.names.filter((n) => (n.addresses.length || n.allowed) && !n.carriesSecret).map((n) => n.name),
    );
  return event;
}

function refusalsOf(r: NonNullable<DaemonReport['refusals']>): NonNullable<EgressReport['refusals']> {
  return {
    total: r.total,
    peakPerSecond: r.peakPerSecond,
    unanswered: r.unanswered,
    kernelDropped: r.kernelDropped,
    ...(r.droppedByUid?.length ? { droppedByUid: r.droppedByUid } : {}),
    flood: r.peakPerSecond >= REFUSED_FLOOD_PER_SECOND || r.kernelDropped > 0,
    topSources: r.sources.map((x) => ({
      protocol: x.proto,
      address: x.address,
      port: x.port,
      queries: x.refused,
      peakPerSecond: x.peakPerSecond,
      ...(x.process ? { process: x.process } : {}),
      identity: x.identity,
    })),
  };
}

/** The annotation for a flood of refused names: the rate and the top sources. */
export function floodNote(r: NonNullable<EgressReport['refusals']>): string {
  const top = r.topSources
    .slice(0, 3)
    .map((x) => `${x.process ?? `${x.protocol} port ${x.port}`} (${x.queries}, up to ${x.peakPerSecond}/s)`)
    .join(', ');
  const uids = (r.droppedByUid ?? []).map((u) => `uid ${u.uid} (${u.dropped})`).join(', ');
  return `a flood of refused DNS names: ${r.total} refused, up to ${r.peakPerSecond} a second, ${r.unanswered} left unanswered and ${r.kernelDropped} dropped by the kernel${uids ? `, over a user's rate: ${uids}` : ''}; most from ${top || 'unknown sources'}`;
}

export async function reportFence(s: EgressSettings, deps: ReportDeps): Promise<void> {
  const { runner, ledger } = deps;
  const id = runner.getState('egress-id');
  if (!id) {
    runner.info('egress: main did not start the fence; nothing to report');
    return;
  }
  let daemon: DaemonReport;
  try {
    daemon = await requestReport(id);
  } catch (e) {
    // Only root can stop it: recorded as tampering, like a change to the table.
    const what = 'the egress daemon was not running';
    ledger.append('egress.report', {
      policy: s.policy,
      allowed: [],
      blockedNames: [],
      blockedDestinations: [],
      tamper: [what],
    });
    ledger.append('egress.tampered', { changes: [{ what, seen: new Date().toISOString() }] });
    if (s.teardown) teardownFence(id, deps, runner);
    throw new CordonError({
      what: 'egress: the daemon did not answer; it was stopped or killed during the job',
      why: `${e instanceof Error ? e.message : String(e)}; block mode stays closed (the table is still loaded), but names are no longer answered`,
      fix: 'find the step that killed it (it needs root, so check sudo use) and set `disable-sudo: true`',
    });
  }
  const event = toEvent(daemon);
  ledger.append('egress.report', { ...event });
  if (daemon.tamper.length) {
    ledger.append('egress.tampered', {
      changes: daemon.tamper.map((what, i) => ({ what, seen: daemon.tamperSeen?.[i] || undefined })),
    });
  }
  const verb = s.policy === 'block' ? 'blocked' : 'would be blocked';
  // One annotation per name and per destination, up to a cap: the runner shows only
  // the first few dozen annotations of a step anyway; the ledger keeps them all.
  const rebinding = event.rebinding ?? [];
  // A flood's own names are told by its one note (all are in the ledger and the summary),
  // so they do not use up the annotations other refusals need.
  const flooders = new Set(
    (event.refusals?.flood ? event.refusals.topSources : [])
      .filter((x) => x.queries >= REFUSED_FLOOD_PER_SECOND)
      .map((x) => x.process),
  );
  const notes = [
    ...(event.refusals?.flood ? [floodNote(event.refusals)] : []),
    ...rebinding.map(
      (r) =>
        `DNS answer for ${r.name} pointed inward (${r.addresses.map((a) => `${a.address} ${a.kind}`).join(', ')}): a rebinding attempt, ${s.policy === 'block' ? 'refused' : 'let through (audit)'}${forWhom(r.identity)} (${r.answers} answers)`,
    ),
    // A refused name is the agent's choice and can carry a value: shown as the summary shows it.
    ...event.blockedNames
      .filter((n) => !n.process || !flooders.has(n.process))
      .map(
        (n) =>
          `DNS name ${shownName(n)} ${verb}${forWhom(n.identity)} (${n.queries} queries${n.process ? `, asked by ${n.process}` : ''})`,
      ),
    ...event.blockedDestinations.map(
      (d) =>
        `connection to ${d.address} ${d.protocol}${d.port ? `/${d.port}` : ''} ${verb}${forWhom(d.identity)} (${d.packets} packets${d.process ? `, from ${d.process}` : ''})`,
    ),
  ];
  for (const n of notes.slice(0, MAX_ANNOTATIONS)) runner.warning(`egress: ${n}`, { title: 'Cordon egress' });
  if (notes.length > MAX_ANNOTATIONS) {
    runner.warning(
      `egress: ${notes.length - MAX_ANNOTATIONS} more refusals are in the ledger and the job summary`,
      {
        title: 'Cordon egress',
      },
    );
  }
  runner.info(
    `egress: ${event.allowed.length} names answered, ${rebinding.length} answering inward, ${event.blockedNames.length} names and ${event.blockedDestinations.length} destinations ${verb}, ${daemon.forgedAnswers} forged answers ignored, ${daemon.cacheHits ?? 0} answered from the cache, ${daemon.upstreamTimeouts} upstream timeouts`,
  );
  if (event.suggestedAllowlist) {
    const block = ['allowed-domains: |', ...event.suggestedAllowlist.map((n) => `  ${n}`)].join('\n');
    runner.notice(`egress audit: paste this into the step's inputs to allow what this run used:\n${block}`, {
      title: 'Cordon egress audit',
    });
    runner.appendSummary(
      `### Cordon egress audit\n\nSuggested allowlist, built from the names this run resolved:\n\n\`\`\`yaml\n${block}\n\`\`\`\n`,
    );
    runner.setOutput('suggested-allowed-domains', event.suggestedAllowlist.join('\n'));
  }
  if (s.teardown) teardownFence(id, deps, runner);
  const tampered = daemon.tamper.length > 0;
  if (tampered && !s.failOnTamper) {
    runner.warning(`egress: the fence was tampered with: ${daemon.tamper.join('; ')}`, {
      title: 'Cordon egress',
    });
  } else if (tampered) {
    throw new CordonError({
      what: `egress: the fence was tampered with: ${daemon.tamper.join('; ')}`,
      why: 'only root can change the table or the resolver, so something in the job used root',
      fix: 'set `disable-sudo: true` and `disable-docker: true`, and find the step that did it',
    });
  }
  const blockedCount = event.blockedNames.length + event.blockedDestinations.length + rebinding.length;
  if (s.failOnBlocked && blockedCount > 0) {
    throw new CordonError({
      what: `egress: ${blockedCount} names or destinations were ${verb}`,
      why: '`fail-on-blocked: true` fails the job when anything was refused',
      fix: 'add what the job needs to allowed-domains or allowed-ips, or remove the step that reached out',
      input: 'fail-on-blocked',
    });
  }
}

/** Which identity tried: the agent gets allowed-domains only, the runner the preset too. */
function forWhom(identity: 'agent' | 'runner' | undefined): string {
  if (identity === 'agent') return ' for the agent (allowed-domains and allowed-ips only, never the preset)';
  if (identity === 'runner') return ' for the runner';
  return '';
}

function teardownFence(id: string, deps: ReportDeps, runner: Runner): void {
  const isRoot = deps.isRoot ?? process.getuid?.() === 0;
  const node = deps.node ?? process.execPath;
  const argv = isRoot
    ? [node, deps.daemonScript, 'teardown', id]
    : ['sudo', '-n', node, deps.daemonScript, 'teardown', id];
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 15000 });
  if (r.status === 0) runner.info('egress: fence removed, resolver and sudo restored');
  else
    runner.warning(
      `egress: teardown failed: ${(r.stdout || r.stderr || r.error?.message || '').trim().slice(0, 500)}`,
    );
}
