/**
 * The warm-up (src/fence/warmup.ts): the daemon's last setup step sends a throwaway proxy,
 * built by the daemon's own builder, thousands of queries on loopback. It must run every
 * part of the answer path (cached, forwarded with a set update, AAAA, refused), write
 * nothing anywhere real, close what it opened, and stop at its time budget when the
 * upstream never answers.
 */
import { expect, test } from '@jest/globals';
import dgram from 'node:dgram';
import { readAnswer, readQuery, sameQuestion } from '../../../src/fence/dnswire.js';
import { AnsweredNames } from '../../../src/fence/answered.js';
import { AllowSets, type SetShell } from '../../../src/fence/nftshell.js';
import { DomainMatcher } from '../../../src/fence/policy.js';
import { DnsProxy } from '../../../src/fence/proxy.js';
import {
  NO_SETS,
  nth,
  queryAt,
  Slab,
  WARM_DOMAINS,
  warmAnswer,
  warmQuery,
  warmUp,
} from '../../../src/fence/warmup.js';

/** A proxy as the daemon's builder makes the warm one, with its set lines recorded. */
function warmProxy(up: { address: string; port: number }, lines: string[], names: AnsweredNames): DnsProxy {
  const shell: SetShell = { run: (line) => (lines.push(line), NO_SETS.run(line)) };
  return new DnsProxy({
    matcher: new DomainMatcher(WARM_DOMAINS),
    policy: 'block',
    upstream: up,
    sink: new AllowSets(shell, 60),
    onRefused: () => undefined,
    onAnswer: (n, v4, v6, age) => names.record(n, v4, v6, age),
  });
}

test('the warm upstream answers a query with one address of its type from the documentation ranges', () => {
  const a = readAnswer(warmAnswer(warmQuery(7, 'x.warm.cordon.invalid', 1), 3)!, {
    name: 'x.warm.cordon.invalid',
    end: 12 + 23 + 4,
  });
  expect(a?.v4.map((v) => [v.address, v.ttl])).toEqual([['192.0.2.4', 300]]);
  const q6 = warmQuery(8, 'y.warm.cordon.invalid', 28);
  expect(readQuery(q6)).toMatchObject({ ok: true, q: { id: 8, qtype: 28 } });
  const a6 = readAnswer(warmAnswer(q6, 0x1234)!, { name: 'y.warm.cordon.invalid', end: q6.length });
  expect(a6?.v6.map((v) => v.address)).toEqual(['2001:db8::1234']);
});

test('hostile: a datagram too short for a question, sent to the warm upstream, gets no answer and throws nothing', () => {
  // Any local process can send to the warm upstream's loopback port while the warm-up runs;
  // a throw in its message handler would end the daemon during setup (it read the type at
  // length - 4, a RangeError below 4 bytes).
  for (let len = 0; len < 17; len++) expect(warmAnswer(Buffer.alloc(len, 0xff), len)).toBeUndefined();
  // The shortest query with a question (the root name) is answered.
  const root = Buffer.from('0001010000010000000000000000010001', 'hex');
  expect(warmAnswer(root, 0)?.length).toBe(17 + 16);
});

/** The warm-up's query for `name`, as it was built before it was written in place (split, concat). */
function builtQuery(id: number, name: string, qtype: number): Buffer {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const q = Buffer.concat([Buffer.alloc(12), ...labels, Buffer.from([0, 0, 0, 0, 1])]);
  q.writeUInt16BE(id, 0);
  q.writeUInt16BE(0x0100, 2);
  q.writeUInt16BE(1, 4);
  q.writeUInt16BE(qtype, q.length - 4);
  return q;
}

/** The warm upstream's answer, as it was built before it was written in place. */
function builtAnswer(query: Buffer, n: number): Buffer {
  const v6 = query.readUInt16BE(query.length - 4) === 28;
  const rr = Buffer.alloc(12 + (v6 ? 16 : 4));
  rr.writeUInt16BE(0xc00c, 0);
  rr.writeUInt16BE(v6 ? 28 : 1, 2);
  rr.writeUInt16BE(1, 4);
  rr.writeUInt32BE(300, 6);
  rr.writeUInt16BE(v6 ? 16 : 4, 10);
  if (v6) {
    rr.writeUInt32BE(0x20010db8, 12);
    rr.writeUInt16BE(n & 0xffff, 26);
  } else rr.set([192, 0, 2, 1 + (n % 250)], 12);
  const out = Buffer.concat([query, rr]);
  out.writeUInt16BE(0x8180, 2);
  out.writeUInt16BE(1, 6);
  return out;
}

