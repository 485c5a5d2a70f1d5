/**
 * Which local process opened a loopback connection: its socket's line in /proc/net/tcp
 * (matched on both addresses and ports), whose uid the kernel wrote, then the process
 * holding `socket:[inode]` among /proc/<pid>/fd. Best effort and bounded in time: only
 * processes of the broker's own user are readable (another user's request is recorded by
 * its uid alone), and a client that closed its socket is gone from the table.
 */
import { isIPv4 } from 'node:net';
import { readdir, readFile, readlink } from 'node:fs/promises';
import type { BrokerRequester } from '../ledger/events.js';
import { processNameAsync } from '../platform/proc-name.js';

/** Port in /proc/net/tcp's notation: four upper-case hex digits. */
function hexPort(port: number): string {
  return port.toString(16).toUpperCase().padStart(4, '0');
}

/**
 * An address in /proc/net/tcp's notation (the bytes as the kernel holds them, read as
 * 32-bit host-order words: little-endian here), or undefined for what is not an IPv4 one.
 * `::ffff:a.b.c.d` is its IPv4 address: Node names an IPv4 peer so on a dual-stack socket.
 */
function hexAddress(address: string): string | undefined {
  const v4 = address.replace(/^::ffff:/i, '');
  if (!isIPv4(v4)) return undefined;
  return v4
    .split('.')
    .reverse()
    .map((b) => Number(b).toString(16).toUpperCase().padStart(2, '0'))
    .join('');
}

/** The socket's line in the table: its inode and the uid that owns it. */
export function findSocketLine(
  table: string,
  clientPort: number,
  serverPort: number,
  clientAddress?: string,
  serverAddress?: string,
  tcp6 = false,
): { inode: string; uid: number } | undefined {
  // With addresses (IPv4), the whole `address:port` must match: two connections may share
  // both ports from different loopback addresses, and must not be taken for each other.
  // In tcp6 an IPv4 address is the client's dual-stack socket's ::ffff:a.b.c.d.
  const hex = (a?: string): string | undefined => {
    const h = a !== undefined ? hexAddress(a) : undefined;
    return h && tcp6 ? `0000000000000000FFFF0000${h}` : h;
  };
  const ca = hex(clientAddress);
  const sa = hex(serverAddress);
  const local = `${ca ?? ''}:${hexPort(clientPort)}`;
  const remote = `${sa ?? ''}:${hexPort(serverPort)}`;
  const same = (field: string, want: string, exact: boolean): boolean =>
    exact ? field === want : field.endsWith(want);
  for (const line of table.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || !same(f[1], local, ca !== undefined) || !same(f[2], remote, sa !== undefined))
      continue;
    if (f[9] !== '0') return { inode: f[9], uid: Number(f[7]) };
  }
  return undefined;
}

/** The inode of the socket whose local end is the client's and remote end the server's. */
export function findSocketInode(
  table: string,
  clientPort: number,
  serverPort: number,
  clientAddress?: string,
  serverAddress?: string,
): string | undefined {
  return findSocketLine(table, clientPort, serverPort, clientAddress, serverAddress)?.inode;
}

export interface PeerLookupOptions {
  procRoot?: string;
  /** Give up after this long (ms). */
  budgetMs?: number;
  /** Processes scanned at most. */
  maxProcesses?: number;
  /** Skipped: the broker itself holds the server side. */
  selfPid?: number;
  /** The connection's addresses (as Node names them), matched along with the ports. */
  clientAddress?: string;
  serverAddress?: string;
}

/** Finds the process on the other end of a loopback connection, or undefined. */
export async function findPeerProcess(
  clientPort: number,
  serverPort: number,
  opts: PeerLookupOptions = {},
): Promise<BrokerRequester | undefined> {
  const root = opts.procRoot ?? '/proc';
  const deadline = Date.now() + (opts.budgetMs ?? 250);
  let found: { inode: string; uid: number } | undefined;
  for (const table of ['net/tcp', 'net/tcp6']) {
    // ::1: matched on the ports alone (as before), both ends being the IPv6 loopback.
    found = findSocketLine(
      await readFile(`${root}/${table}`, 'utf8').catch(() => ''),
      clientPort,
      serverPort,
      opts.clientAddress,
      opts.serverAddress,
      table === 'net/tcp6',
    );
    if (found) break;
  }
  if (!found) return undefined;
  const uid = Number.isInteger(found.uid) ? { uid: found.uid } : {};
  const wanted = `socket:[${found.inode}]`;
  const pids = (await readdir(root).catch(() => [] as string[]))
    .filter((p) => /^\d+$/.test(p) && Number(p) !== opts.selfPid)
    .map(Number)
    // Newest first: the requester is usually a recent process.
    .sort((a, b) => b - a)
    .slice(0, opts.maxProcesses ?? 4000);
  for (const pid of pids) {
    if (Date.now() > deadline) return uid;
    const fds = await readdir(`${root}/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      if ((await readlink(`${root}/${pid}/fd/${fd}`).catch(() => '')) !== wanted) continue;
      const comm = await processNameAsync(pid, root);
      return comm ? { pid, comm, ...uid } : { pid, ...uid };
    }
  }
  return uid;
}
