/**
 * The proxy's forwarded path as made cheap: the answer's question checked on its bytes
 * (sameQuestion), waiting queries in a slot per id with one sweeper, question names and
 * verdicts reused for a name asked again (interned.ts, the matcher's memo). Each cheaper
 * step must decide exactly as the slower one did.
 */
import { afterEach, describe, expect, test } from '@jest/globals';
import dgram from 'node:dgram';
import {
  readAnswer,
  readQuery,
  sameQuestion,
  RCODE_FORMERR,
  RCODE_REFUSED,
} from '../../../src/fence/dnswire.js';
import { IdPool, Pending, PendingTable } from '../../../src/fence/pending.js';
import { DomainMatcher, parseDomains } from '../../../src/fence/policy.js';
import { DnsProxy } from '../../../src/fence/proxy.js';
import { name, rr } from '../../harness/dns.js';

function query(labels: Buffer, opts: { id?: number; type?: number; cls?: number } = {}): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(opts.id ?? 0x1234, 0);
  h.writeUInt16BE(0x0100, 2);
  h.writeUInt16BE(1, 4);
  const t = Buffer.alloc(4);
  t.writeUInt16BE(opts.type ?? 1, 0);
  t.writeUInt16BE(opts.cls ?? 1, 2);
  return Buffer.concat([h, labels, t]);
}

/** The query answered with one A record (192.0.2.1) owned by a pointer to the question. */
function answerTo(q: Buffer): Buffer {
  const a = Buffer.concat([q, rr(Buffer.from([0xc0, 12]), 1, 300, Buffer.from([192, 0, 2, 1]))]);
  a.writeUInt16BE(0x8180, 2);
  a.writeUInt16BE(1, 6);
  return a;
}

/** The plain decoding a name check must agree with: labels lower-cased, joined by dots. */
function reference(labels: string[]): string {
  return labels.map((l) => l.toLowerCase()).join('.');
}

describe('the question check on bytes', () => {
  const q = query(name('WWW.Bench.a.test'), { type: 65 });

  test('the same question in any letter case matches; another name, type or class does not', () => {
    expect(sameQuestion(answerTo(q), q, q.length)).toBe(true);
    expect(sameQuestion(answerTo(query(name('www.BENCH.A.TEST'), { type: 65 })), q, q.length)).toBe(true);
    expect(sameQuestion(answerTo(query(name('www.bench.a.tesu'), { type: 65 })), q, q.length)).toBe(false);
    expect(sameQuestion(answerTo(query(name('www.bench.a'), { type: 65 })), q, q.length)).toBe(false);
    // Type 65 is 0x0041 and type 97 0x0061: letters apart by case, never folded.
    expect(sameQuestion(answerTo(query(name('www.bench.a.test'), { type: 97 })), q, q.length)).toBe(false);
    expect(sameQuestion(answerTo(query(name('www.bench.a.test'), { type: 65, cls: 3 })), q, q.length)).toBe(
      false,
    );
    // `-` (0x2d) and a carriage return (0x0d) differ by 0x20 only: not letters, never folded.
    const dash = query(name('a-b.test'));
    expect(sameQuestion(answerTo(query(name('a\rb.test'))), dash, dash.length)).toBe(false);
    const two = answerTo(q);
    two.writeUInt16BE(2, 4);
    expect(sameQuestion(two, q, q.length)).toBe(false);
    expect(sameQuestion(answerTo(q).subarray(0, q.length - 1), q, q.length)).toBe(false);
  });

  test('readAnswer given the checked question reads what it reads without it', () => {
    const a = answerTo(q);
    const check = readQuery(q);
    expect(check.ok).toBe(true);
    expect(readAnswer(a, { name: 'www.bench.a.test', end: q.length })).toEqual(readAnswer(a));
  });
});

describe('names and verdicts from the question bytes', () => {
  test('over a corpus, asked again and again, the name and verdict are those of the plain decoding', () => {
    const matcher = new DomainMatcher(parseDomains('*.A.Test. exact.example github.com'));
    const corpus: string[][] = [
      ['www', 'a', 'test'],
      ['WWW', 'A', 'TEST'],
      ['a', 'test'],
      ['x', 'y', 'a', 'test'],
      ['exact', 'example'],
      ['EXACT', 'Example'],
      ['sub', 'exact', 'example'],
      ['github', 'com'],
      ['evilgithub', 'com'],
      ['github', 'com', 'evil'],
      ['a', 'test', 'evil'],
      ['_srv', 'a', 'test'],
      ['*', 'a', 'test'],
      // Longer than the name table keeps (made every time) and near the limit.
      ['l'.repeat(63), 'm'.repeat(63), 'a', 'test'],
      ['l'.repeat(63), 'm'.repeat(63), 'n'.repeat(63), 'o'.repeat(52), 'test'],
      // Many names, so slots of the tables are taken over.
      ...Array.from({ length: 1500 }, (_, i) => [`n${i}`, i % 3 ? 'a' : 'b', 'test']),
    ];
    for (let round = 0; round < 3; round++) {
      for (const labels of corpus) {
        const check = readQuery(query(name(labels.join('.'))));
        const expected = reference(labels);
        expect(check.ok && check.q.name).toBe(expected);
        // A fresh matcher has no memo: the verdict of the string path.
        expect(matcher.matches(expected)).toBe(
          new DomainMatcher(parseDomains('*.a.test exact.example github.com')).matches(expected),
        );
      }
    }
    expect(matcher.matches('www.a.test')).toBe(true);
    expect(matcher.matches('a.test')).toBe(false);
    expect(matcher.matches('github.com.evil')).toBe(false);
  });

  test('a dot inside a label is refused though its text equals an allowed name made of two labels', () => {
    const allowed = readQuery(query(name('www.a.test')));
    expect(allowed.ok && allowed.q.name).toBe('www.a.test');
    // One label `www.a` then `test`: the same text, asked after and before the real one.
    const escaped = Buffer.concat([Buffer.from([5]), Buffer.from('www.a'), name('test')]);
    expect(readQuery(query(escaped))).toMatchObject({ ok: false, rcode: RCODE_REFUSED });
    expect(readQuery(query(name('www.a.test')))).toMatchObject({ ok: true, q: { name: 'www.a.test' } });
  });

  test('a compression pointer or an overlong name in a query is malformed, asked again or not', () => {
    const ptr = query(Buffer.from([0xc0, 12]));
    const long = query(name(Array.from({ length: 5 }, () => 'x'.repeat(60)).join('.')));
    for (let i = 0; i < 2; i++) {
      expect(readQuery(ptr)).toMatchObject({ ok: false, rcode: RCODE_FORMERR });
      expect(readQuery(long)).toMatchObject({ ok: false, rcode: RCODE_FORMERR });
    }
  });
});

