/**
 * A Unix user made for one step, so the agent's command runs as an identity that owns
 * nothing of the runner's: not the file-command files, not the actions' files, not the
 * runner's processes (whose /proc/<pid>/environ holds the runner's tokens and every input).
 * Every command goes through execFile with arguments; nothing here takes a secret.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { CordonError, describeError } from '../platform/errors.js';
import { removeSharedRoot, SHARED_ROOT_MARK } from '../platform/shared-root.js';

/** How this process can make another user: it is root, it has passwordless sudo, or neither. */
export type IdentityMode = 'root' | 'sudo' | 'none';

/** Every user this module makes starts with this; nothing without it is ever deleted. */
export const AGENT_PREFIX = 'cordon-agent-';
const AGENT_NAME = /^cordon-agent-[0-9a-f]{6}$/;

/**
 * Agents' uids come from this range, so the fence can tell an agent's sockets from the
 * runner's by `meta skuid` without being told each step's uid. Below systemd's dynamic
 * range (61184-65519), inside the range Debian leaves for allocation on demand.
 */
export const AGENT_UID_MIN = 61000;
export const AGENT_UID_MAX = 61183;

/** What the root side's commands get for PATH: system directories only. */
export const SAFE_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * A uid of the agents' range that no user or group holds, picked at random: a file an
 * earlier agent left in /tmp then rarely belongs to the next one.
 */
export function freeAgentUid(passwd = '/etc/passwd', group = '/etc/group'): number {
  const taken = new Set<number>();
  for (const file of [passwd, group]) {
    for (const line of readFileSync(file, 'utf8').split('\n')) taken.add(Number(line.split(':')[2]));
  }
  const free: number[] = [];
  for (let id = AGENT_UID_MIN; id <= AGENT_UID_MAX; id++) if (!taken.has(id)) free.push(id);
  if (free.length) return free[randomBytes(2).readUInt16BE(0) % free.length];
  throw new CordonError({
    what: `identity: every uid from ${AGENT_UID_MIN} to ${AGENT_UID_MAX} is taken`,
    why: 'agents are given uids from this range only, so the fence can tell them apart',
    fix: 'remove leftover cordon-agent-* users (userdel) on this runner',
  });
}

/**
 * Where the agents' homes live unless the caller says otherwise: root-owned, on tmpfs,
 * 0755 so each agent reaches its own HOME (0700) through it. Made by the first agent that
 * needs it with the mark of a shared root (the sticky bit, `SHARED_ROOT_MARK`: 1755), and
 * removed by whichever agent's removal leaves it empty, not only by the one that made it
 * (agents overlap: two jobs on one runner). One without the mark is never removed.
 */
export const DEFAULT_HOME_BASE = '/run/cordon-home';

export interface AgentUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

/** Runs a command with root's rights; returns its stdout, throws on a non-zero exit. */
export type PrivilegedExec = (cmd: string, args: string[]) => string;

/** Decides whether an own identity can be had, without prompting for anything. */
export function identityAvailable(uid: number = process.getuid?.() ?? -1): IdentityMode {
  if (uid === 0) return 'root';
  const r = spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore', timeout: 5000 });
  return r.status === 0 ? 'sudo' : 'none';
}

/** Runs commands as root directly, or through `sudo -n` (never prompting). */
export function privilegedExec(mode: 'root' | 'sudo', timeoutMs = 30_000): PrivilegedExec {
  return (cmd, args) => {
    const [file, argv] = mode === 'root' ? [cmd, args] : ['sudo', ['-n', '--', cmd, ...args]];
    return execFileSync(file, argv, {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: timeoutMs,
      // Never the caller's environment: `kill -1` below runs as the agent's uid, where the
      // agent could read it, and the runner's tokens and inputs must not be in it.
      env: { PATH: SAFE_PATH, LC_ALL: 'C' },
    });
  };
}

