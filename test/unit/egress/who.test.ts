import { describe, expect, test } from '@jest/globals';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { descendsFrom, matchSocket, parseSocketTable, pidsOfInode } from '../../../src/fence/who.js';
import { tempDir } from '../../harness/tmp.js';

const UDP4 = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   999        0 1111 2 0000000000000000 0
  124: 0100007F:D431 00000000:0000 07 00000000:00000000 00:00000000 00000000  1001        0 2222 2 0000000000000000 0
  125: 02643364:9C40 3271CBCB:270F 01 00000000:00000000 00:00000000 00000000  1001        0 3333 2 0000000000000000 0
`;
const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:A000 B80D0120000002000000000030000000:0050 02 00000000:00000000 00:00000000 00000000  1001        0 4444 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:A001 0000000000000000FFFF00003271CBCB:01BB 02 00000000:00000000 00:00000000 00000000  1001        0 5555 1 0000000000000000 100 0 0 10 0
`;

describe('the socket table', () => {
  test('IPv4 rows: addresses, ports, state, owner and inode', () => {
    const rows = parseSocketTable(UDP4);
    expect(rows).toHaveLength(3);
    expect(rows[1]).toEqual({
      localAddress: '127.0.0.1',
      localPort: 0xd431,
      remoteAddress: '0.0.0.0',
      remotePort: 0,
      state: 7,
      uid: 1001,
      inode: 2222,
    });
    expect(rows[2].remoteAddress).toBe('203.203.113.50');
    expect(rows[2].remotePort).toBe(9999);
  });

  test('IPv6 rows, compressed as nft prints them; mapped IPv4 read as IPv4', () => {
    const rows = parseSocketTable(TCP6);
    expect(rows[0].localAddress).toBe('::1');
    expect(rows[0].remoteAddress).toBe('2001:db8:2::30');
    expect(rows[1].remoteAddress).toBe('203.203.113.50');
    expect(rows[1].remotePort).toBe(443);
  });

  test('a DNS client by its port (never the listener), a destination by address and port', () => {
    const rows = parseSocketTable(UDP4);
    expect(matchSocket(rows, { kind: 'dns', proto: 'udp', port: 0xd431 })?.inode).toBe(2222);
    expect(matchSocket(rows, { kind: 'dns', proto: 'udp', port: 9 })).toBeUndefined();
    expect(
      matchSocket(rows, { kind: 'dest', proto: 'udp', address: '203.203.113.50', port: 9999 })?.inode,
    ).toBe(3333);
    expect(
      matchSocket(rows, { kind: 'dest', proto: 'udp', address: '203.203.113.50', port: 80 }),
    ).toBeUndefined();
    const six = parseSocketTable(TCP6);
    expect(
      matchSocket(six, { kind: 'dest', proto: 'tcp', address: '2001:db8:2:0::30', port: 80 })?.inode,
    ).toBe(4444);
  });
});

describe('processes', () => {
  test('the pid holding a socket inode, and descent from a root pid', () => {
    const proc = tempDir('cordon-who-');
    try {
      const make = (pid: number, ppid: number, comm: string, sockets: number[]): void => {
        mkdirSync(join(proc, String(pid), 'fd'), { recursive: true });
        writeFileSync(join(proc, String(pid), 'stat'), `${pid} (${comm}) S ${ppid} 1 1 0`);
        writeFileSync(join(proc, String(pid), 'comm'), `${comm}\n`);
        sockets.forEach((s, i) => symlinkSync(`socket:[${s}]`, join(proc, String(pid), 'fd', String(i + 3))));
      };
      make(100, 1, 'sh', []);
      make(200, 100, 'my (odd) name', [7]);
      make(300, 1, 'curl', [8]);
      expect(pidsOfInode(7, proc)).toEqual([200]);
      expect(pidsOfInode(8, proc)).toEqual([300]);
      expect(pidsOfInode(9, proc)).toEqual([]);
      expect(descendsFrom(200, 100, proc)).toBe(true);
      expect(descendsFrom(300, 100, proc)).toBe(false);
      expect(descendsFrom(100, 100, proc)).toBe(true);
    } finally {
      rmSync(proc, { recursive: true, force: true });
    }
  });
});
