/**
 * A process's name as people know it, from /proc: its `comm`, except where a runtime
 * renamed its main thread. Node 22 and later call theirs `MainThread`, and on Linux the
 * main thread's name is the process's `comm`, so on the runner's Node 24 every Node
 * process (coding agents among them) would show as `MainThread`: then the executable's
 * file name is used instead (`node`).
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { readFile, readlink } from 'node:fs/promises';
import { basename } from 'node:path';

/** The parent's pid of `pid`, from its `stat`; 0 when it is gone. */
export function parentOf(pid: number, proc = '/proc'): number {
  try {
    const stat = readFileSync(`${proc}/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may hold spaces: the ppid follows the last ')'.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return 0;
  }
}

/** Thread names runtimes give their main thread, which say nothing about the program. */
const THREAD_NAMES = new Set(['MainThread']);

/**
 * What a process calls itself is its own to choose (comm through prctl, the executable's
 * file name through the path it runs from): kept short and plain, so a name cannot pose
 * as the text around it in a report (`sshd (pid 1, not under run's command)`).
 */
function plain(name: string): string {
  return name.slice(0, 32).replace(/[^A-Za-z0-9._+-]/g, '_');
}

function pick(comm: string, exe: () => string): string {
  if (!comm) return '';
  if (!THREAD_NAMES.has(comm)) return plain(comm);
  // `/usr/bin/node (deleted)` after an upgrade: the name is still the program's.
  const name = basename(exe().replace(/ \(deleted\)$/, ''));
  return plain(name || comm);
}

/** The name of `pid`, or '' when it is gone. */
export function processName(pid: number, proc = '/proc'): string {
  let comm: string;
  try {
    comm = readFileSync(`${proc}/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
  return pick(comm, () => {
    try {
      return readlinkSync(`${proc}/${pid}/exe`);
    } catch {
      return '';
    }
  });
}

/** As processName, without blocking. */
export async function processNameAsync(pid: number, proc = '/proc'): Promise<string> {
  const comm = (await readFile(`${proc}/${pid}/comm`, 'utf8').catch(() => '')).trim();
  if (!THREAD_NAMES.has(comm)) return pick(comm, () => '');
  const exe = await readlink(`${proc}/${pid}/exe`).catch(() => '');
  return pick(comm, () => exe);
}
