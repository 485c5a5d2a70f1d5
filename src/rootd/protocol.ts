/**
 * How the rest of Cordon talks to the root side (`rootd`, the egress daemon and its root
 * helper): where its state directory and sockets are, and what goes over each socket.
 * This is the only module of `rootd` other code imports; it imports nothing from the
 * ledger or the actions, so both may import it.
 *
 * The state directory (`/run/cordon/egress-<id>`) is root's, out of the runner user's
 * reach; its sockets are the runner user's alone (0600, see access.ts), and what the runner
 * reads there (the ledger copy) is root's, readable by the runner's group only:
 *  - `control.sock`: answers `report` with the daemon's report (`requestReport`), and takes
 *    `secret-names` from run: names that carried one of its secrets (`markSecretNames`);
 *  - `ledger.sock`: one ledger line a line in, appended to the root-owned copy;
 *  - `cgroup.sock`: one connection per cgroup for a `run` step that is not root;
 *  - `launch/`: with `disable-sudo`, root's copy of `run`'s launcher, the one command sudo
 *    still runs for the runner user (rootd/launcher.ts); `launch/command.json` names it.
 */
import net from 'node:net';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { Cidr, DomainPattern } from '../fence/policy.js';
import type { ResolverBackup } from '../fence/resolver.js';
import type { LockdownBackup } from '../fence/lockdown.js';
import { removeSharedRoot, SHARED_ROOT_MARK } from '../platform/shared-root.js';

export const STATE_ROOT = '/run/cordon';
/** The daemon's copy of the ledger, in its state directory. */
export const LEDGER_COPY = 'ledger.jsonl';
export const CONTROL_SOCKET = 'control.sock';
export const LEDGER_SOCKET = 'ledger.sock';
/** The root helper's cgroup socket. */
export const CGROUP_SOCKET = 'cgroup.sock';

/** Root's copy of the agent launcher, under the state directory. */
export const LAUNCH_DIR = 'launch';
export const LAUNCH_COMMAND = 'command.json';

/** The exact command line sudo allows the runner user after `disable-sudo` (no arguments). */
export interface LaunchCommand {
  node: string;
  program: string;
}

/** Where `run` finds what the daemon offers it, for the job whose RUNNER_TEMP this is. */
export function launchCommandPath(runnerTemp: string): string {
  return join(stateDir(fenceId(runnerTemp)), LAUNCH_DIR, LAUNCH_COMMAND);
}

/** A stable id per job: the same RUNNER_TEMP gives the same state directory in every step. */
export function fenceId(runnerTemp: string): string {
  return createHash('sha256').update(resolve(runnerTemp)).digest('hex').slice(0, 16);
}

/** What a fence id may hold: `fenceId`'s hex, or a test's plain name; never a `/` or a `.`. */
const FENCE_ID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * The fence's state directory, which root empties, fills and removes. The id comes from
 * the daemon's config or teardown's argument: `../..` in it would name any directory.
 */
export function stateDir(id: string): string {
  if (!FENCE_ID.test(id)) throw new Error(`not a fence id: ${JSON.stringify(id.slice(0, 80))}`);
  return join(STATE_ROOT, `egress-${id}`);
}

/**
 * Where the helper mounts cgroup2 when it has none: beside the state directory, never
 * inside it, so a recursive removal of that directory cannot walk into a cgroup file system.
 */
export function cgroupMountDir(dir: string): string {
  return join(dirname(dir), `cgroup2-${basename(dir)}`);
}

/** The sudoers drop-in a fence's launcher rule is written to (with `disable-sudo`). */
export function launcherDropIn(id: string, sudoersDir = '/etc/sudoers.d'): string {
  return join(sudoersDir, `cordon-launch-${id}`);
}

/**
 * Removes a fence's state directory and the cgroup2 mount point beside it, unmounting that
 * first if it is still a mount here (the helper's own unmount is skipped when it is killed).
 * Only `rmdir` for the mount point, never a recursive removal: if it cannot be unmounted,
 * nothing walks into the cgroup file system. Then the state root, if a fence made it and
 * nothing is left in it (`removeStateRoot`).
 */
export function removeState(id: string): void {
  const dir = stateDir(id);
  rmSync(dir, { recursive: true, force: true });
  const mount = cgroupMountDir(dir);
  try {
    if (isMountPoint(mount)) execFileSync('umount', ['-l', mount], { stdio: 'ignore' });
    rmdirSync(mount);
  } catch {
    // Gone already, or busy: nothing to do.
  }
  removeStateRoot();
}

/**
 * What marks `STATE_ROOT` as made by a fence: the sticky bit (`SHARED_ROOT_MARK`), set by
 * the mkdir that makes it. Which fence made it does not matter: whichever of them (or of
 * their root helpers) empties it removes it. A state root without the mark (made by
 * something else, or by an older Cordon) is never removed.
 */
