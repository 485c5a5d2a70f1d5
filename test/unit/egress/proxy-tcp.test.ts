/**
 * A hostile TCP client of the DNS proxy: one connection that pipelines refused names as
 * fast as it can is held to the refusal budget a UDP source gets (and one that never reads
 * its answers stops being read once they pass 64 KiB, proxy-tcp.ts).
 */
import { afterEach, describe, expect, test } from '@jest/globals';
import dgram from 'node:dgram';
import net from 'node:net';
import { DomainMatcher, parseDomains } from '../../../src/fence/policy.js';
import { DnsProxy, MAX_TCP_CLIENTS } from '../../../src/fence/proxy.js';
import { REFUSALS_PER_SOURCE_PER_SECOND } from '../../../src/fence/refusals.js';
import { query } from '../../harness/dns.js';

function framed(q: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(q.length);
  return Buffer.concat([len, q]);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('DnsProxy over TCP, against a hostile client', () => {
  const closers: (() => void)[] = [];
  afterEach(() => {
    for (const c of closers.splice(0)) c();
  });

  async function setup(): Promise<{ proxy: DnsProxy; port: number; udpPort: number }> {
    const proxy = new DnsProxy({
      matcher: new DomainMatcher(parseDomains('*.a.test')),
      policy: 'block',
      // Nothing is forwarded here: every name asked is refused.
      upstream: { address: '127.0.0.1', port: 9 },
      sink: { ensure: () => undefined },
      cache: false,
    });
    const server = net.createServer();
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
    proxy.serveTcp(server);
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((res) => udp.bind(0, '127.0.0.1', res));
    proxy.serveUdp(udp);
    await proxy.connectUpstream();
    closers.push(() => proxy.close());
    return { proxy, port: (server.address() as net.AddressInfo).port, udpPort: udp.address().port };
  }

  test('pipelined refused names on one connection are held to the per-source budget; UDP is still answered', async () => {
    const { proxy, port, udpPort } = await setup();
    const c = net.connect(port, '127.0.0.1');
    closers.push(() => c.destroy());
    c.on('data', () => undefined);
    c.on('error', () => undefined);
    await new Promise<void>((res) => c.once('connect', () => res()));
    const total = 8000;
    c.write(
      Buffer.concat(Array.from({ length: total }, (_, i) => framed(query(`n${i}.evil.test`, i & 0xffff)))),
    );
    await sleep(600);
    // Before the budget: every query a refusal. Past it, one query a hold (200 ms).
    expect(proxy.refusals.total).toBeGreaterThanOrEqual(REFUSALS_PER_SOURCE_PER_SECOND);
    expect(proxy.refusals.total).toBeLessThan(total / 2);
    // Another source is not held behind it.
    const client = dgram.createSocket('udp4');
    closers.push(() => client.close());
    const got = new Promise<Buffer>((res) => client.once('message', (m) => res(m)));
    client.send(query('other.evil.test', 7), udpPort, '127.0.0.1');
    expect((await got).readUInt16BE(0)).toBe(7);
  });
  test('connections held open past the cap close the least recently active, and a new client is still answered', async () => {
    const { proxy, port } = await setup();
    const open = async (): Promise<{ sock: net.Socket; closed: Promise<void> }> => {
      const sock = net.connect(port, '127.0.0.1');
      closers.push(() => sock.destroy());
      sock.on('error', () => undefined);
      const closed = new Promise<void>((res) => sock.once('close', () => res()));
      await new Promise<void>((res) => sock.once('connect', () => res()));
      return { sock, closed };
    };
    // The hostile client's connections, held open and idle, up to the cap.
    const held: { sock: net.Socket; closed: Promise<void> }[] = [];
    for (let i = 0; i < MAX_TCP_CLIENTS; i++) held.push(await open());
    // The last of them is active: it is not the one closed for room.
    held[held.length - 1].sock.write(framed(query('x.evil.test', 1)));
    await sleep(100);
    const fresh = await open();
    const answer = new Promise<Buffer>((res) => fresh.sock.once('data', (d: Buffer) => res(d)));
    fresh.sock.write(framed(query('y.evil.test', 42)));
    expect((await answer).readUInt16BE(2)).toBe(42);
    // The first one opened, idle since, was closed to make room; the active one was not.
    await Promise.race([held[0].closed, sleep(2000)]);
    expect(held[0].sock.destroyed).toBe(true);
    expect(held[held.length - 1].sock.destroyed).toBe(false);
    expect(proxy.stats.tcpEvicted).toBe(1);
  }, 30000);
});
