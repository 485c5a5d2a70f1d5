/**
 * Starting and stopping the agent's command: the one place that creates its process and
 * ends it. The command leads a process group of its own, so a timeout or the end of the
 * step kills everything it started that stayed in the group. (A later change puts the
 * command in a cgroup of its own here: `launchCommand` and `CommandProcess.kill` are the
 * whole interface the rest of `run` uses.)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import type { Readable } from 'node:stream';

export interface LaunchOptions {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
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
  /** Signals every process left in the command's group; returns how many there were. */
  kill(signal: NodeJS.Signals): number;
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
    try {
      // detached: the child calls setsid(), so its pid is the group id of all it starts.
      child = spawn(opts.argv[0], opts.argv.slice(1), {
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
          const members = groupMembers(pid);
          try {
            process.kill(-pid, signal);
          } catch {
            // ESRCH: the group is already empty.
          }
          return members.length;
        },
      });
    });
  });
}
