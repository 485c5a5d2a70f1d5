/**
 * The control server: `control.sock` answers a request with the daemon's report (JSON) and
 * closes; `secret-names <json>` (from run, secret-names.ts) marks names that carried one of
 * run's secrets, so later reports show them as their length only. The report names what
 * was asked and by whom, so only the runner user (post asks as that user) and root may
 * connect (access.ts).
 */
import net from 'node:net';
import { join } from 'node:path';
import { describeError } from '../platform/errors.js';
import { BLOCKED_SET_SIZE, DNS_UID_DROPS_SET, REFUSED_COUNTERS, parseUidDrops } from '../fence/firewall.js';
import { parseBlocked, TABLE, type AllowSets, type BlockedEntry, type NftShell } from '../fence/nftshell.js';
import type { DnsProxy } from '../fence/proxy.js';
import type { WebGate } from '../fence/webgate.js';
import { socketForClient, type Client } from './access.js';
import { destKey, type RootHelper } from './helper.js';
import type { TamperLog } from './tamper.js';
import { CONTROL_SOCKET, type DaemonReport, type Identity } from './protocol.js';
import { parseMarks, type SecretNames } from './secret-names.js';

export interface ReportSources {
  policy: 'block' | 'audit';
  proxy: DnsProxy;
  sets: AllowSets;
  /** The agent's proxy and sets (see firewall.ts). */
  agentProxy: DnsProxy;
  agentSets: AllowSets;
  /** The agent's web gate, in block mode. */
  gate?: WebGate;
  shell: NftShell;
  tamper: TamperLog;
  helper: RootHelper;
}

/** The report as it stands: both proxies' counts and rebinding attempts, the blocked sets, tampering, run's cgroups. */
export async function buildReport(s: ReportSources): Promise<DaemonReport> {
  const blocked: DaemonReport['blocked'] = [];
  const { askers, runCgroups } = s.helper;
  const sets: [string, Identity][] = [
    ['blocked4', 'runner'],
    ['blocked6', 'runner'],
    ['agentblocked4', 'agent'],
    ['agentblocked6', 'agent'],
  ];
  // Each refuse chain's counter first, then its sets: a packet refused in between is in the
  // sets only, never taken for one they could not record.
  const seen: Partial<Record<Identity, number>> = {};
  for (const identity of ['runner', 'agent'] as const) {
    const counter = REFUSED_COUNTERS[identity];
    try {
      seen[identity] = Number(
        /packets (\d+)/.exec(await s.shell.run(`list counter ${TABLE} ${counter}`))?.[1] ?? 0,
      );
    } catch {
      s.tamper.note(`the counter ${counter} could not be read`, true);
    }
  }
  const recorded = { runner: 0, agent: 0 };
  const full = { runner: false, agent: false };
  for (const [set, identity] of sets) {
    try {
      const entries: BlockedEntry[] = parseBlocked(await s.shell.run(`list set ${TABLE} ${set}`));
      for (const b of entries) recorded[identity] += b.packets;
      if (entries.length >= BLOCKED_SET_SIZE) full[identity] = true;
      blocked.push(...entries.map((b) => ({ ...b, process: askers.get(destKey(b)), identity })));
    } catch {
      s.tamper.note(`the set ${set} could not be read`, true);
    }
  }
  // Packets refused to destinations a full set could not record: what the chain counted
  // less what the recorded destinations did. Only where a set is full: else every
  // destination was recorded (and one whose record expired is not a full set's doing).
  let unrecorded = 0;
  for (const identity of ['runner', 'agent'] as const) {
    const n = seen[identity];
    if (n !== undefined && full[identity]) unrecorded += Math.max(0, n - recorded[identity]);
  }
  const listed = listedBlocked(blocked);
  const names = (proxy: DnsProxy, identity: Identity): DaemonReport['names'] =>
    [...proxy.stats.names].map(([name, n]) => ({
      name,
      queries: n.queries,
      allowed: n.allowed,
      addresses: [...n.addresses],
      process: n.source === undefined ? undefined : askers.get(`src ${n.source}`),
      identity,
    }));
  const rebinding = (proxy: DnsProxy, identity: Identity): NonNullable<DaemonReport['rebinding']> =>
    [...proxy.stats.rebinding].map(([name, r]) => ({
      name,
      answers: r.answers,
      addresses: [...r.addresses].map(([address, kind]) => ({ address, kind })),
      identity,
    }));
  const [runner, agent] = [s.proxy.stats, s.agentProxy.stats];
  let kernelDropped = 0;
  try {
    kernelDropped = Number(
      /packets (\d+)/.exec(await s.shell.run(`list counter ${TABLE} dnsflood`))?.[1] ?? 0,
    );
  } catch {
    s.tamper.note('the counter dnsflood could not be read', true);
  }
  let byUid: { uid: number; dropped: number }[] = [];
  try {
    byUid = parseUidDrops(await s.shell.run(`list set ${TABLE} ${DNS_UID_DROPS_SET}`));
  } catch {
    s.tamper.note(`the set ${DNS_UID_DROPS_SET} could not be read`, true);
  }
  const rebound = [...rebinding(s.proxy, 'runner'), ...rebinding(s.agentProxy, 'agent')];
  return {
    policy: s.policy,
    names: [...names(s.proxy, 'runner'), ...names(s.agentProxy, 'agent')],
    namesDropped: runner.namesDropped + agent.namesDropped,
    refusals: refusals(s, askers, kernelDropped, byUid),
    ...(rebound.length ? { rebinding: rebound } : {}),
    forgedAnswers: runner.forgedAnswers + agent.forgedAnswers,
    malformed: runner.malformed + agent.malformed,
    upstreamTimeouts: runner.upstreamTimeouts + agent.upstreamTimeouts,
    setFailures: runner.setFailures + agent.setFailures,
    cacheHits: runner.cacheHits + agent.cacheHits,
    tcpEvicted: runner.tcpEvicted + agent.tcpEvicted,
    ...(s.gate ? { webGate: { ...s.gate.stats } } : {}),
    setUpdates: s.sets.updates + s.agentSets.updates,
    blocked: listed.blocked,
    ...(listed.leftOut.destinations ? { blockedLeftOut: listed.leftOut } : {}),
    ...(unrecorded ? { blockedUnrecorded: unrecorded } : {}),
    tamper: s.tamper.entries,
    tamperSeen: s.tamper.times,
    ...(runCgroups.length ? { runCgroups } : {}),
  };
}