export const STATE_ROOT_MARK = SHARED_ROOT_MARK;

/**
 * Makes the fence's state directory, empty, under `STATE_ROOT`, and `STATE_ROOT` with its
 * mark when it is not there. Another fence may remove `STATE_ROOT`, once empty, between
 * the two mkdirs here: made again (at most three tries).
 */
export function makeStateDir(id: string): void {
  const dir = stateDir(id);
  for (let i = 0; ; i++) {
    mkdirSync(STATE_ROOT, { recursive: true, mode: 0o755 | STATE_ROOT_MARK });
    rmSync(dir, { recursive: true, force: true });
    try {
      mkdirSync(dir, { mode: 0o755 });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || i >= 2) throw e;
    }
  }
}

/**
 * Removes `STATE_ROOT` when a fence made it (its mark, `STATE_ROOT_MARK`) and nothing is
 * left in it: `rmdir` only, which refuses a directory that is not empty (another fence's
 * state is there; that fence removes it when done), so never a race. Called by every fence
 * once it removed its own entries, whichever fence made the root. `root` is the state
 * root's path, given by the root helper as the directory its mount point is in.
 */
export function removeStateRoot(root = STATE_ROOT): void {
  removeSharedRoot(root);
}

/** Whether `path` is a mount point in this mount namespace (field 5 of mountinfo). */
function isMountPoint(path: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[4] === path);
}

/**
 * Where a step sends its ledger lines (one a line, over a Unix stream socket) and where the
 * daemon's copy of them is, for the job whose RUNNER_TEMP this is; the socket is there
 * only while the egress daemon runs.
 */
export function ledgerCopyPaths(runnerTemp: string): { socket: string; copy: string } {
  const dir = stateDir(fenceId(runnerTemp));
  return { socket: join(dir, LEDGER_SOCKET), copy: join(dir, LEDGER_COPY) };
}

/** The copy paths for a ledger at `$RUNNER_TEMP/cordon/ledger.jsonl`. */
export function ledgerCopyPathsFor(ledgerPath: string): { socket: string; copy: string } {
  return ledgerCopyPaths(dirname(dirname(ledgerPath)));
}

/** What `daemon.js start <config.json>` reads. */
export interface DaemonConfig {
  id: string;
  policy: 'block' | 'audit';
  /** What the runner and Cordon's own steps may resolve: `allowed-domains` and the preset. */
  domains: DomainPattern[];
  /**
   * What the agent (a uid of AGENT_UID_MIN..AGENT_UID_MAX) may resolve: `allowed-domains`
   * only, never the preset.
   */
  agentDomains: DomainPattern[];
  /** `allowed-ips`: open to the runner and the agent alike. */
  ips: Cidr[];
  /**
   * `private-answers`: `refuse` treats answers with private addresses (RFC 1918, ULA,
   * 100.64.0.0/10) like those pointing at the runner itself (see fence/inward.ts).
   */
  privateAnswers: 'allow' | 'refuse';
  upstream?: string;
  minTtl: number;
  disableSudo: boolean;
  disableDocker: boolean;
  /** The runner user whose sudo and docker access are removed. */
  user: string;
  /**
   * The uid the sockets are handed to: the launching step's (absent from an older action:
   * sudo's caller, else root alone).
   */
  clientUid?: number;
  /**
   * A file a later step may write its command's pid to (`$RUNNER_TEMP/cordon/agent.pid`):
   * who-asked lookups then say whether the process descends from it.
   */
  agentPidFile?: string;
}

/** The daemon's `READY {json}` line (see platform/detached). */
export interface DaemonReady {
  pid: number;
  upstreams: string[];
  setupMs: number;
  /** The DNS warm-up's ms (fence/warmup.ts), after the fence was enforced and before READY. */
  warmMs?: number;
  ipv6: boolean;
  /** Port 53 on every address, or loopback only. */
  wildcard: boolean;
}

/** `state.json` in the state directory: what teardown undoes. */
export interface DaemonState {
  pid: number;
  uid: number;
  upstreams: string[];
  resolver?: ResolverBackup;
  lockdown?: LockdownBackup;
  user: string;
  setupMs: number;
}

/** Who a name was asked by, or a destination tried by: the agent's uids, or any other. */
export type Identity = 'agent' | 'runner';

