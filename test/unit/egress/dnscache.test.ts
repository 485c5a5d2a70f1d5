/**
 * The proxy's answer cache: what is stored and what is not, TTLs counted down, the
 * asker's id and letter case restored, expiry, the size bound; then the proxy itself on
 * loopback sockets with a real UDP upstream: a cached answer never reaches the upstream,
 * still waits for the sets, and still counts as a query of its name.
 */
import { afterEach, describe, expect, test } from '@jest/globals';
import dgram from 'node:dgram';
import net from 'node:net';
import { AnswerCache, cacheKey, serveCached, ttlFields } from '../../../src/fence/dnscache.js';
import { readAnswer, readQuery, type AnswerAddresses } from '../../../src/fence/dnswire.js';
import { DomainMatcher, parseDomains } from '../../../src/fence/policy.js';
import { DnsProxy, type AddressSink } from '../../../src/fence/proxy.js';
import { name, rr } from '../../harness/dns.js';

function opt(o: { size?: number; dnssecOk?: boolean; options?: Buffer } = {}): Buffer {
  const r = Buffer.alloc(11);
  r.writeUInt16BE(41, 1);
  r.writeUInt16BE(o.size ?? 1232, 3);
  r.writeUInt16BE(o.dnssecOk ? 0x8000 : 0, 7);
  r.writeUInt16BE(o.options?.length ?? 0, 9);
  return Buffer.concat([r, o.options ?? Buffer.alloc(0)]);
}

function query(
  n: string,
  o: { id?: number; type?: number; flags?: number; additional?: Buffer[] } = {},
): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(o.id ?? 0xabcd, 0);
  h.writeUInt16BE(o.flags ?? 0x0100, 2);
  h.writeUInt16BE(1, 4);
  h.writeUInt16BE(o.additional?.length ?? 0, 10);
  return Buffer.concat([h, name(n), Buffer.from([0, o.type ?? 1, 0, 1]), ...(o.additional ?? [])]);
}

const PTR_Q = Buffer.from([0xc0, 12]);

function soa(minimum: number): Buffer {
  const tail = Buffer.alloc(20);
  tail.writeUInt32BE(1, 0);
  tail.writeUInt32BE(minimum, 16);
  return Buffer.concat([name('ns.test'), name('hostmaster.test'), tail]);
}

/** An answer to `q` with flags 0x8180 | extra and the given sections. */
function answer(
  q: Buffer,
  o: { rcode?: number; tc?: boolean; an?: Buffer[]; ns?: Buffer[]; ar?: Buffer[] } = {},
): Buffer {
  const check = readQuery(q);
  if (!check.ok) throw new Error('bad query');
  const h = Buffer.from(q.subarray(0, 12));
  h.writeUInt16BE(0x8180 | (o.tc ? 0x0200 : 0) | (o.rcode ?? 0), 2);
  h.writeUInt16BE(o.an?.length ?? 0, 6);
  h.writeUInt16BE(o.ns?.length ?? 0, 8);
  h.writeUInt16BE(o.ar?.length ?? 0, 10);
  return Buffer.concat([h, q.subarray(12, check.q.end), ...(o.an ?? []), ...(o.ns ?? []), ...(o.ar ?? [])]);
}

function aRecord(ttl: number, ip = [192, 0, 2, 1]): Buffer {
  return rr(PTR_Q, 1, ttl, Buffer.from(ip));
}

function keyOf(q: Buffer, tcp = false): string | undefined {
  const c = readQuery(q);
  if (!c.ok) throw new Error('bad query');
  return cacheKey(q, c.q, tcp);
}

function endOf(q: Buffer): number {
  const c = readQuery(q);
  if (!c.ok) throw new Error('bad query');
  return c.q.end;
}

function parsed(msg: Buffer): AnswerAddresses {
  const a = readAnswer(msg);
  if (!a) throw new Error('bad answer');
  return a;
}

