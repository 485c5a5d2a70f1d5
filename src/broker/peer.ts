/**
 * Which local process opened a loopback connection: its socket's inode from
 * /proc/net/tcp, then the process holding `socket:[inode]` among /proc/<pid>/fd. Best
 * effort and bounded in time: only processes of the broker's own user are readable, and a
 * client that closed its socket is gone from the table.
 */
import { readdir, readFile, readlink } from 'node:fs/promises';
import type { BrokerRequester } from '../ledger/events.js';
import { processNameAsync } from '../platform/proc-name.js';

/** Port in /proc/net/tcp's notation: four upper-case hex digits. */
function hexPort(port: number): string {
  return port.toString(16).toUpperCase().padStart(4, '0');
}

/** The inode of the socket whose local port is `clientPort` and remote port `serverPort`. */
export function findSocketInode(table: string, clientPort: number, serverPort: number): string | undefined {
  const local = `:${hexPort(clientPort)}`;
  const remote = `:${hexPort(serverPort)}`;
  for (const line of table.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || !f[1].endsWith(local) || !f[2].endsWith(remote)) continue;
    if (f[9] !== '0') return f[9];
  }
  return undefined;
}

export interface PeerLookupOptions {
  procRoot?: string;
  /** Give up after this long (ms). */
  budgetMs?: number;
  /** Processes scanned at most. */
  maxProcesses?: number;
  /** Skipped: the broker itself holds the server side. */
  selfPid?: number;
}

/** Finds the process on the other end of a loopback connection, or undefined. */
export async function findPeerProcess(
  clientPort: number,
  serverPort: number,
  opts: PeerLookupOptions = {},
): Promise<BrokerRequester | undefined> {
  const root = opts.procRoot ?? '/proc';
  const deadline = Date.now() + (opts.budgetMs ?? 250);
  let inode: string | undefined;
  for (const table of ['net/tcp', 'net/tcp6']) {
    inode = findSocketInode(
      await readFile(`${root}/${table}`, 'utf8').catch(() => ''),
      clientPort,
      serverPort,
    );
    if (inode) break;
  }
  if (!inode) return undefined;
  const wanted = `socket:[${inode}]`;
  const pids = (await readdir(root).catch(() => [] as string[]))
    .filter((p) => /^\d+$/.test(p) && Number(p) !== opts.selfPid)
    .map(Number)
    // Newest first: the requester is usually a recent process.
    .sort((a, b) => b - a)
    .slice(0, opts.maxProcesses ?? 4000);
  for (const pid of pids) {
    if (Date.now() > deadline) return undefined;
    const fds = await readdir(`${root}/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      if ((await readlink(`${root}/${pid}/fd/${fd}`).catch(() => '')) !== wanted) continue;
      const comm = await processNameAsync(pid, root);
      return comm ? { pid, comm } : { pid };
    }
  }
  return undefined;
}