/** What `control.sock` answers. */
export interface DaemonReport {
  policy: 'block' | 'audit';
  /** Each proxy's names; the same name may be there once for each identity. */
  names: {
    name: string;
    queries: number;
    allowed: boolean;
    addresses: string[];
    process?: string;
    /** Absent from a daemon before identities: the runner. */
    identity?: Identity;
    /** The name held this secret of run's (the name is then shown as its length only). */
    carriesSecret?: string;
  }[];
  namesDropped: number;
  /** Refused queries by source (absent from a daemon before it counted them). */
  refusals?: {
    total: number;
    /** The most refused in one second, both proxies together. */
    peakPerSecond: number;
    /** Over a source's per-second budget: not answered. */
    unanswered: number;
    /** Queries the kernel dropped: a client socket or a local user past its per-second limit (firewall.ts). */
    kernelDropped: number;
    /** Of those, the ones a local user lost past its own limit, by uid, most first (absent when none). */
    droppedByUid?: { uid: number; dropped: number }[];
    /** The sources with the most refused queries, most first. */
    sources: {
      proto: 'udp' | 'tcp';
      address: string;
      port: number;
      refused: number;
      peakPerSecond: number;
      process?: string;
      identity: Identity;
    }[];
  };
  /**
   * Names whose answers pointed inward (loopback, link-local, metadata, the runner's own
   * addresses...): refused in block mode. Absent from a daemon before the filter.
   */
  rebinding?: {
    name: string;
    answers: number;
    addresses: { address: string; kind: string }[];
    identity: Identity;
    carriesSecret?: string;
  }[];
  forgedAnswers: number;
  malformed: number;
  upstreamTimeouts: number;
  setFailures: number;
  /** Answers served from the proxy's answer cache (absent from a daemon before it counted them). */
  cacheHits?: number;
  /**
   * TCP clients the proxies closed to make room past their cap (MAX_TCP_CLIENTS in
   * src/fence/proxy.ts); absent from a daemon before it reported them.
   */
  tcpEvicted?: number;
  /**
   * The agent's web gate (src/fence/webgate.ts): connections let through by name, reset,
   * and reset for want of room; absent in audit mode and from a daemon before it had one.
   */
  webGate?: { passed: number; refused: number; overCap: number };
  setUpdates: number;
  blocked: {
    address: string;
    protocol: string;
    port: number;
    packets: number;
    process?: string;
    identity?: Identity;
  }[];
  /**
   * Recorded blocked destinations past the LISTED_BLOCKED with the most packets (control.ts):
   * how many, and their packets; absent when none was left out.
   */
  blockedLeftOut?: { destinations: number; packets: number };
  /**
   * Packets refused to destinations no blocked set could record, once one was full
   * (firewall.ts BLOCKED_SET_SIZE); absent when none.
   */
  blockedUnrecorded?: number;
  tamper: string[];
  /** When each `tamper` entry was first seen (ISO time), same order. */
  tamperSeen?: string[];
  /** How each cgroup the daemon made for a non-root `run` ended. */
  runCgroups?: CgroupEnd[];
}

/**
 * `cgroup.sock`, one JSON object a line: `join` makes the cgroup and moves the pid in
 * (answer `{name}`); the connection stays open while the command runs; `remove` kills what
 * is left and removes it (answer `{removed, alive}`). Errors answer `{error}` and close.
 */
export type CgroupRequest = { op: 'join'; pid: number } | { op: 'remove' };
export type CgroupReply = { name?: string; removed?: boolean; alive?: number; error?: string };

/** How a cgroup made by the helper ended: `removed` by run after its command, or `orphaned`. */
export interface CgroupEnd {
  name: string;
  pid: number;
  /** `orphaned`: run's connection closed before it asked for removal (run was killed). */
  end: 'removed' | 'orphaned';
  /** Processes alive in it when it was killed. */
  alive: number;
}

/**
 * Tells the daemon which names carried one of run's secrets (secret-names.ts): one line
 * `secret-names <json>` on `control.sock`, answered `{"ok":true}` or `{"error"}`.
 */
export function markSecretNames(
  id: string,
  marks: { name: string; secret: string }[],
  timeoutMs = 5000,
): Promise<void> {
  return askControl(id, `secret-names ${JSON.stringify(marks)}\n`, timeoutMs).then((r) => {
    const a = r as { ok?: boolean; error?: string };
    if (!a.ok) throw new Error(a.error ?? 'the daemon did not take them');
  });
}

/** Asks the daemon for its report; rejects when nobody answers within `timeoutMs`. */
export function requestReport(
  id: string,
  timeoutMs = 5000,
  opts: { raw?: boolean } = {},
): Promise<DaemonReport> {
  // `raw`: the names as asked, before any mark (run checks them for its secrets).
  return askControl(id, opts.raw ? 'report raw\n' : 'report\n', timeoutMs) as Promise<DaemonReport>;
}

/** One request on `control.sock`, its JSON answer. */
function askControl(id: string, request: string, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const s = net.connect(join(stateDir(id), CONTROL_SOCKET));
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    s.on('connect', () => s.write(request));
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown);
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  });
}