describe('the table of waiting queries', () => {
  const p = (at: number): Pending =>
    new Pending(
      undefined,
      undefined,
      1,
      '127.0.0.1',
      7,
      Buffer.alloc(12),
      12,
      'a.test',
      undefined,
      undefined,
      at,
    );

  test('a free id is never one in use; size, get and delete; full at its bound', () => {
    const t = new PendingTable(3, new IdPool());
    const ids = new Set<number>();
    for (let i = 0; i < 3; i++) {
      const id = t.freeId();
      expect(t.get(id)).toBeUndefined();
      t.set(id, p(0));
      ids.add(id);
    }
    expect(ids.size).toBe(3);
    expect(t.size).toBe(3);
    expect(t.full).toBe(true);
    const [first] = ids;
    t.delete(first);
    t.delete(first);
    expect(t.size).toBe(2);
    expect(t.get(first)).toBeUndefined();
    expect(t.full).toBe(false);
  });

  test('the sweep drops only queries asked before the cut, and counts them', () => {
    const t = new PendingTable(10, new IdPool());
    t.set(1, p(100));
    t.set(2, p(200));
    t.set(65535, p(50));
    expect(t.sweep(150)).toBe(2);
    expect(t.size).toBe(1);
    expect(t.get(2)).toBeDefined();
    expect(t.sweep(150)).toBe(0);
  });
});

describe('the proxy takes only the answer to the question asked', () => {
  const closers: (() => void)[] = [];
  afterEach(() => {
    for (const c of closers.splice(0)) c();
  });

  /** An upstream that first answers with each forgery, then the real answer (its name upper-cased). */
  async function setup(forge: (a: Buffer) => Buffer[], answer = true) {
    const up = dgram.createSocket('udp4');
    await new Promise<void>((r) => up.bind(0, '127.0.0.1', r));
    up.on('message', (m, r) => {
      const real = answerTo(m);
      for (const f of forge(real)) up.send(f, r.port, r.address);
      for (let i = 12; i < m.length - 4; i++) if (real[i] >= 0x61 && real[i] <= 0x7a) real[i] ^= 0x20;
      if (answer) up.send(real, r.port, r.address);
    });
    const proxy = new DnsProxy({
      matcher: new DomainMatcher(parseDomains('*.a.test')),
      policy: 'block',
      upstream: { address: '127.0.0.1', port: up.address().port },
      sink: { ensure: () => undefined },
      cache: false,
      timeoutMs: 50,
    });
    const server = dgram.createSocket('udp4');
    await new Promise<void>((r) => server.bind(0, '127.0.0.1', r));
    proxy.serveUdp(server);
    await proxy.connectUpstream();
    const client = dgram.createSocket('udp4');
    await new Promise<void>((r) => client.bind(0, '127.0.0.1', r));
    closers.push(() => {
      proxy.close();
      up.close();
      client.close();
    });
    const replies: Buffer[] = [];
    client.on('message', (m) => replies.push(m));
    const ask = async (q: Buffer): Promise<Buffer | undefined> => {
      client.send(q, server.address().port, '127.0.0.1');
      for (let i = 0; i < 100 && replies.length < 1; i++) await new Promise((r) => setTimeout(r, 10));
      return replies[0];
    };
    return { proxy, ask, replies };
  }

  test('answers to another name, type or class with the right id are forged; the real one still gets through', async () => {
    const { proxy, ask } = await setup((real) => {
      const name2 = Buffer.from(real);
      name2[13] ^= 1;
      const type = Buffer.from(real);
      type[real.length - 16 - 4 + 1] = 0x61;
      const cls = Buffer.from(real);
      cls[real.length - 16 - 4 + 3] = 3;
      return [name2, type, cls];
    });
    const q = query(name('www.a.test'), { id: 0x4242, type: 0x41 });
    const got = await ask(q);
    expect(got?.readUInt16BE(0)).toBe(0x4242);
    expect(readAnswer(got!)?.v4.map((a) => a.address)).toEqual(['192.0.2.1']);
    expect(proxy.stats.forgedAnswers).toBe(3);
  });

  test('a query never answered is dropped by the sweeper and counted', async () => {
    const { proxy, ask } = await setup(() => [], false);
    expect(await ask(query(name('www.a.test')))).toBeUndefined();
    for (let i = 0; i < 40 && proxy.stats.upstreamTimeouts === 0; i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(proxy.stats.upstreamTimeouts).toBe(1);
  });
});