/** The command line that runs `argv` as `user`, with no supplementary groups. */
export function asAgentArgv(user: AgentUser, mode: 'root' | 'sudo', argv: string[]): string[] {
  const setpriv = ['setpriv', `--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', '--', ...argv];
  // sudo keeps the caller's environment only when asked; it still drops LD_* and resets PATH.
  return mode === 'root' ? setpriv : ['sudo', '-n', '--preserve-env', '--', ...setpriv];
}

/**
 * Makes a system user for one step: locked password, no supplementary groups, shell
 * /bin/bash, and a fresh HOME (0700, its own) under a root-owned base directory.
 */
export function createAgentUser(exec: PrivilegedExec, homeBase: string = DEFAULT_HOME_BASE): AgentUser {
  const name = AGENT_PREFIX + randomBytes(3).toString('hex');
  const home = join(homeBase, name);
  makeHomeBase(exec, homeBase, name);
  addUser(exec, name, home, homeBase);
  try {
    const user = lookUp(name, home);
    const groups = run(exec, 'id', ['-G', name], name).trim().split(/\s+/);
    if (groups.length !== 1 || Number(groups[0]) !== user.gid) {
      throw new CordonError({
        what: `identity: ${name} was given supplementary groups (${groups.join(' ')})`,
        why: 'the system adds new users to extra groups (GROUPS in /etc/default/useradd), and a group such as docker or sudo is root',
        fix: 'remove GROUPS from /etc/default/useradd on this runner',
      });
    }
    // mkdir without -p: a HOME that already exists is someone else's, never reused.
    try {
      run(exec, 'mkdir', ['-m', '0700', '--', home], name);
    } catch (e) {
      // Another agent's removal may remove the base once empty (sweepAndRemove): made again, once.
      if (exists(homeBase)) throw e;
      makeHomeBase(exec, homeBase, name);
      run(exec, 'mkdir', ['-m', '0700', '--', home], name);
    }
    run(exec, 'chown', ['--no-dereference', `${user.uid}:${user.gid}`, '--', home], name);
    return user;
  } catch (e) {
    sweepAndRemove(exec, { name, home });
    throw e;
  }
}

/**
 * groupadd, then useradd. If either fails (or no uid of the range is free), what this call
 * made is taken back, and only that: the group it added (by name, while it still has the gid
 * given it), and the home base `homeBase` if an agent made it (its mark) and it is empty
 * (rmdir). A user that useradd refused is never deleted: its name could be someone else's.
 */
function addUser(exec: PrivilegedExec, name: string, home: string, homeBase: string): void {
  let added: string | undefined;
  try {
    // A uid of the agents' range (see AGENT_UID_MIN). groupadd first makes a group of the
    // user's name with that same number as its gid, and useradd --gid makes it the user's
    // primary group, so its gid is shared with no one. No -G: not docker, not sudo, nothing.
    const id = String(freeAgentUid());
    // The gid is in the agents' range: never a gid a later groupadd (docker's, say) could
    // be handed while a file of the agent's still carries it.
    run(exec, 'groupadd', ['--system', '--gid', id, name], name);
    added = id;
    run(
      exec,
      'useradd',
      [
        '--system',
        '--uid',
        id,
        '--gid',
        id,
        '--no-create-home',
        '--home-dir',
        home,
        '--shell',
        '/bin/bash',
        name,
      ],
      name,
    );
  } catch (e) {
    takeBack(exec, name, added, homeBase, e);
    throw e;
  }
}

/**
 * Removes the group `name` if it still has gid `added`, and the home base `homeBase` if an
 * agent made it and it is empty; says what is left.
 */
function takeBack(
  exec: PrivilegedExec,
  name: string,
  added: string | undefined,
  homeBase: string,
  cause: unknown,
): void {
  let left = '';
  if (added !== undefined && groupEntry(name)?.[2] === added) {
    try {
      exec('groupdel', [name]);
    } catch (e) {
      left = `the group ${name} (gid ${added}) it added is left: ${(e as { stderr?: string }).stderr?.trim() || describeError(e)}`;
    }
  }
  // Not empty (another agent's HOME is there: its removal takes it), or not made by an agent.
  removeHomeBase(exec, homeBase);
  if (left) {
    throw new CordonError({
      what: `identity: making ${name} failed (${describeError(cause)}), and ${left}`,
      fix: `remove it on this runner (groupdel ${name})`,
    });
  }
}

/** The fields of the line of /etc/group naming `name`, if there is one. */
function groupEntry(name: string): string[] | undefined {
  return readFileSync('/etc/group', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name}:`))
    ?.split(':');
}

/**
 * Makes the root-owned home base, 0755 with its mark (1755), if it is not there; one that
 * is there is given root as owner and 0755, its mark kept if it has one and never added
 * (`install -d` sets the mode of a directory that exists too: 0755 alone would take the mark
 * another agent's creation gave it, and with it the base's removal).
 */
function makeHomeBase(exec: PrivilegedExec, homeBase: string, name: string): void {
  let mark = SHARED_ROOT_MARK;
  try {
    mark = lstatSync(homeBase).mode & SHARED_ROOT_MARK;
  } catch {
    // Not there: made here, with the mark.
  }
  const mode = (0o755 | mark).toString(8).padStart(4, '0');
  run(exec, 'install', ['-d', '-o', 'root', '-g', 'root', '-m', mode, '--', homeBase], name);
  const base = lstatSync(homeBase);
  if (!base.isDirectory() || base.uid !== 0) {
    throw new CordonError({
      what: `identity: the home base ${homeBase} is not a root-owned directory`,
      why: 'an agent HOME under a directory someone else controls could be swapped for a link',
      fix: 'remove it or pass another home base',
    });
  }
}

/** Removes the home base if an agent made it (its mark) and no HOME is left in it. */
function removeHomeBase(exec: PrivilegedExec, homeBase: string): void {
  removeSharedRoot(homeBase, (dir) => exec('rmdir', ['--', dir]));
}

