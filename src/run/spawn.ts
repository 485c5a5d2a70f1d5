/**
 * Starting and stopping the agent's command: the one place that creates its process and
 * ends it. The command runs in a cgroup of its own when `run` can make one (root), so the
 * end of the step kills everything it started, whatever it did to leave its process
 * group; it also leads a process group of its own, the only containment without root.
 * `launchCommand`, `CommandProcess.kill` and `CommandProcess.finish` are the whole
 * interface the rest of `run` uses.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { killCgroup, signalCgroup, cgroupPids, type Containment } from './cgroup.js';

export interface LaunchOptions {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  /** Where the command runs (default: a process group of its own). */
  containment?: Containment;
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
  finish(): CommandEnd;
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
    const cg = opts.containment?.kind === 'cgroup' ? opts.containment.path : undefined;
    try {
      // detached: the child calls setsid(), so its pid is the group id of all it starts.
      // In a cgroup, a shell joins it first and then becomes the command (same pid), so
      // nothing the command starts is ever outside.
      const argv = cg
        ? ['/bin/sh', '-c', 'echo $$ > "$0/cgroup.procs" || exit 125; exec "$@"', cg, ...opts.argv]
        : opts.argv;
      child = spawn(argv[0], argv.slice(1), {
        env: opts.env,
        cwd: opts.cwd,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
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
    });
  });
}
