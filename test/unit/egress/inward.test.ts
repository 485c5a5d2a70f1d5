/**
 * Answers that point inward: the classifier over address bytes, the filter (the runner's
 * own addresses, `allowed-ips`, `private-answers`), and the proxy on loopback sockets
 * refusing such an answer before anything reaches the sets, recording the name.
 */
import { afterEach, describe, expect, test } from '@jest/globals';
import dgram from 'node:dgram';
import net from 'node:net';
import { addressBytes, addressKind, kindV4, kindV6 } from '../../../src/fence/ip.js';
import { InwardFilter } from '../../../src/fence/inward.js';
import { readAnswer, readQuery, RCODE_REFUSED } from '../../../src/fence/dnswire.js';
import { DomainMatcher, parseCidrs, parseDomains } from '../../../src/fence/policy.js';
import { DnsProxy, type AddressSink } from '../../../src/fence/proxy.js';
import { name, rr } from '../../harness/dns.js';

describe('the kind of an address, read from its bytes', () => {
  test.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.1.2', 'loopback'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['169.254.169.254', 'metadata'],
    ['169.254.170.2', 'metadata'],
    ['100.100.100.200', 'metadata'],
    ['168.63.129.16', 'metadata'],
    ['169.254.0.1', 'link-local'],
    ['169.254.169.253', 'link-local'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['255.255.255.255', 'broadcast'],
    ['10.1.2.3', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['100.64.0.1', 'private'],
    ['100.127.255.255', 'private'],
    ['100.100.100.201', 'private'],
    ['::', 'unspecified'],
    ['::1', 'loopback'],
    ['fe80::1', 'link-local'],
    ['febf::1', 'link-local'],
    ['ff02::1', 'multicast'],
    ['fd00:ec2::254', 'metadata'],
    ['fd00::1', 'private'],
    ['fd00:ec2::253', 'private'],
    ['fc00::1', 'private'],
    ['::ffff:169.254.169.254', 'metadata'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:10.0.0.1', 'private'],
  ])('%s is %s', (addr, kind) => {
    expect(addressKind(addr)).toBe(kind);
  });

  test.each([
    '1.1.1.1',
    '172.15.255.255',
    '172.32.0.0',
    '192.169.0.1',
    '100.63.255.255',
    '100.128.0.0',
    '168.63.129.17',
    '169.253.255.255',
    '223.255.255.255',
    '240.0.0.1',
    '203.0.113.10',
    '2001:db8::1',
    'fec0::1',
    'fe7f::1',
    '::2',
    '::1:0:0:1',
    '::ffff:1.1.1.1',
    '64:ff9b::a9fe:a9fe',
  ])('%s is a public address', (addr) => {
    expect(addressKind(addr)).toBeUndefined();
  });

  test('reads the bytes where they are in a larger buffer', () => {
    const b = Buffer.concat([Buffer.from([1, 2, 3]), Buffer.from(addressBytes('169.254.169.254'))]);
    expect(kindV4(b, 3)).toBe('metadata');
    const b6 = Buffer.concat([Buffer.from([0xff]), Buffer.from(addressBytes('::1'))]);
    expect(kindV6(b6, 1)).toBe('loopback');
  });
});

const entry = (address: string): { address: string; kind: ReturnType<typeof addressKind> } => ({
  address,
  kind: addressKind(address),
});

describe('InwardFilter', () => {
  test('a public answer passes with nothing allocated; an inward one names each address and kind', () => {
    const f = new InwardFilter({ own: [], allowed: [], privateAnswers: 'allow' });
    expect(f.check({ v4: [entry('203.0.113.10')], v6: [entry('2001:db8::1')] })).toBeUndefined();
    expect(
      f.check({
        v4: [entry('203.0.113.10'), entry('169.254.169.254')],
        v6: [entry('::1'), entry('fe80::1')],
      }),
    ).toEqual([
      { address: '169.254.169.254', kind: 'metadata' },
      { address: '::1', kind: 'loopback' },
      { address: 'fe80::1', kind: 'link-local' },
    ]);
  });

  test("the runner's own addresses are inward, public or private, in any text form", () => {
    const f = new InwardFilter({
      own: ['198.51.100.2', '10.0.0.5', '2001:DB8:1:0::2'],
      allowed: [],
      privateAnswers: 'allow',
    });
    expect(f.check({ v4: [entry('198.51.100.2')], v6: [] })).toEqual([
      { address: '198.51.100.2', kind: 'own' },
    ]);
    expect(f.check({ v4: [entry('10.0.0.5')], v6: [] })).toEqual([{ address: '10.0.0.5', kind: 'own' }]);
    expect(f.check({ v4: [entry('10.0.0.6')], v6: [entry('2001:db8:1::2')] })).toEqual([
      { address: '2001:db8:1::2', kind: 'own' },
    ]);
  });

  test('private answers pass by default and are inward under private-answers: refuse', () => {
    const answer = { v4: [entry('10.1.2.3'), entry('100.64.0.1')], v6: [entry('fd12::1')] };
    expect(new InwardFilter({ own: [], allowed: [], privateAnswers: 'allow' }).check(answer)).toBeUndefined();
    expect(new InwardFilter({ own: [], allowed: [], privateAnswers: 'refuse' }).check(answer)).toEqual([
      { address: '10.1.2.3', kind: 'private' },
      { address: '100.64.0.1', kind: 'private' },
      { address: 'fd12::1', kind: 'private' },
    ]);
  });

  test('an address allowed-ips names is never inward', () => {
    const f = new InwardFilter({
      own: ['198.51.100.2'],
      allowed: parseCidrs('169.254.169.254 10.0.0.0/9 198.51.100.0/24 fe80::/10'),
      privateAnswers: 'refuse',
    });
    expect(
      f.check({
        v4: [entry('169.254.169.254'), entry('10.127.0.1'), entry('198.51.100.2')],
        v6: [entry('fe80::1')],
      }),
    ).toBeUndefined();
    expect(f.check({ v4: [entry('10.128.0.1'), entry('169.254.170.2')], v6: [] })).toEqual([
      { address: '10.128.0.1', kind: 'private' },
      { address: '169.254.170.2', kind: 'metadata' },
    ]);
  });
});

/** An upstream on loopback (UDP and TCP, one port) answering each name from `zone`. */
async function upstream(zone: Record<string, string[]>): Promise<{ close: () => void; port: number }> {
  const reply = (msg: Buffer): Buffer | undefined => {
    const c = readQuery(msg);
    if (!c.ok) return undefined;
    const addrs = (zone[c.q.name] ?? []).filter((a) =>
      net.isIP(a) === 4 ? c.q.qtype === 1 : c.q.qtype === 28,
    );
    const h = Buffer.from(msg.subarray(0, 12));
    h.writeUInt16BE(0x8180, 2);
    h.writeUInt16BE(addrs.length, 6);
    const rrs = addrs.map((a) =>
      rr(Buffer.from([0xc0, 12]), net.isIP(a) === 4 ? 1 : 28, 300, Buffer.from(addressBytes(a))),
    );
    return Buffer.concat([h, msg.subarray(12, c.q.end), ...rrs]);
  };
  const tcp = net.createServer((c) => {
    c.on('error', () => c.destroy());
    c.on('data', (d: Buffer) => {
      const out = reply(d.subarray(2, 2 + d.readUInt16BE(0)));
      if (!out) return;
      const len = Buffer.alloc(2);
      len.writeUInt16BE(out.length);
      c.write(Buffer.concat([len, out]));
    });
  });
  await new Promise<void>((res) => tcp.listen(0, '127.0.0.1', res));
  const port = (tcp.address() as net.AddressInfo).port;
  const sock = dgram.createSocket('udp4');
  sock.on('message', (msg, r) => {
    const out = reply(msg);
    if (out) sock.send(out, r.port, r.address);
  });
  await new Promise<void>((res) => sock.bind(port, '127.0.0.1', res));
  return {
    port,
    close: () => {
      sock.close();
      tcp.close();
    },
  };
}

function query(n: string, type = 1, id = 0x1234): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(0x0100, 2);
  h.writeUInt16BE(1, 4);
  return Buffer.concat([h, name(n), Buffer.from([0, type, 0, 1])]);
}