test("the warm-up's queries and answers written in place are, byte for byte, those it built one by one, and none is written over by a later one", () => {
  const queries = new Slab();
  const answers = new Slab();
  const written: { i: number; q: Buffer; a: Buffer; q0: Buffer; a0: Buffer }[] = [];
  let wrong = 0;
  // Past one id wrap (ids 1..65535) and into five-digit names, besides the warm-up's own 4000.
  for (let i = 0; i < 70_000; i++) {
    const id = (i % 0xffff) + 1;
    const { name, qtype } = nth(i);
    const q0 = builtQuery(id, name, qtype);
    const a0 = builtAnswer(q0, i);
    const q = queryAt(queries, i, id);
    const a = warmAnswer(q, i, answers)!;
    if (!q.equals(q0) || !a.equals(a0)) wrong++;
    written.push({ i, q, a, q0, a0 });
  }
  expect(wrong).toBe(0);
  // Every one as it was written, once all were: no bytes handed out twice.
  expect(written.filter((w) => !w.q.equals(w.q0) || !w.a.equals(w.a0)).map((w) => w.i)).toEqual([]);
  // The same mix: six in ten the cached name, two new A, one new AAAA, one refused.
  const ten = Array.from({ length: 10 }, (_, i) => nth(40 + i));
  expect(ten).toEqual([
    ...Array.from({ length: 6 }, () => ({ name: 'a.warm.cordon.invalid', qtype: 1 })),
    { name: 'n46.warm.cordon.invalid', qtype: 1 },
    { name: 'n47.warm.cordon.invalid', qtype: 1 },
    { name: 'n48.warm.cordon.invalid', qtype: 28 },
    { name: 'r49.refused.invalid', qtype: 1 },
  ]);
});

test.each([
  // i, id, the query, the upstream's answer to it (n = i), as the wire has them
  [
    0,
    1,
    '0001010000010000000000000161047761726d06636f72646f6e07696e76616c69640000010001',
    '0001818000010001000000000161047761726d06636f72646f6e07696e76616c69640000010001c00c000100010000012c0004c0000201',
  ],
  [
    8,
    9,
    '000901000001000000000000026e38047761726d06636f72646f6e07696e76616c696400001c0001',
    '000981800001000100000000026e38047761726d06636f72646f6e07696e76616c696400001c0001c00c001c00010000012c001020010db8000000000000000000000008',
  ],
  [
    3999,
    4000,
    '0fa001000001000000000000057233393939077265667573656407696e76616c69640000010001',
    '0fa081800001000100000000057233393939077265667573656407696e76616c69640000010001c00c000100010000012c0004c00002fa',
  ],
  [
    65538,
    4,
    '000401000001000000000000066e3635353338047761726d06636f72646f6e07696e76616c696400001c0001',
    '000481800001000100000000066e3635353338047761726d06636f72646f6e07696e76616c696400001c0001c00c001c00010000012c001020010db8000000000000000000000002',
  ],
])(
  'query %i (id %i) and its answer are these bytes, and the proxy reads them as its name, type and id',
  (i, id, query, answer) => {
    const slab = new Slab(64);
    const q = queryAt(slab, i, id);
    expect(q.toString('hex')).toBe(query);
    const { name, qtype } = nth(i);
    // The proxy's own reader: the question ends where the query does (one root label, no more).
    expect(readQuery(q)).toEqual({ ok: true, q: { id, name, qtype, qclass: 1, end: q.length } });
    const a = warmAnswer(q, i, slab)!;
    expect(a.toString('hex')).toBe(answer);
    expect(a.readUInt16BE(0)).toBe(id);
    expect(sameQuestion(a, q, q.length)).toBe(true);
    const read = readAnswer(a, { name, end: q.length });
    const address = qtype === 28 ? `2001:db8::${(i & 0xffff).toString(16)}` : `192.0.2.${1 + (i % 250)}`;
    expect([...(read?.v4 ?? []), ...(read?.v6 ?? [])].map((r) => [r.address, r.ttl])).toEqual([
      [address, 300],
    ]);
    // What these checks catch: a root label lost, or another id, is not read as this query.
    const noRoot = Buffer.concat([q.subarray(0, q.length - 5), q.subarray(q.length - 4)]);
    expect(readQuery(noRoot)).not.toEqual(readQuery(q));
    const otherId = Buffer.from(q);
    otherId.writeUInt16BE(id + 1, 0);
    expect(readQuery(otherId)).not.toEqual(readQuery(q));
  },
);