describe('cache key', () => {
  test('the same for any letter case and id; differs by type, DO bit, CD bit, payload size, transport', () => {
    const k = keyOf(query('www.a.test'));
    expect(k).toBeDefined();
    expect(keyOf(query('WWW.A.Test', { id: 7 }))).toBe(k);
    const others = [
      keyOf(query('www.a.test', { type: 28 })),
      keyOf(query('www.a.test', { flags: 0x0110 })),
      keyOf(query('www.a.test', { additional: [opt()] })),
      keyOf(query('www.a.test', { additional: [opt({ dnssecOk: true })] })),
      keyOf(query('www.a.test', { additional: [opt({ size: 4096 })] })),
      keyOf(query('www.a.test'), true),
    ];
    expect(new Set([k, ...others]).size).toBe(others.length + 1);
  });

  test('no key (never from the cache) for EDNS options such as a cookie, two additional records, trailing bytes', () => {
    const cookie = Buffer.concat([Buffer.from([0, 10, 0, 8]), Buffer.alloc(8, 1)]);
    expect(keyOf(query('a.test', { additional: [opt({ options: cookie })] }))).toBeUndefined();
    expect(keyOf(query('a.test', { additional: [opt(), opt()] }))).toBeUndefined();
    const trailing = Buffer.concat([query('a.test'), Buffer.from([0])]);
    expect(keyOf(trailing)).toBeUndefined();
  });
});

