import { describe, expect, test } from '@jest/globals';
import { spawn } from 'node:child_process';
import { connect, createServer, type Socket } from 'node:net';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findPeerProcess, findSocketInode } from '../../../src/broker/peer.js';
import { tempDir } from '../../harness/tmp.js';

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
      expect(peer?.uid).toBe(process.getuid!());
    } finally {
      s.destroy();
      child?.kill('SIGKILL');
    }
  });
});

describe('requesting process lookup: addresses and uid (T78)', () => {
  // The runner's own connection 127.0.0.1:50000 -> broker 127.0.0.1:41137 (uid 1000) is listed
  // before the agent's 127.0.0.2:50000 -> 127.0.0.1:41137 (uid 1001): same two ports.
  const SHARED = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:C350 0100007F:A0B1 01 00000000:00000000 00:00000000 00000000  1000        0 55555 1 0000000000000000 20 4 30 10 -1
   1: 0200007F:C350 0100007F:A0B1 01 00000000:00000000 00:00000000 00000000  1001        0 66666 1 0000000000000000 20 4 30 10 -1
`;

  test('hostile: a connection from another loopback address with the same client port is not taken for the runner', () => {
    expect(findSocketInode(SHARED, 50000, 41137, '127.0.0.2', '127.0.0.1')).toBe('66666');
    expect(findSocketInode(SHARED, 50000, 41137, '127.0.0.1', '127.0.0.1')).toBe('55555');
    expect(findSocketInode(SHARED, 50000, 41137, '::ffff:127.0.0.2', '::ffff:127.0.0.1')).toBe('66666');
  });

  test("the requester's uid comes from the socket table, also when its process cannot be read", async () => {
    const root = tempDir('cordon-peer-');
    try {
      mkdirSync(join(root, 'net'));
      writeFileSync(join(root, 'net', 'tcp'), SHARED);
      writeFileSync(join(root, 'net', 'tcp6'), '');
      const peer = await findPeerProcess(50000, 41137, {
        procRoot: root,
        clientAddress: '127.0.0.2',
        serverAddress: '127.0.0.1',
      });
      expect(peer).toEqual({ uid: 1001 });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  test('hostile: two real connections from the same client port on two loopback addresses are told apart', async () => {
    const accepted: Socket[] = [];
    const server = createServer((c) => accepted.push(c));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    // This process: 127.0.0.1:C -> server. A child: 127.0.0.2:C -> server (same C).
    const mine = connect({ host: '127.0.0.1', port, localAddress: '127.0.0.1' });
    await new Promise<void>((r) => mine.once('connect', r));
    const c = mine.localPort!;
    const child = spawn(
      process.execPath,
      [
        '-e',
        `const s = require('net').connect({ host: '127.0.0.1', port: ${port}, localAddress: '127.0.0.2', localPort: ${c} }); s.on('connect', () => console.log('up')); setTimeout(() => {}, 20000)`,
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    try {
      await new Promise<void>((r, j) => {
        child.stdout!.once('data', () => r());
        setTimeout(() => j(new Error('the child did not connect')), 5000).unref();
      });
      for (let i = 0; i < 100 && accepted.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
      const theirs = accepted.find((a) => a.remoteAddress === '127.0.0.2')!;
      expect(theirs.remotePort).toBe(c);
      const peer = await findPeerProcess(c, port, {
        selfPid: process.pid,
        budgetMs: 2000,
        clientAddress: theirs.remoteAddress,
        serverAddress: theirs.localAddress,
      });
      expect(peer?.pid).toBe(child.pid);
    } finally {
      child.kill('SIGKILL');
      mine.destroy();
      for (const a of accepted) a.destroy();
      server.close();
    }
  });

  // A broker bound on ::1 (bind: ::1): the runner's request [::1]:50000 -> [::1]:41137 (uid
  // 1000) is in tcp6; the agent (uid 1001) holds 127.0.0.3:50000 -> 127.0.0.3:41137 in tcp,
  // the same two ports on addresses of its own (it can hold one for every ephemeral port).
  const V6 = {
    tcp: `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0300007F:C350 0300007F:A0B1 01 00000000:00000000 00:00000000 00000000  1001        0 77777 1 0000000000000000 20 4 30 10 -1
`,
    tcp6: `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000000000000100000A:C350 00000000000000000000000001000000:A0B1 01 00000000:00000000 00:00000000 00000000  1002        0 99999 1 0000000000000000 20 4 30 10 -1
   1: 00000000000000000000000001000000:C350 00000000000000000000000001000000:A0B1 01 00000000:00000000 00:00000000 00000000  1000        0 88888 1 0000000000000000 20 4 30 10 -1
`,
  };

  test('hostile: a request to a broker on ::1 is not taken for an IPv4 or another IPv6 connection with the same ports', async () => {
    const root = tempDir('cordon-peer-');
    try {
      mkdirSync(join(root, 'net'));
      writeFileSync(join(root, 'net', 'tcp'), V6.tcp);
      writeFileSync(join(root, 'net', 'tcp6'), V6.tcp6);
      const lookup = (clientAddress: string, serverAddress: string): Promise<unknown> =>
        findPeerProcess(50000, 41137, { procRoot: root, clientAddress, serverAddress });
      expect(await lookup('::1', '::1')).toEqual({ uid: 1000 });
      // The kernel prints each 32-bit word in host order: 0100000A is the bytes 0a 00 00 01.
      expect(await lookup('::a00:1', '::1')).toEqual({ uid: 1002 });
      expect(await lookup('127.0.0.3', '127.0.0.3')).toEqual({ uid: 1001 });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  test('finds the process holding a real connection to a broker on ::1', async () => {
    const accepted: Socket[] = [];
    const server = createServer((c) => accepted.push(c));
    await new Promise<void>((r) => server.listen(0, '::1', r));
    const port = (server.address() as { port: number }).port;
    const child = spawn(
      process.execPath,
      ['-e', `require('net').connect(${port}, '::1', () => console.log('up')); setTimeout(() => {}, 20000)`],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    try {
      await new Promise<void>((r, j) => {
        child.stdout!.once('data', () => r());
        setTimeout(() => j(new Error('the child did not connect')), 5000).unref();
      });
      for (let i = 0; i < 100 && !accepted.length; i++) await new Promise((r) => setTimeout(r, 10));
      const a = accepted[0];
      const peer = await findPeerProcess(a.remotePort!, port, {
        selfPid: process.pid,
        budgetMs: 2000,
        clientAddress: a.remoteAddress,
        serverAddress: a.localAddress,
      });
      expect(peer?.pid).toBe(child.pid);
    } finally {
      child.kill('SIGKILL');
      for (const a of accepted) a.destroy();
      server.close();
    }
  });
});
