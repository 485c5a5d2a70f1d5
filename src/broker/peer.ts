/**
 * Which local process opened a loopback connection: its socket's line in /proc/net/tcp
 * (matched on both addresses and ports), whose uid the kernel wrote, then the process
 * holding `socket:[inode]` among /proc/<pid>/fd. Best effort and bounded in time: only
 * processes of the broker's own user are readable (another user's request is recorded by
 * its uid alone), and a client that closed its socket is gone from the table.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { readdir, readFile, readlink } from 'node:fs/promises';
import type { BrokerRequester } from '../ledger/events.js';
import { processNameAsync } from '../platform/proc-name.js';

/** Port in /proc/net/tcp's notation: four upper-case hex digits. */
function hexPort(port: number): string {
  return port.toString(16).toUpperCase().padStart(4, '0');
}

/** An IPv6 address's 16 bytes (a zone `%lo` dropped, an embedded IPv4 tail read), or undefined. */
function ipv6Bytes(address: string): number[] | undefined {
  const a = address.replace(/%.*$/, '');
  if (!isIPv6(a)) return undefined;
  const words = (part: string): number[] =>
    part === ''
      ? []
      : part.split(':').flatMap((w) => {
          if (!isIPv4(w)) return [parseInt(w, 16)];
          const b = w.split('.').map(Number);
          return [(b[0] << 8) | b[1], (b[2] << 8) | b[3]];
        });
  const [head, tail] = a.includes('::') ? a.split('::') : [a, undefined];
  const hw = words(head);
  const tw = tail === undefined ? [] : words(tail);
  const all = [...hw, ...new Array<number>(8 - hw.length - tw.length).fill(0), ...tw];
  return all.flatMap((w) => [w >> 8, w & 0xff]);
}

/** Bytes as /proc/net/tcp{,6} prints them: each 32-bit word read in host order (little-endian here). */
function kernelHex(bytes: number[]): string {
  let out = '';
  for (let i = 0; i < bytes.length; i += 4)
    out += bytes
      .slice(i, i + 4)
      .reverse()
      .map((b) => b.toString(16).toUpperCase().padStart(2, '0'))
      .join('');
  return out;
}

/**
 * An address in the notation of /proc/net/tcp (`tcp6` false) or /proc/net/tcp6; null for an
 * address that table cannot hold (an IPv6 one in tcp), undefined for none given. In tcp an
 * IPv4 address is itself (`::ffff:a.b.c.d` too: Node names an IPv4 peer so on a dual-stack
 * socket); in tcp6 it is its mapped form, the client's dual-stack socket's.
 */
function hexAddress(address: string | undefined, tcp6: boolean): string | null | undefined {
  if (address === undefined) return undefined;
  const v4 = address.replace(/^::ffff:/i, '');
  if (isIPv4(v4)) {
    const b = v4.split('.').map(Number);
    return tcp6 ? kernelHex([...new Array<number>(10).fill(0), 0xff, 0xff, ...b]) : kernelHex(b);
  }
  const b6 = ipv6Bytes(address);
  return b6 && tcp6 ? kernelHex(b6) : null;
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
  // With addresses, the whole `address:port` must match: two connections may share both
  // ports from different addresses (127.0.0.2 and 127.0.0.1; an IPv4 one and a broker's on
  // ::1), and must not be taken for each other.
  const ca = hexAddress(clientAddress, tcp6);
  const sa = hexAddress(serverAddress, tcp6);
  // An address this table cannot hold: the connection is in the other one.
  if (ca === null || sa === null) return undefined;
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
