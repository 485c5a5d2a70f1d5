/**
 * Who asked: the process behind a refused name or a blocked destination, found from the
 * socket table (`/proc/net/{udp,tcp}{,6}`: addresses, state, owner, inode) and the
 * `socket:[inode]` links in `/proc/<pid>/fd`. Needs root to read other users' fds, so it
 * runs in the daemon's root helper. Best effort: a socket closed before the lookup
 * (a TCP connect refused with a reset, a client that exits at once) is not found.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { isIP } from 'node:net';
import { parentOf, processName } from '../platform/proc-name.js';
import { canonicalAddress, formatAddress } from './ip.js';

export interface SocketRow {
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  /** Kernel state number: 1 established, 2 SYN_SENT, 7 close (unconnected UDP), 10 listen. */
  state: number;
  uid: number;
  inode: number;
}

function hexV4(h: string): string {
  const n = parseInt(h, 16);
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255].join('.');
}

function hexV6(h: string): string {
  const bytes: number[] = [];
  for (let w = 0; w < 4; w++) {
    const word = h.slice(w * 8, w * 8 + 8);
    for (let b = 3; b >= 0; b--) bytes.push(parseInt(word.slice(b * 2, b * 2 + 2), 16));
  }
  // Mapped IPv4 (::ffff:a.b.c.d) reads as the IPv4 address, as nft records it.
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff)
    return bytes.slice(12).join('.');
  return formatAddress(Uint8Array.from(bytes));
}

function endpoint(text: string): [string, number] {
  const [addr, port] = text.split(':');
  return [addr.length === 8 ? hexV4(addr) : hexV6(addr), parseInt(port, 16)];
}

/** Parses one `/proc/net/{udp,tcp}{,6}` file. */
export function parseSocketTable(text: string): SocketRow[] {
  const rows: SocketRow[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const [la, lp] = endpoint(f[1]);
    const [ra, rp] = endpoint(f[2]);
    rows.push({
      localAddress: la,
      localPort: lp,
      remoteAddress: ra,
      remotePort: rp,
      state: parseInt(f[3], 16),
      uid: Number(f[7]),
      inode: Number(f[9]),
    });
  }
  return rows;
}

function table(proto: string): SocketRow[] {
  const out: SocketRow[] = [];
  for (const suffix of ['', '6']) {
    try {
      out.push(...parseSocketTable(readFileSync(`/proc/net/${proto}${suffix}`, 'utf8')));
    } catch {
      // No IPv6, or no such protocol table.
    }
  }
  return out;
}

/** What to look for: the client socket of a DNS query (by its local port), or a socket to a destination. */
export type WhoQuery =
  | { kind: 'dns'; proto: 'udp' | 'tcp'; port: number }
  | { kind: 'dest'; proto: string; address: string; port: number };

export function matchSocket(rows: SocketRow[], q: WhoQuery): SocketRow | undefined {
  if (q.kind === 'dns') {
    // The client's end: its local port, talking to port 53 (TCP) or anyone (UDP).
    return rows.find(
      (r) => r.localPort === q.port && r.state !== 10 && (q.proto === 'udp' || r.remotePort === 53),
    );
  }
  const addr = isIP(q.address) === 6 ? canonicalAddress(q.address) : q.address;
  return rows.find((r) => r.remoteAddress === addr && (q.port === 0 || r.remotePort === q.port));
}

/** Pids holding the socket with this inode (scans every process's fds). */
export function pidsOfInode(inode: number, proc = '/proc'): number[] {
  const want = `socket:[${inode}]`;
  const out: number[] = [];
  for (const name of readdirSync(proc)) {
    if (!/^\d+$/.test(name)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`${proc}/${name}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`${proc}/${name}/fd/${fd}`) === want) {
          out.push(Number(name));
          break;
        }
      } catch {
        // Closed meanwhile.
      }
    }
  }
  return out;
}

/** True when `pid` is `root` or one of its descendants (bounded walk up the parents). */
export function descendsFrom(pid: number, root: number, proc = '/proc'): boolean {
  let p = pid;
  for (let i = 0; i < 256 && p > 1; i++) {
    if (p === root) return true;
    p = parentOf(p, proc);
  }
  return false;
}

/** Finds who holds the socket; a text like `curl (pid 4242, under run's command)`, or undefined. */
export function whoAsked(q: WhoQuery, rootPid?: number, proc = '/proc'): string | undefined {
  const proto = q.proto === 'tcp' || q.proto === 'udp' ? q.proto : undefined;
  if (!proto) return undefined;
  const row = matchSocket(table(proto), q);
  if (!row) return undefined;
  const pid = row.inode ? pidsOfInode(row.inode, proc)[0] : undefined;
  if (!pid) return `uid ${row.uid} (process already gone)`;
  const comm = processName(pid, proc) || '?';
  const under =
    rootPid === undefined
      ? ''
      : descendsFrom(pid, rootPid, proc)
        ? ", under run's command"
        : ", not under run's command";
  return `${comm} (pid ${pid}${under})`;
}
