/**
 * The control server: `control.sock` answers any request with the daemon's report (JSON)
 * and closes. It changes nothing, so anyone may ask (post does, as the runner user).
 */
import net from 'node:net';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { describeError } from '../platform/errors.js';
import { parseBlocked, TABLE, type AllowSets, type BlockedEntry, type NftShell } from '../fence/nftshell.js';
import type { DnsProxy } from '../fence/proxy.js';
import { destKey, type RootHelper } from './helper.js';
import type { TamperLog } from './tamper.js';
import { CONTROL_SOCKET, type DaemonReport } from './protocol.js';

export interface ReportSources {
  policy: 'block' | 'audit';
  proxy: DnsProxy;
  sets: AllowSets;
  shell: NftShell;
  tamper: TamperLog;
  helper: RootHelper;
}

/** The report as it stands: the proxy's counts, the blocked sets, tampering, run's cgroups. */
export async function buildReport(s: ReportSources): Promise<DaemonReport> {
  const blocked: BlockedEntry[] = [];
  for (const set of ['blocked4', 'blocked6']) {
    try {
      blocked.push(...parseBlocked(await s.shell.run(`list set ${TABLE} ${set}`)));
    } catch {
      s.tamper.note(`the set ${set} could not be read`, true);
    }
  }
  const stats = s.proxy.stats;
  const { askers, runCgroups } = s.helper;
  return {
    policy: s.policy,
    names: [...stats.names].map(([name, n]) => ({
      name,
      queries: n.queries,
      allowed: n.allowed,
      addresses: [...n.addresses],
      process: askers.get(`name ${name}`),
    })),
    namesDropped: stats.namesDropped,
    forgedAnswers: stats.forgedAnswers,
    malformed: stats.malformed,
    upstreamTimeouts: stats.upstreamTimeouts,
    setFailures: stats.setFailures,
    cacheHits: stats.cacheHits,
    setUpdates: s.sets.updates,
    blocked: blocked.map((b) => ({ ...b, process: askers.get(destKey(b)) })),
    tamper: s.tamper.entries,
    tamperSeen: s.tamper.times,
    ...(runCgroups.length ? { runCgroups } : {}),
  };
}

/** Serves `control.sock` in `dir`; returns a function that stops serving. */
export async function serveControl(dir: string, report: () => Promise<DaemonReport>): Promise<() => void> {
  const control = net.createServer((c) => {
    c.on('error', () => c.destroy());
    c.setTimeout(5000, () => c.destroy());
    c.once('data', () => {
      report().then(
        (r) => c.end(JSON.stringify(r)),
        (e) => c.end(JSON.stringify({ error: describeError(e) })),
      );
    });
  });
  const sock = join(dir, CONTROL_SOCKET);
  await new Promise<void>((resolve, reject) => {
    control.once('error', reject);
    control.listen(sock, () => resolve());
  });
  chmodSync(sock, 0o666);
  return () => control.close();
}