/**
 * Blocked destinations a report lists; the rest are counted. Four full sets hold 32768:
 * listed whole they made a report of megabytes, and a ledger event and summary table
 * nobody reads past the first screen.
 */
export const LISTED_BLOCKED = 500;

/**
 * The destinations a report lists, and what is left out: first the one with the most
 * packets of each address (per identity), then the rest by packets, LISTED_BLOCKED in all.
 * So a scan of one host's ports, however many packets it sends, takes one place before it
 * takes the rest, and a lone attempt at another address stays listed.
 */
export function listedBlocked(all: DaemonReport['blocked']): {
  blocked: DaemonReport['blocked'];
  leftOut: { destinations: number; packets: number };
} {
  const sorted = [...all].sort(
    (a, b) =>
      b.packets - a.packets || (a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port),
  );
  const first: DaemonReport['blocked'] = [];
  const rest: DaemonReport['blocked'] = [];
  const seen = new Set<string>();
  for (const b of sorted) {
    const key = `${b.identity ?? ''} ${b.address}`;
    if (seen.has(key)) rest.push(b);
    else {
      seen.add(key);
      first.push(b);
    }
  }
  const ordered = [...first, ...rest];
  const left = ordered.slice(LISTED_BLOCKED);
  return {
    blocked: ordered.slice(0, LISTED_BLOCKED),
    leftOut: { destinations: left.length, packets: left.reduce((n, b) => n + b.packets, 0) },
  };
}

/** The longest request read (a `secret-names` list of 1000 names fits). */
const MAX_REQUEST = 512 * 1024;
const MARK = 'secret-names ';

/** Serves `control.sock` in `dir`; returns a function that stops serving. */
export async function serveControl(
  dir: string,
  client: Client,
  report: () => Promise<DaemonReport>,
  secretNames: SecretNames,
): Promise<() => void> {
  const control = net.createServer((c) => {
    c.on('error', () => c.destroy());
    c.setTimeout(5000, () => c.destroy());
    // One request a connection: `secret-names` up to its newline (bounded), anything else
    // one report; a sender that never sends is cut off by the timeout.
    let got = '';
    const answer = (): void => {
      c.removeAllListeners('data');
      if (!got.startsWith(MARK)) {
        report().then(
          (r) => c.end(JSON.stringify(got.startsWith('report raw') ? r : secretNames.apply(r))),
          (e) => c.end(JSON.stringify({ error: describeError(e) })),
        );
        return;
      }
      try {
        secretNames.add(parseMarks(got.slice(MARK.length).split('\n')[0]));
        c.end(JSON.stringify({ ok: true }));
      } catch (e) {
        c.end(JSON.stringify({ error: `secret-names: ${describeError(e)}` }));
      }
    };
    c.on('data', (d: Buffer) => {
      got += d.toString('utf8');
      // Not yet enough to tell a `secret-names` request from a report request.
      if (got.length < MARK.length && MARK.startsWith(got)) return;
      if (!got.startsWith(MARK) || got.includes('\n') || got.length > MAX_REQUEST) answer();
    });
  });
  // Post asks once; more at once than this is no client of ours.
  control.maxConnections = 16;
  const sock = join(dir, CONTROL_SOCKET);
  await new Promise<void>((resolve, reject) => {
    control.once('error', reject);
    control.listen(sock, () => resolve());
  });
  socketForClient(sock, client);
  return () => control.close();
}

/** Sources of refused queries listed in the report, most first. */
const TOP_SOURCES = 10;

function refusals(
  s: ReportSources,
  askers: ReadonlyMap<string, string>,
  kernelDropped: number,
  byUid: { uid: number; dropped: number }[],
): NonNullable<DaemonReport['refusals']> {
  const both = [
    [s.proxy, 'runner'],
    [s.agentProxy, 'agent'],
  ] as const;
  const sources = both
    .flatMap(([p, identity]) =>
      [...p.refusals.sources].map(([key, r]) => ({
        proto: r.proto,
        address: r.address,
        port: r.port,
        refused: r.refused,
        peakPerSecond: r.peakPerSecond,
        process: askers.get(`src ${key}`),
        identity,
      })),
    )
    .sort((a, b) => b.refused - a.refused)
    .slice(0, TOP_SOURCES);
  return {
    total: s.proxy.refusals.total + s.agentProxy.refusals.total,
    peakPerSecond: Math.max(s.proxy.refusals.peakPerSecond, s.agentProxy.refusals.peakPerSecond),
    unanswered: s.proxy.refusals.unanswered + s.agentProxy.refusals.unanswered,
    kernelDropped: kernelDropped + byUid.reduce((n, u) => n + u.dropped, 0),
    ...(byUid.length ? { droppedByUid: byUid.slice(0, TOP_SOURCES) } : {}),
    sources,
  };
}