class Sink implements AddressSink {
  added: string[] = [];
  ensure(v4: readonly { address: string }[], v6: readonly { address: string }[]): undefined {
    this.added.push(...v4.map((a) => a.address), ...v6.map((a) => a.address));
    return undefined;
  }
}

describe('DnsProxy with the inward filter', () => {
  const closers: (() => void)[] = [];
  afterEach(() => {
    for (const c of closers.splice(0)) c();
  });

  const ZONE = {
    'www.a.test': ['203.0.113.10', '2001:db8::10'],
    'meta.a.test': ['169.254.169.254'],
    'mixed.a.test': ['203.0.113.11', '127.0.0.1'],
    'lo6.a.test': ['::1'],
    'internal.a.test': ['10.0.0.7'],
    'self.a.test': ['198.51.100.2'],
    'open.a.test': ['169.254.170.2'],
  };

  async function setup(policy: 'block' | 'audit', privateAnswers: 'allow' | 'refuse' = 'allow') {
    const up = await upstream(ZONE);
    const sink = new Sink();
    const proxy = new DnsProxy({
      matcher: new DomainMatcher(parseDomains('*.a.test')),
      policy,
      upstream: { address: '127.0.0.1', port: up.port },
      sink,
      inward: new InwardFilter({
        own: ['198.51.100.2'],
        allowed: parseCidrs('169.254.170.2'),
        privateAnswers,
      }),
    });
    const server = dgram.createSocket('udp4');
    await new Promise<void>((res) => server.bind(0, '127.0.0.1', res));
    proxy.serveUdp(server);
    const tcpServer = net.createServer();
    await new Promise<void>((res) => tcpServer.listen(0, '127.0.0.1', res));
    proxy.serveTcp(tcpServer);
    await proxy.connectUpstream();
    const client = dgram.createSocket('udp4');
    await new Promise<void>((res) => client.bind(0, '127.0.0.1', res));
    closers.push(() => {
      proxy.close();
      up.close();
      client.close();
    });
    const ask = (n: string, type = 1): Promise<Buffer> =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no answer for ${n}`)), 2000);
        client.once('message', (m) => {
          clearTimeout(timer);
          resolve(m);
        });
        client.send(query(n, type), server.address().port, '127.0.0.1');
      });
    const askTcp = (n: string): Promise<Buffer> =>
      new Promise((resolve, reject) => {
        const c = net.connect((tcpServer.address() as net.AddressInfo).port, '127.0.0.1');
        c.on('error', reject);
        c.on('data', (d: Buffer) => {
          c.destroy();
          resolve(d.subarray(2, 2 + d.readUInt16BE(0)));
        });
        const q = query(n);
        const len = Buffer.alloc(2);
        len.writeUInt16BE(q.length);
        c.write(Buffer.concat([len, q]));
      });
    return { proxy, sink, ask, askTcp };
  }

  const rcode = (m: Buffer): number => m.readUInt16BE(2) & 0xf;

  test('block: an answer with an inward address is refused whole, nothing reaches the sets, the name is recorded', async () => {
    const { proxy, sink, ask, askTcp } = await setup('block');
    const meta = await ask('meta.a.test');
    expect(meta.readUInt16BE(0)).toBe(0x1234);
    expect(rcode(meta)).toBe(RCODE_REFUSED);
    expect(meta.readUInt16BE(6)).toBe(0);
    expect(rcode(await ask('mixed.a.test'))).toBe(RCODE_REFUSED);
    expect(rcode(await ask('lo6.a.test', 28))).toBe(RCODE_REFUSED);
    expect(rcode(await askTcp('self.a.test'))).toBe(RCODE_REFUSED);
    expect(sink.added).toEqual([]);
    // A public answer, a private one (allowed by default) and one allowed-ips names pass.
    expect(readAnswer(await ask('www.a.test'))?.v4.map((a) => a.address)).toEqual(['203.0.113.10']);
    expect(rcode(await ask('internal.a.test'))).toBe(0);
    expect(rcode(await ask('open.a.test'))).toBe(0);
    expect(sink.added).toEqual(['203.0.113.10', '10.0.0.7', '169.254.170.2']);
    const rebinding = Object.fromEntries(
      [...proxy.stats.rebinding].map(([n, r]) => [
        n,
        { answers: r.answers, addresses: Object.fromEntries(r.addresses) },
      ]),
    );
    expect(rebinding).toEqual({
      'meta.a.test': { answers: 1, addresses: { '169.254.169.254': 'metadata' } },
      'mixed.a.test': { answers: 1, addresses: { '127.0.0.1': 'loopback' } },
      'lo6.a.test': { answers: 1, addresses: { '::1': 'loopback' } },
      'self.a.test': { answers: 1, addresses: { '198.51.100.2': 'own' } },
    });
    // A refused answer is not cached: asked again, it goes upstream and is refused again.
    expect(rcode(await ask('meta.a.test'))).toBe(RCODE_REFUSED);
    expect(proxy.stats.rebinding.get('meta.a.test')?.answers).toBe(2);
  });

  test('private-answers: refuse refuses a private answer too', async () => {
    const { proxy, sink, ask } = await setup('block', 'refuse');
    expect(rcode(await ask('internal.a.test'))).toBe(RCODE_REFUSED);
    expect(sink.added).toEqual([]);
    expect(proxy.stats.rebinding.get('internal.a.test')?.addresses.get('10.0.0.7')).toBe('private');
  });

  test('audit: the answer goes through and the attempt is still recorded', async () => {
    const { proxy, ask } = await setup('audit');
    expect(readAnswer(await ask('meta.a.test'))?.v4.map((a) => a.address)).toEqual(['169.254.169.254']);
    expect(proxy.stats.rebinding.get('meta.a.test')?.answers).toBe(1);
  });
});