describe('AnswerCache', () => {
  test('serves with TTLs counted down by whole seconds, the asker’s id and letter case', () => {
    let now = 1_000_000;
    const cache = new AnswerCache({ now: () => now });
    const first = query('www.a.test', { id: 1 });
    const msg = answer(first, {
      an: [rr(PTR_Q, 5, 300, name('cdn.a.test')), aRecord(60)],
      ar: [opt()],
    });
    expect(cache.put(keyOf(first)!, msg, parsed(msg))).toBe(true);
    now += 2_900;
    const asker = query('WwW.A.tEsT', { id: 0x4242 });
    const hit = cache.get(keyOf(asker)!);
    expect(hit?.age).toBe(2);
    const out = serveCached(hit!, asker, endOf(asker))!;
    expect(out.readUInt16BE(0)).toBe(0x4242);
    expect(out.subarray(12, endOf(asker))).toEqual(asker.subarray(12, endOf(asker)));
    const r = parsed(out);
    expect(r.v4).toEqual([{ address: '192.0.2.1', ttl: 58 }]);
    expect(ttlFields(out)?.ttls).toEqual([298, 58]);
    // The OPT record's TTL field holds flags, not a TTL: left as it was.
    expect(out.subarray(out.length - 11)).toEqual(opt());
    // The stored answer is untouched.
    expect(ttlFields(cache.get(keyOf(first)!)!.entry.msg)?.ttls).toEqual([300, 60]);
  });

  test('an entry is gone once its smallest TTL has run out', () => {
    let now = 0;
    const cache = new AnswerCache({ now: () => now });
    const q = query('short.a.test');
    const msg = answer(q, { an: [aRecord(3), aRecord(30, [192, 0, 2, 2])] });
    cache.put(keyOf(q)!, msg, parsed(msg));
    now = 2_999;
    expect(cache.get(keyOf(q)!)?.age).toBe(2);
    now = 3_000;
    expect(cache.get(keyOf(q)!)).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  test('never stored: SERVFAIL, REFUSED, truncated, TTL 0, NODATA without an SOA', () => {
    const cache = new AnswerCache();
    const q = query('x.a.test');
    const k = keyOf(q)!;
    for (const msg of [
      answer(q, { rcode: 2 }),
      answer(q, { rcode: 2, an: [aRecord(60)] }),
      answer(q, { rcode: 5, an: [aRecord(60)] }),
      answer(q, { tc: true, an: [aRecord(60)] }),
      answer(q, { an: [aRecord(0)] }),
      answer(q, { an: [aRecord(60), aRecord(0, [192, 0, 2, 2])] }),
      answer(q),
    ])
      expect(cache.put(k, msg, parsed(msg))).toBe(false);
    expect(cache.size).toBe(0);
  });

  test('NXDOMAIN with an SOA is kept no longer than the SOA’s MINIMUM', () => {
    let now = 0;
    const cache = new AnswerCache({ now: () => now });
    const q = query('gone.a.test');
    const msg = answer(q, { rcode: 3, ns: [rr(name('a.test'), 6, 3600, soa(5))] });
    expect(cache.put(keyOf(q)!, msg, parsed(msg))).toBe(true);
    now = 4_000;
    expect(cache.get(keyOf(q)!)).toBeDefined();
    now = 5_000;
    expect(cache.get(keyOf(q)!)).toBeUndefined();
  });

  test('bounded: the oldest entry goes when the count or the bytes would be exceeded', () => {
    const cache = new AnswerCache({ maxEntries: 3 });
    const put = (c: AnswerCache, n: string): void => {
      const q = query(n);
      const msg = answer(q, { an: [aRecord(60)] });
      c.put(keyOf(q)!, msg, parsed(msg));
    };
    for (const n of ['a1.a.test', 'a2.a.test', 'a3.a.test', 'a4.a.test']) put(cache, n);
    expect(cache.size).toBe(3);
    expect(cache.get(keyOf(query('a1.a.test'))!)).toBeUndefined();
    expect(cache.get(keyOf(query('a4.a.test'))!)).toBeDefined();
    const one = answer(query('b1.a.test'), { an: [aRecord(60)] }).length;
    const small = new AnswerCache({ maxBytes: one * 2 });
    for (const n of ['b1.a.test', 'b2.a.test', 'b3.a.test']) put(small, n);
    expect(small.size).toBe(2);
    expect(small.get(keyOf(query('b1.a.test'))!)).toBeUndefined();
  });
});

/**
 * An upstream on loopback, UDP and TCP on one port, answering every A query with
 * 192.0.2.1 (TTL `ttl`) or `rcode`; `asked` lists each question it got, `tcp:` marked.
 */
async function upstream(o: { ttl: number; rcode?: number }): Promise<{
  sock: dgram.Socket;
  port: number;
  asked: string[];
}> {
  const asked: string[] = [];
  const reply = (msg: Buffer, tcp: boolean): Buffer | undefined => {
    const c = readQuery(msg);
    if (!c.ok) return undefined;
    asked.push(`${tcp ? 'tcp:' : ''}${c.q.name}`);
    return o.rcode ? answer(msg, { rcode: o.rcode }) : answer(msg, { an: [aRecord(o.ttl)] });
  };
  const tcp = net.createServer((c) => {
    let buf = Buffer.alloc(0);
    c.on('error', () => c.destroy());
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const out = reply(buf.subarray(2, 2 + buf.readUInt16BE(0)), true);
        buf = buf.subarray(2 + buf.readUInt16BE(0));
        if (!out) continue;
        const len = Buffer.alloc(2);
        len.writeUInt16BE(out.length);
        c.write(Buffer.concat([len, out]));
      }
    });
  });
  await new Promise<void>((res) => tcp.listen(0, '127.0.0.1', res));
  const port = (tcp.address() as net.AddressInfo).port;
  const sock = dgram.createSocket('udp4');
  sock.on('message', (msg, r) => {
    const out = reply(msg, false);
    if (out) sock.send(out, r.port, r.address);
  });
  sock.on('close', () => tcp.close());
  await new Promise<void>((res) => sock.bind(port, '127.0.0.1', res));
  return { sock, port, asked };
}