function lookUp(name: string, home: string): AgentUser {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name}:`));
  const f = line?.split(':');
  if (!f || f.length < 7) {
    throw new CordonError({
      what: `identity: useradd made no entry for ${name} in /etc/passwd`,
      why: 'users may come from a directory service this runner cannot write',
      fix: 'use `user: runner` on this runner',
    });
  }
  return { name, uid: Number(f[2]), gid: Number(f[3]), home };
}

function run(exec: PrivilegedExec, cmd: string, args: string[], name: string): string {
  try {
    return exec(cmd, args);
  } catch (e) {
    const stderr = (e as { stderr?: string }).stderr?.trim();
    throw new CordonError({
      what: `identity: \`${cmd}\` for ${name} failed`,
      why: stderr || describeError(e),
      fix: 'check that this runner has root or passwordless sudo and the shadow tools (useradd, userdel)',
    });
  }
}

/** Processes whose real, effective or saved uid is `uid`, with whether each is a zombie. */
export function processesOf(uid: number): { pid: number; zombie: boolean }[] {
  const found: { pid: number; zombie: boolean }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let status: string;
    try {
      status = readFileSync(`/proc/${entry}/status`, 'utf8');
    } catch {
      continue; // gone since readdir
    }
    const uids = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status);
    if (!uids || ![uids[1], uids[2], uids[3]].map(Number).includes(uid)) continue;
    found.push({ pid: Number(entry), zombie: /^State:\s+Z/m.test(status) });
  }
  return found;
}

export interface SweepOptions {
  /** How long to keep killing before giving up. */
  deadlineMs?: number;
  /** Run once no process of the user is left, before it is deleted (its uid still taken). */
  whileReserved?: () => void;
}

/**
 * Kills every process of the user, checks none is left, then deletes the user, its group
 * and its HOME. Safe to call twice; refuses any name this module would not have made.
 */
export function sweepAndRemove(
  exec: PrivilegedExec,
  user: Pick<AgentUser, 'name' | 'home'>,
  opts: SweepOptions = {},
): void {
  const { name, home } = user;
  if (!AGENT_NAME.test(name) || basename(home) !== name) {
    throw new CordonError({
      what: `identity: refusing to remove "${name}" (home ${home})`,
      why: `only users named ${AGENT_PREFIX}<6 hex> with a HOME named after them are Cordon's`,
      fix: 'this is a bug in the caller; nothing was removed',
    });
  }
  const passwd = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name}:`));
  if (passwd) {
    const [, , uidText, gidText] = passwd.split(':');
    const uid = Number(uidText);
    const left = killAll(exec, uid, Number(gidText), opts.deadlineMs ?? 5000);
    if (left.some((p) => !p.zombie)) {
      throw new CordonError({
        what: `identity: ${left.length} process(es) of ${name} still run after SIGKILL`,
        why: 'a process in uninterruptible sleep (D state) cannot be killed until its I/O ends',
        fix: 'the user is kept so the processes stay attributable; the runner is discarded at job end',
      });
    }
    opts.whileReserved?.();
    // A zombie holds no resources but makes userdel refuse; --force skips only that check.
    run(exec, 'userdel', left.length ? ['--force', name] : [name], name);
  }
  // userdel takes the group along only where USERGROUPS_ENAB says so.
  if (groupEntry(name)) run(exec, 'groupdel', [name], name);
  if (exists(home)) {
    if (lstatSync(dirname(home)).uid !== 0) {
      throw new CordonError({
        what: `identity: ${home} is not under a root-owned directory; left in place`,
        fix: 'remove it by hand',
      });
    }
    run(exec, 'rm', ['-rf', '--one-file-system', '--', home], name);
  }
  // The base, if an agent made it (whichever: the one that made it may have ended first),
  // once empty: rmdir refuses it while another agent's HOME is there (its removal takes it).
  removeHomeBase(exec, dirname(home));
}

/**
 * `kill -KILL -1` run AS the user signals every process it owns in one pass inside the
 * kernel, so a fork loop cannot outrun a pid list; repeated until none is left or the
 * deadline passes. Returns what is left (zombies only, when it succeeded).
 */
function killAll(exec: PrivilegedExec, uid: number, gid: number, deadlineMs: number) {
  const deadline = Date.now() + deadlineMs;
  // Zombies are reaped by their (also killed) parents' reaper; a short grace lets that
  // happen, since a reaper that never reaps would otherwise hold the sweep to its deadline.
  let zombieGrace = 0;
  for (;;) {
    const left = processesOf(uid);
    const live = left.some((p) => !p.zombie);
    if (left.length === 0 || Date.now() >= deadline) return left;
    if (live) {
      zombieGrace = 0;
      try {
        exec('setpriv', [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', 'kill', '-KILL', '-1']);
      } catch {
        // it kills itself too, so a signal exit is expected
      }
    } else if (++zombieGrace > 10) {
      return left;
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
