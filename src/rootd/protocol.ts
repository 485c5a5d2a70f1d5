/**
 * Where the daemon keeps its records (`/run/cordon/egress-<id>`, root's, out of the
 * runner user's reach) and the read-only control socket post asks for the report.
 */
import net from 'node:net';
import { join } from 'node:path';
import { stateDir } from '../ledger/copy.js';
import type { Cidr, DomainPattern } from '../fence/policy.js';
import type { ResolverBackup } from '../fence/resolver.js';
import type { LockdownBackup } from '../fence/lockdown.js';
import type { CgroupEnd } from './cgroups.js';

export { fenceId, stateDir, ledgerCopyPaths, LEDGER_COPY, STATE_ROOT } from '../ledger/copy.js';

export interface DaemonConfig {
  id: string;
  policy: 'block' | 'audit';
  domains: DomainPattern[];
  ips: Cidr[];
  upstream?: string;
  minTtl: number;
  disableSudo: boolean;
  disableDocker: boolean;
  /** The runner user whose sudo and docker access are removed. */
  user: string;
  /**
   * A file a later step may write its command's pid to (`$RUNNER_TEMP/cordon/agent.pid`):
   * who-asked lookups then say whether the process descends from it.
   */
  agentPidFile?: string;
}

export interface DaemonState {
  pid: number;
  uid: number;
  upstreams: string[];
  resolver?: ResolverBackup;
  lockdown?: LockdownBackup;
  user: string;
  setupMs: number;
}

export interface DaemonReport {
  policy: 'block' | 'audit';
  names: { name: string; queries: number; allowed: boolean; addresses: string[]; process?: string }[];
  namesDropped: number;
  forgedAnswers: number;
  malformed: number;
  upstreamTimeouts: number;
  setFailures: number;
  /** Answers served from the proxy's answer cache (absent from a daemon before it counted them). */
  cacheHits?: number;
  setUpdates: number;
  blocked: { address: string; protocol: string; port: number; packets: number; process?: string }[];
  tamper: string[];
  /** When each `tamper` entry was first seen (ISO time), same order. */
  tamperSeen?: string[];
  /** How each cgroup the daemon made for a non-root `run` ended. */
  runCgroups?: CgroupEnd[];
}

/** Asks the daemon for its report; rejects when nobody answers within `timeoutMs`. */
export function requestReport(id: string, timeoutMs = 5000): Promise<DaemonReport> {
  return new Promise((resolve, reject) => {
    const s = net.connect(join(stateDir(id), 'control.sock'));
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    s.on('connect', () => s.write('report\n'));
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as DaemonReport);
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  });
}
