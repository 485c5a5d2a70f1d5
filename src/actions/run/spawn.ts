/**
 * Starting and stopping the agent's command: the one place that creates its process and
 * ends it. The command runs in a cgroup of its own when `run` can make one (root), so the
 * end of the step kills everything it started, whatever it did to leave its process
 * group; it also leads a process group of its own, the only containment without root.
 * `launchCommand`, `CommandProcess.kill` and `CommandProcess.finish` are the whole
 * interface the rest of `run` uses.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { join } from 'node:path';
import { CordonError } from '../../platform/errors.js';
import { cgroupPids, killCgroup, signalCgroup } from '../../platform/cgroup2.js';
import { joinCgroup, type CgroupSession, type Containment } from './cgroup.js';

export interface LaunchOptions {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  /** Where the command runs (default: a process group of its own). */
  containment?: Containment;
  /**
   * Root only: the user the command runs as (its groups cleared). Its shell holds itself
   * until root has moved it into the cgroup, since the user cannot write cgroup.procs.
   */
  user?: { uid: number; gid: number };
}

export interface CommandEnd {
  /** Processes the command left that were still alive when it ended (all killed). */
  alive: number;
  /** Processes still there after the kill (0 unless one would not die in time). */
  left: number;
  /** The cgroup was removed (cgroup containment). */
  cgroupRemoved?: boolean;
}

export interface CommandExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface CommandProcess {
  pid: number;
  stdout: Readable;
  stderr: Readable;
  /** Resolves when the command's own process exits (others in its group may live on). */
  exited: Promise<CommandExit>;
  /** Signals every process left in the command's group (or cgroup); returns how many there were. */
  kill(signal: NodeJS.Signals): number;
  /** After the command exited: kills all it left behind, removes the cgroup, counts them. */
  finish(): CommandEnd | Promise<CommandEnd>;
}

/** Pids whose process group is `pgid`, read from /proc (Linux). */
export function groupMembers(pgid: number): number[] {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      // Fields after the command name, which may itself hold spaces and parentheses.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // fields[0] = state, [1] = ppid, [2] = pgrp; zombies are already gone for our purpose.
      if (Number(fields[2]) === pgid && fields[0] !== 'Z') out.push(Number(e));
    } catch {
      // The process ended while we looked.
    }
  }
  return out;
}

export function launchCommand(opts: LaunchOptions): Promise<CommandProcess> {
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    let cg = opts.containment?.kind === 'cgroup' ? opts.containment.path : undefined;
    const viaDaemon = opts.containment?.kind === 'cgroup' && !cg ? opts.containment.daemon : undefined;
    try {
      // detached: the child calls setsid(), so its pid is the group id of all it starts.
      // In a cgroup, a shell joins it first and then becomes the command (same pid), so
      // nothing the command starts is ever outside. Through the daemon, the shell stops
      // itself until the daemon has moved it in.
      const held = viaDaemon || (cg && opts.user);
      const argv = held
        ? ['/bin/sh', '-c', 'kill -STOP $$; exec "$@"', 'sh', ...opts.argv]
        : cg
          ? ['/bin/sh', '-c', 'echo $$ > "$0/cgroup.procs" || exit 125; exec "$@"', cg, ...opts.argv]
          : opts.argv;
      child = spawn(argv[0], argv.slice(1), {
        env: opts.env,
        cwd: opts.cwd,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
        ...(opts.user ? { uid: opts.user.uid, gid: opts.user.gid } : {}),
      });
    } catch (e) {
      reject(e);
      return;
    }
    const exited = new Promise<CommandExit>((res) =>
      child.once('exit', (code, signal) => res({ code, signal })),
    );
    child.once('error', reject);
    child.once('spawn', () => {
      const pid = child.pid as number;
      // The held shell is killed, and never started, when it cannot be put in its cgroup.
      const abandon = (e: unknown): void => {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // Gone.
        }
        reject(e);
      };
      if (cg && opts.user) {
        const path = cg;
        waitStopped(pid)
          .then(() => {
            writeFileSync(join(path, 'cgroup.procs'), `${pid}\n`);
            process.kill(pid, 'SIGCONT');
            ready();
          })
          .catch(abandon);
        return;
      }
      if (!viaDaemon || !opts.containment) return void ready();
      const containment = opts.containment;
      joinDaemonCgroup(pid, viaDaemon.socket).then(
        (session) => {
          cg = join(viaDaemon.mount, session.name);
          containment.path = cg;
          containment.session = session;
          process.kill(pid, 'SIGCONT');
          ready();
        },
        (e: unknown) =>
          abandon(
            new CordonError({
              what: 'run: the egress daemon could not put the command in a cgroup; it was not started',
              why: e instanceof Error ? e.message : String(e),
              fix: "check the daemon's log under /run/cordon, or run the step as root",
            }),
          ),
      );
    });
    const ready = (): void => {
      const pid = child.pid as number;
      resolve({
        pid,
        stdout: child.stdout as Readable,
        stderr: child.stderr as Readable,
        exited,
        kill(signal) {
          const members = new Set(groupMembers(pid));
          try {
            process.kill(-pid, signal);
          } catch {
            // ESRCH: the group is already empty.
          }
          if (cg) for (const p of cgroupPids(cg)) members.add(p);
          if (cg) signalCgroup(cg, signal);
          return members.size;
        },
        finish() {
          if (cg) {
            const r = killCgroup(cg);
            return { alive: r.alive, left: r.left, cgroupRemoved: r.removed };
          }
          const alive = groupMembers(pid).length;
          try {
            process.kill(-pid, 'SIGKILL');
          } catch {
            // Empty.
          }
          return { alive, left: 0 };
        },
      });
    };
  });
}

/** Waits (bounded) until the held shell has stopped itself, then asks the daemon to move it in. */
async function joinDaemonCgroup(pid: number, socket: string): Promise<CgroupSession> {
  await waitStopped(pid);
  return joinCgroup(socket, pid);
}

/** Waits (bounded: 3 s) until the held shell has stopped itself. */
async function waitStopped(pid: number): Promise<void> {
  const deadline = Date.now() + 3000;
  for (;;) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2)[0] === 'T') return;
    if (Date.now() > deadline) throw new Error(`the command's shell (pid ${pid}) did not stop within 3 s`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
