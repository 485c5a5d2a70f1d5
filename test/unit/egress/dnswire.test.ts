import { describe, expect, test } from '@jest/globals';
import {
  readAnswer,
  readQuery,
  refusal,
  RCODE_FORMERR,
  RCODE_NXDOMAIN,
  RCODE_REFUSED,
} from '../../../src/fence/dnswire.js';
import { name, rr } from '../../harness/dns.js';

function query(n: string, opts: { id?: number; qd?: number; type?: number } = {}): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(opts.id ?? 0xabcd, 0);
  h.writeUInt16BE(0x0100, 2);
  h.writeUInt16BE(opts.qd ?? 1, 4);
  const q = Buffer.concat([name(n), Buffer.from([0, opts.type ?? 1, 0, 1])]);
  return Buffer.concat([h, ...Array.from({ length: Math.max(1, opts.qd ?? 1) }, () => q)]);
}

describe('queries', () => {
  test('reads the one question, lower-cased', () => {
    const r = readQuery(query('WWW.Example.COM'));
    expect(r).toMatchObject({ ok: true, q: { id: 0xabcd, name: 'www.example.com', qtype: 1 } });
  });

  test('refuses several questions, a pointer in the question, odd bytes in a label, an answer', () => {
    expect(readQuery(query('a.test', { qd: 2 }))).toMatchObject({ ok: false, rcode: RCODE_FORMERR });
    const ptr = query('a.test');
    ptr[12] = 0xc0;
    ptr[13] = 0x0c;
    expect(readQuery(ptr)).toMatchObject({ ok: false, rcode: RCODE_FORMERR });
    expect(readQuery(query('x\x2ea.test'.replace('.', '\u0000')))).toMatchObject({ ok: false });
    const dotted = Buffer.concat([
      Buffer.alloc(12),
      Buffer.from([3]),
      Buffer.from('x.a'),
      name('test'),
      Buffer.from([0, 1, 0, 1]),
    ]);
    dotted.writeUInt16BE(1, 4);
    expect(readQuery(dotted)).toMatchObject({ ok: false, rcode: RCODE_REFUSED });
    const answer = query('a.test');
    answer.writeUInt16BE(0x8100, 2);
    expect(readQuery(answer)).toMatchObject({ ok: false, rcode: RCODE_FORMERR });
    expect(readQuery(Buffer.alloc(5))).toMatchObject({ ok: false });
  });

  test('NXDOMAIN keeps the id and the question, and carries no records', () => {
    const q = query('evil.test');
    const check = readQuery(q);
    if (!check.ok) throw new Error('query');
    const r = refusal(q, check.q.end, RCODE_NXDOMAIN);
    expect(r.readUInt16BE(0)).toBe(0xabcd);
    expect(r.readUInt16BE(2) & 0x800f).toBe(0x8003);
    expect(r.readUInt16BE(2) & 0x0100).toBe(0x0100);
    expect([r.readUInt16BE(4), r.readUInt16BE(6), r.readUInt16BE(8), r.readUInt16BE(10)]).toEqual([
      1, 0, 0, 0,
    ]);
    expect(r.subarray(12)).toEqual(q.subarray(12, check.q.end));
  });
});

describe('answers', () => {
  test('follows CNAMEs (with compression pointers) and ignores records for other names', () => {
    const q = query('alias.a.test');
    const head = Buffer.from(q.subarray(0, 12));
    head.writeUInt16BE(0x8180, 2);
    head.writeUInt16BE(4, 6);
    const ptrQ = Buffer.from([0xc0, 12]);
    const target = name('cdn.other.test');
    const cname = rr(ptrQ, 5, 300, target);
    const targetAt = 12 + (q.length - 12) + ptrQ.length + 10;
    const a = rr(Buffer.from([0xc0, targetAt]), 1, 30, Buffer.from([192, 0, 2, 9]));
    const aaaa = rr(
      Buffer.from([0xc0, targetAt]),
      28,
      7,
      Buffer.from('20010db8000000000000000000000009', 'hex'),
    );
    const stray = rr(name('unrelated.test'), 1, 30, Buffer.from([198, 51, 100, 66]));
    const msg = Buffer.concat([head, q.subarray(12), cname, a, aaaa, stray]);
    const r = readAnswer(msg);
    expect(r).toMatchObject({
      rcode: 0,
      name: 'alias.a.test',
      aliases: ['cdn.other.test'],
      v4: [{ address: '192.0.2.9', ttl: 30 }],
      v6: [{ address: '2001:db8::9', ttl: 7 }],
    });
  });

  test('malformed answers and pointer loops are rejected, not followed forever', () => {
    const q = query('loop.test');
    const head = Buffer.from(q.subarray(0, 12));
    head.writeUInt16BE(0x8180, 2);
    head.writeUInt16BE(1, 6);
    const loopAt = q.length;
    const loop = Buffer.concat([Buffer.from([0xc0, loopAt]), Buffer.alloc(10)]);
    expect(readAnswer(Buffer.concat([head, q.subarray(12), loop]))).toBeUndefined();
    expect(readAnswer(Buffer.concat([head, q.subarray(12), Buffer.from([1])]))).toBeUndefined();
    expect(readAnswer(q)).toBeUndefined();
  });

  test('HTTPS records: ipv4hint and ipv6hint addresses count like A/AAAA answers', () => {
    const q = query('svc.a.test', { type: 65 });
    const head = Buffer.from(q.subarray(0, 12));
    head.writeUInt16BE(0x8180, 2);
    head.writeUInt16BE(1, 6);
    const alpn = Buffer.from([0, 1, 0, 3, 2, 0x68, 0x32]);
    const v4 = Buffer.from([0, 4, 0, 8, 192, 0, 2, 10, 192, 0, 2, 11]);
    const v6 = Buffer.concat([
      Buffer.from([0, 6, 0, 16]),
      Buffer.from('20010db8000000000000000000000010', 'hex'),
    ]);
    const rdata = Buffer.concat([Buffer.from([0, 1, 0]), alpn, v4, v6]);
    const msg = Buffer.concat([head, q.subarray(12), rr(Buffer.from([0xc0, 12]), 65, 120, rdata)]);
    const r = readAnswer(msg);
    expect(r?.v4).toEqual([
      { address: '192.0.2.10', ttl: 120 },
      { address: '192.0.2.11', ttl: 120 },
    ]);
    expect(r?.v6).toEqual([{ address: '2001:db8::10', ttl: 120 }]);
  });
});