/** One query over a fresh TCP connection to `port`; the framed answer. */
function askTcp(port: number, q: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      c.destroy();
      reject(new Error('no TCP answer'));
    }, 2000);
    c.on('error', reject);
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        clearTimeout(timer);
        c.destroy();
        resolve(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      }
    });
    const len = Buffer.alloc(2);
    len.writeUInt16BE(q.length);
    c.write(Buffer.concat([len, q]));
  });
}

/** A sink that records each call and holds its answer until `open()` (an nft update). */
class HeldSink implements AddressSink {
  calls: { v4: string[]; age: number }[] = [];
  private waiting: (() => void)[] = [];
  hold = false;
  /** Set: every update fails, as when nft refuses it. */
  failing = false;
  ensure(v4: readonly { address: string; ttl: number }[], _v6: unknown, age = 0): Promise<void> | undefined {
    this.calls.push({ v4: v4.map((a) => `${a.address}/${a.ttl - age}`), age });
    if (this.failing) return Promise.reject(new Error('nft: no such set'));
    if (!this.hold) return undefined;
    return new Promise((r) => this.waiting.push(r));
  }
  open(): void {
    for (const w of this.waiting.splice(0)) w();
  }
}

describe('DnsProxy with its cache', () => {
  const closers: (() => void)[] = [];
  afterEach(() => {
    for (const c of closers.splice(0)) c();
  });

  async function setup(o: { ttl?: number; rcode?: number; cache?: false; policy?: 'block' | 'audit' } = {}) {
    const up = await upstream({ ttl: o.ttl ?? 60, rcode: o.rcode });
    const sink = new HeldSink();
    const proxy = new DnsProxy({
      matcher: new DomainMatcher(parseDomains('*.a.test')),
      policy: o.policy ?? 'block',
      upstream: { address: '127.0.0.1', port: up.port },
      sink,
      cache: o.cache,
    });
    const server = dgram.createSocket('udp4');
    await new Promise<void>((res) => server.bind(0, '127.0.0.1', res));
    proxy.serveUdp(server);
    const tcpServer = net.createServer();
    await new Promise<void>((res) => tcpServer.listen(0, '127.0.0.1', res));
    proxy.serveTcp(tcpServer);
    const tcpPort = (tcpServer.address() as net.AddressInfo).port;
    await proxy.connectUpstream();
    const client = dgram.createSocket('udp4');
    await new Promise<void>((res) => client.bind(0, '127.0.0.1', res));
    closers.push(() => {
      proxy.close();
      up.sock.close();
      client.close();
    });
    const replies: Buffer[] = [];
    client.on('message', (m) => replies.push(m));
    const ask = async (q: Buffer, n = replies.length + 1): Promise<Buffer | undefined> => {
      client.send(q, server.address().port, '127.0.0.1');
      for (let i = 0; i < 100 && replies.length < n; i++) await new Promise((r) => setTimeout(r, 10));
      return replies[n - 1];
    };
    return { up, sink, proxy, ask, replies, tcpPort };
  }

  test('the second asker gets the cached answer without the upstream being asked; its id and case; counted', async () => {
    const { up, sink, proxy, ask } = await setup();
    const a = await ask(query('www.a.test', { id: 1 }));
    expect(a?.readUInt16BE(0)).toBe(1);
    const q2 = query('WWW.a.TEST', { id: 2 });
    const b = await ask(q2);
    expect(b?.readUInt16BE(0)).toBe(2);
    expect(b?.subarray(12, endOf(q2))).toEqual(q2.subarray(12, endOf(q2)));
    expect(parsed(b!).v4).toEqual([{ address: '192.0.2.1', ttl: 60 }]);
    expect(up.asked).toEqual(['www.a.test']);
    expect(proxy.stats.cacheHits).toBe(1);
    expect(proxy.stats.names.get('www.a.test')).toMatchObject({ queries: 2, allowed: true });
    expect([...proxy.stats.names.get('www.a.test')!.addresses]).toEqual(['192.0.2.1']);
    // Both answers went through the sets, the cached one with its age.
    expect(sink.calls).toEqual([
      { v4: ['192.0.2.1/60'], age: 0 },
      { v4: ['192.0.2.1/60'], age: 0 },
    ]);
  });

  test('a cached answer is held until the sets have its addresses', async () => {
    const { sink, ask, replies } = await setup();
    await ask(query('www.a.test', { id: 1 }));
    sink.hold = true;
    const pending = ask(query('www.a.test', { id: 2 }), 2);
    await new Promise((r) => setTimeout(r, 100));
    expect(replies).toHaveLength(1);
    sink.open();
    expect((await pending)?.readUInt16BE(0)).toBe(2);
  });

  test('a cached answer whose addresses cannot be put in the sets is refused (SERVFAIL), counted as a set failure, not a cache hit', async () => {
    const { sink, ask, proxy } = await setup();
    await ask(query('www.a.test', { id: 1 }));
    sink.failing = true;
    const b = await ask(query('www.a.test', { id: 2 }), 2);
    expect(b!.readUInt16BE(2) & 0xf).toBe(2);
    expect(proxy.stats.cacheHits).toBe(0);
    expect(proxy.stats.setFailures).toBe(1);
  });

  test('a fresh answer is cached only once the sets have its addresses', async () => {
    const { sink, ask, proxy, replies } = await setup();
    sink.hold = true;
    const first = ask(query('www.a.test', { id: 1 }), 1);
    await new Promise((r) => setTimeout(r, 100));
    expect(replies).toHaveLength(0);
    expect(proxy.cache?.size).toBe(0);
    sink.open();
    await first;
    expect(proxy.cache?.size).toBe(1);
  });

  test('over TCP: cached apart from UDP answers, then served from the cache with the asker’s id', async () => {
    const { up, tcpPort, ask, proxy } = await setup();
    await ask(query('www.a.test', { id: 1 }));
    const first = await askTcp(tcpPort, query('www.a.test', { id: 7 }));
    expect(first.readUInt16BE(0)).toBe(7);
    const second = await askTcp(tcpPort, query('Www.A.test', { id: 8 }));
    expect(second.readUInt16BE(0)).toBe(8);
    expect(parsed(second).v4).toEqual([{ address: '192.0.2.1', ttl: 60 }]);
    expect(up.asked).toEqual(['www.a.test', 'tcp:www.a.test']);
    expect(proxy.stats.cacheHits).toBe(1);
  });

  test('SERVFAIL is not cached: every asker goes upstream', async () => {
    const { up, ask } = await setup({ rcode: 2 });
    await ask(query('www.a.test', { id: 1 }));
    await ask(query('www.a.test', { id: 2 }));
    expect(up.asked).toEqual(['www.a.test', 'www.a.test']);
  });

  test('with the cache off, and for names not on the list in audit mode, every query goes upstream', async () => {
    const off = await setup({ cache: false });
    await off.ask(query('www.a.test', { id: 1 }));
    await off.ask(query('www.a.test', { id: 2 }));
    expect(off.up.asked).toHaveLength(2);
    const audit = await setup({ policy: 'audit' });
    await audit.ask(query('www.evil.test', { id: 1 }));
    await audit.ask(query('www.evil.test', { id: 2 }));
    expect(audit.up.asked).toEqual(['www.evil.test', 'www.evil.test']);
    expect(audit.proxy.stats.names.get('www.evil.test')).toMatchObject({ queries: 2, allowed: false });
  });

  test('in block mode a refused name is never cached nor forwarded', async () => {
    const { up, ask, proxy } = await setup();
    const r = await ask(query('www.evil.test', { id: 1 }));
    expect(r!.readUInt16BE(2) & 0xf).toBe(3);
    await ask(query('www.evil.test', { id: 2 }));
    expect(up.asked).toEqual([]);
    expect(proxy.cache?.size).toBe(0);
  });
});
