/**
 * A hostile TCP client of the DNS proxy: one connection that pipelines refused names as
 * fast as it can is held to the refusal budget a UDP source gets (and one that never reads
 * its answers stops being read once they pass 64 KiB, proxy-tcp.ts).
 */
import { afterEach, describe, expect, test } from '@jest/globals';
import dgram from 'node:dgram';
import net from 'node:net';
import { DomainMatcher, parseDomains } from '../../../src/fence/policy.js';
import { DnsProxy } from '../../../src/fence/proxy.js';
import { REFUSALS_PER_SOURCE_PER_SECOND } from '../../../src/fence/refusals.js';
import { name } from '../../harness/dns.js';

function query(n: string, id: number): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(0x0100, 2);
  h.writeUInt16BE(1, 4);
  return Buffer.concat([h, name(n), Buffer.from([0, 1, 0, 1])]);
}

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
});
