import { describe, expect, test } from '@jest/globals';
import { spawn } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { findPeerProcess, findSocketInode } from '../../../src/broker/peer.js';

const TABLE = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:A0B1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 11111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:C350 0100007F:A0B1 01 00000000:00000000 00:00000000 00000000     0        0 22222 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:A0B1 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 33333 1 0000000000000000 20 4 30 10 -1
`;

describe('requesting process lookup', () => {
  test('picks the client side of the connection from /proc/net/tcp', () => {
    // Client port 0xC350 = 50000 talking to server port 0xA0B1 = 41137.
    expect(findSocketInode(TABLE, 50000, 41137)).toBe('22222');
    expect(findSocketInode(TABLE, 41137, 50000)).toBe('33333');
    expect(findSocketInode(TABLE, 1, 41137)).toBeUndefined();
  });

  test('finds the process holding a real loopback connection', async () => {
    const conn = new Promise<Socket>((resolve) => {
      const server = createServer((s) => {
        server.close();
        resolve(s);
      });
      server.listen(0, '127.0.0.1', () => {
        const port = (server.address() as { port: number }).port;
        spawnClient(port);
      });
    });
    let child: ReturnType<typeof spawn> | undefined;
    const spawnClient = (port: number): void => {
      child = spawn(
        process.execPath,
        ['-e', `require('net').connect(${port}, '127.0.0.1'); setTimeout(() => {}, 20000)`],
        { stdio: 'ignore' },
      );
    };
    const s = await conn;
    try {
      const peer = await findPeerProcess(s.remotePort!, s.localPort!, {
        selfPid: process.pid,
        budgetMs: 2000,
      });
      expect(peer?.pid).toBe(child!.pid);
      expect(peer?.comm).toBe('node');
    } finally {
      s.destroy();
      child?.kill('SIGKILL');
    }
  });
});