test('the warm-up asks cached, new, AAAA and refused names, all answered, sets only a shell that writes nothing, and closes its proxy', async () => {
  const lines: string[] = [];
  const names = new AnsweredNames(60);
  let proxy: DnsProxy | undefined;
  let closed = 0;
  const r = await warmUp(
    (up) => {
      proxy = warmProxy(up, lines, names);
      const close = proxy.close.bind(proxy);
      proxy.close = () => (closed++, close());
      return proxy;
    },
    { queries: 1000, budgetMs: 5000 },
  );
  expect(r).toMatchObject({ sent: 1000, answered: 1000, finished: true });
  expect(closed).toBe(1);
  const p = proxy!;
  // Cached: the same name again; refused: a tenth of the queries, none forwarded.
  expect(p.stats.cacheHits).toBeGreaterThan(500);
  expect(p.refusals.total).toBe(100);
  expect(p.stats.names.get('a.warm.cordon.invalid')?.addresses.size).toBeGreaterThan(0);
  // Every set update carried only the warm upstream's addresses, v4 and v6 both.
  const written = lines.join(' ');
  expect(written).toMatch(/allow4 \{ 192\.0\.2\.\d+ timeout/);
  expect(written).toMatch(/allow6 \{ 2001:db8::[0-9a-f]+ timeout/);
  expect(written.replace(/192\.0\.2\.\d+|2001:db8::[0-9a-f]+/g, '')).not.toMatch(/\d+\.\d+\.\d+\.\d+|::/);
  // Its answers are recorded in the answered names it was given (the daemon gives it a new
  // instance, not the web gate's).
  expect(names.answered('a.warm.cordon.invalid', '192.0.2.1')).toBe(true);
});

test('a warm-up whose upstream never answers stops at its time budget and says it did not finish', async () => {
  const silent = dgram.createSocket('udp4');
  await new Promise<void>((r) => silent.bind(0, '127.0.0.1', r));
  try {
    const t0 = Date.now();
    const r = await warmUp(
      () => warmProxy({ address: '127.0.0.1', port: silent.address().port }, [], new AnsweredNames(60)),
      { queries: 4000, budgetMs: 300 },
    );
    expect(r.finished).toBe(false);
    expect(r.sent).toBeLessThan(4000);
    // Cached and refused names are answered by the proxy itself; the forwarded ones are not.
    expect(r.answered).toBeLessThan(r.sent);
    expect(Date.now() - t0).toBeLessThan(300 + 50 + 500);
  } finally {
    silent.close();
  }
});

test('a warm-up whose proxy never connects its upstream still stops at its time budget, and closes the proxy', async () => {
  const t0 = Date.now();
  let closed = 0;
  const r = await warmUp(
    (up) => {
      const p = warmProxy(up, [], new AnsweredNames(60));
      // As DnsProxy.connectUpstream does when the socket's connect fails: an error logged, the
      // promise never settled.
      p.connectUpstream = () => new Promise<void>(() => undefined);
      const close = p.close.bind(p);
      p.close = () => (closed++, close());
      return p;
    },
    { queries: 100, budgetMs: 200 },
  );
  expect(r).toMatchObject({ finished: false, sent: 0 });
  expect(closed).toBe(1);
  expect(Date.now() - t0).toBeLessThan(200 + 500);
}, 3000);

test('a proxy closed while its upstream connects opens no upstream socket and no sweeper after', async () => {
  const p = warmProxy({ address: '127.0.0.1', port: 9 }, [], new AnsweredNames(60));
  const connecting = p.connectUpstream();
  p.close();
  await connecting;
  const inner = p as unknown as { upstreamSocket?: unknown; sweeper?: unknown };
  expect(inner.upstreamSocket).toBeUndefined();
  expect(inner.sweeper).toBeUndefined();
});
