/**
 * Main's side: write the daemon's config, start it as root (through `sudo -n` when the
 * step is not root), detached so it outlives the step, and wait for its one status line.
 */
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { CordonError } from '../../platform/errors.js';
import type { Ledger } from '../../ledger/ledger.js';
import type { Runner } from '../../platform/runner.js';
import type { EgressStarted } from '../../ledger/events.js';
import { startDetached } from '../../platform/detached.js';
import { fenceId, type DaemonConfig, type DaemonReady } from '../../rootd/protocol.js';
import type { EgressSettings } from './inputs.js';
import { GITHUB_HOSTED_PRESET } from '../../fence/policy.js';
import { ownDomains } from '../../fence/own.js';

export interface LaunchDeps {
  runner: Runner;
  ledger: Ledger;
  /** Path of dist/egress/daemon.js. */
  daemonScript: string;
  isRoot?: boolean;
  node?: string;
  timeoutMs?: number;
}

/**
 * Who the daemon's sockets are for: this step's user; when the step is root, the owner of
 * RUNNER_TEMP, which is the runner user's (a hosted runner's steps are that user, a job
 * whose steps are all root gets root).
 */
function clientUid(isRoot: boolean, tempDir: string): number {
  if (!isRoot) return process.getuid?.() ?? 0;
  try {
    return statSync(tempDir).uid;
  } catch {
    return 0;
  }
}

/**
 * The two name lists: the preset and Cordon's own endpoints serve the runner and Cordon's
 * steps, never the agent's uids, which get `allowed-domains` alone.
 */
export function daemonLists(s: EgressSettings): Pick<DaemonConfig, 'domains' | 'agentDomains'> {
  return { domains: [...s.presetDomains, ...ownDomains(s.own), ...s.domains], agentDomains: s.domains };
}

/**
 * The daemon's warm-up time as READY gave it, when it is one: a whole number of ms, not
 * negative, within the `elapsed` ms main waited. READY is another process's line (parsed,
 * not checked, by startDetached): anything else is not taken off `setup-ms` (which would
 * turn it negative, fractional or NaN) nor written to the ledger as it came.
 */
export function warmUpMs(warm: unknown, elapsed: number): number | undefined {
  return typeof warm === 'number' && Number.isSafeInteger(warm) && warm >= 0 && warm <= elapsed
    ? warm
    : undefined;
}

export async function startFence(s: EgressSettings, deps: LaunchDeps): Promise<void> {
  const started = Date.now();
  const { runner, ledger } = deps;
  const isRoot = deps.isRoot ?? process.getuid?.() === 0;
  const user = userInfo().username;
  const id = fenceId(runner.tempDir);
  const cfg: DaemonConfig = {
    id,
    policy: s.policy,
    ...daemonLists(s),
    ips: s.ips,
    privateAnswers: s.privateAnswers,
    upstream: s.dnsUpstream,
    minTtl: s.minTtl,
    disableSudo: s.disableSudo,
    disableDocker: s.disableDocker,
    user,
    clientUid: clientUid(isRoot, runner.tempDir),
    agentPidFile: join(runner.tempDir, 'cordon', 'agent.pid'),
  };
  const cfgPath = join(runner.tempDir, 'cordon', `egress-config-${id}.json`);
  mkdirSync(dirname(cfgPath), { recursive: true, mode: 0o700 });
  writeFileSync(cfgPath, JSON.stringify(cfg), { mode: 0o600 });
  const node = deps.node ?? process.execPath;
  const argv = isRoot
    ? [node, deps.daemonScript, 'start', cfgPath]
    : ['sudo', '-n', node, deps.daemonScript, 'start', cfgPath];
  let ready: DaemonReady;
  try {
    ready = await startDetached<DaemonReady>({
      name: 'the daemon',
      argv,
      timeoutMs: deps.timeoutMs ?? 20000,
    });
  } catch (e) {
    throw new CordonError({
      what: 'egress: the fence could not be set up; the host was left as it was',
      why: e instanceof Error ? e.message : String(e),
      fix: isRoot
        ? 'see the message above'
        : 'the step needs passwordless sudo to start the root daemon; see the message above',
    });
  }
  runner.saveState('egress-id', id);
  // The daemon's copy of the ledger starts with what was written before the fence.
  const seeded = ledger.seedCopy();
  const elapsed = Date.now() - started;
  const warmMs = warmUpMs(ready.warmMs, elapsed);
  const data: EgressStarted = {
    policy: s.policy,
    domains: cfg.domains.map((d) => (d.wildcard ? `*.${d.name}` : d.name)),
    ips: s.ips.map((c) => `${c.address}/${c.prefix}`),
    preset: s.preset,
    disableSudo: s.disableSudo,
    disableDocker: s.disableDocker,
    // To the fence enforced: the warm-up that follows it inside the daemon is not counted.
    setupMs: elapsed - (warmMs ?? 0),
    ...(warmMs !== undefined ? { warmUpMs: warmMs } : {}),
  };
  ledger.append('egress.started', {
    ...data,
    upstreams: ready.upstreams,
    ipv6: ready.ipv6,
    daemonPid: ready.pid,
    ledgerCopySeeded: seeded,
  });
  runner.setOutput('setup-ms', String(data.setupMs));
  if (!ready.wildcard) {
    runner.warning(
      'egress: another DNS server holds port 53 on a non-loopback address, so the proxy listens on loopback only: containers on bridges get no DNS answers (they stay fenced)',
      { title: 'Cordon egress' },
    );
  }
  runner.info(
    `egress: ${s.policy} mode, ${cfg.domains.length} allowed name patterns (${s.preset === 'github-hosted' ? GITHUB_HOSTED_PRESET.length : 0} from the preset and ${s.own.length} Cordon's own endpoints${s.own.length ? ` (${s.own.map((e) => e.entry).join(' ')})` : ''}, which the agent's uids do not get: ${cfg.agentDomains.length} for them), ${s.ips.length} static networks, upstream ${ready.upstreams.join(' ')}, enforced in ${data.setupMs} ms${warmMs ? ` (then its DNS answer path warmed in ${warmMs} ms)` : ''}`,
  );
}
