import { describe, expect, test } from '@jest/globals';
import {
  HttpFollower,
  MAX_PEEK_BYTES,
  peekHttp,
  peekTls,
  plainName,
  TlsFollower,
} from '../../../src/fence/sni.js';
import { AnsweredNames, MAX_ADDRESSES_PER_NAME, MAX_NAMES } from '../../../src/fence/answered.js';

const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff]);
const ext = (type: number, body: Buffer): Buffer => Buffer.concat([u16(type), u16(body.length), body]);
/** A server_name extension holding these host names. */
const sni = (...names: string[]): Buffer => {
  const list = Buffer.concat(
    names.map((n) => Buffer.concat([Buffer.from([0]), u16(n.length), Buffer.from(n)])),
  );
  return ext(0, Buffer.concat([u16(list.length), list]));
};
/** A ClientHello with these extensions, in one TLS record (or split into records of `split` bytes). */
function hello(exts: Buffer[], split?: number): Buffer {
  const e = Buffer.concat(exts);
  const body = Buffer.concat([
    Buffer.from([3, 3]),
    Buffer.alloc(32, 7),
    Buffer.from([32]),
    Buffer.alloc(32, 1),
    u16(4),
    Buffer.from([0x13, 0x01, 0x13, 0x02]),
    Buffer.from([1, 0]),
    u16(e.length),
    e,
  ]);
  const hs = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]);
  const size = split ?? hs.length;
  const records: Buffer[] = [];
  for (let at = 0; at < hs.length; at += size) {
    const part = hs.subarray(at, at + size);
    records.push(Buffer.concat([Buffer.from([22, 3, 1]), u16(part.length), part]));
  }
  return Buffer.concat(records);
}
const ALPN = ext(16, Buffer.from([0, 3, 2, 0x68, 0x32]));

describe('peekTls', () => {
  test('the server name of a ClientHello, in one record or split across several', () => {
    const one = hello([ALPN, sni('Allowed.Test.')]);
    const split = hello([sni('allowed.test'), ALPN], 20);
    // `size`: the bytes its records take, whatever follows them.
    expect(peekTls(Buffer.concat([one, Buffer.from([20, 3, 3, 0, 1, 1])]))).toEqual({
      state: 'name',
      name: 'allowed.test',
      size: one.length,
    });
    expect(peekTls(split)).toEqual({ state: 'name', name: 'allowed.test', size: split.length });
  });

  test('more bytes wanted while the ClientHello is not whole', () => {
    const full = hello([sni('allowed.test')], 30);
    for (const n of [0, 3, 5, 40, full.length - 1]) expect(peekTls(full.subarray(0, n)).state).toBe('more');
  });

  test.each([
    ['no server name', hello([ALPN])],
    ['two names in the list', hello([sni('allowed.test', 'other.test')])],
    ['the extension twice', hello([sni('allowed.test'), sni('other.test')])],
    ['an encrypted ClientHello', hello([sni('public.test'), ext(0xfe0d, Buffer.alloc(40, 2))])],
    ['the draft ESNI', hello([sni('public.test'), ext(0xffce, Buffer.alloc(40, 2))])],
    ['a name that is not a host name', hello([sni('allowed.test\u0000.other.test')])],
    ['an address as the name', hello([sni('203.0.113.1:443')])],
    ['HTTP on the TLS port', Buffer.from('GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n')],
    ['a handshake other than ClientHello', Buffer.from([22, 3, 1, 0, 4, 2, 0, 0, 0])],
  ])('refused: %s', (_what, bytes) => {
    expect(peekTls(bytes).state).toBe('refuse');
  });

  test('a ClientHello claiming more than the fence reads is refused, not waited for', () => {
    expect(peekTls(Buffer.from([22, 3, 1, 0, 4, 1, 0x01, 0x00, 0x00])).state).toBe('refuse');
    expect(MAX_PEEK_BYTES).toBe(16384);
  });

  test('an extension that runs past the message is refused', () => {
    const h = hello([sni('allowed.test')]);
    // The extensions' total length one byte longer than what follows.
    const at = h.length - sni('allowed.test').length - 2;
    h.writeUInt16BE(h.readUInt16BE(at) + 1, at);
    expect(peekTls(h).state).toBe('refuse');
  });
});

/** A record of `type` (20 CCS, 21 alert, 22 handshake, 23 application data) holding `body`. */
const record = (type: number, body: Buffer): Buffer =>
  Buffer.concat([Buffer.from([type, 3, 3]), u16(body.length), body]);
const CCS = record(20, Buffer.from([1]));
/** A handshake message of `type` with `body`, its 4-byte header first. */
const message = (type: number, body: Buffer): Buffer =>
  Buffer.concat([Buffer.from([type, 0, body.length >> 8, body.length & 0xff]), body]);
/** Feeds `bytes` to a follower in pieces of `step` bytes; the last answer's state, or the first refusal. */
function follow(f: TlsFollower | HttpFollower, bytes: Buffer, step = bytes.length): string {
  let last = 'go';
  for (let at = 0; at < bytes.length; at += step) {
    const r = f.feed(bytes.subarray(at, at + step));
    if (r.state === 'refuse') return `refuse: ${r.why}`;
    last = r.state;
    if (last === 'done') break;
  }
  return last;
}

describe('TlsFollower: every ClientHello up to the first encrypted record', () => {
  const first = hello([sni('allowed.test')]);
  const data = record(23, Buffer.alloc(40, 0xab));

  test('hostile: a second ClientHello (after a HelloRetryRequest) naming another site is refused, with or without the compatibility CCS, in any pieces', () => {
    for (const step of [1, 7, 10000])
      for (const ccs of [[], [CCS]]) {
        const flight = Buffer.concat([first, ...ccs, hello([sni('other.test'), ALPN]), data]);
        expect(follow(new TlsFollower('allowed.test'), flight, step)).toBe(
          'refuse: a later request or ClientHello names another site',
        );
      }
    // Split across records too (a server joins them).
    const split = Buffer.concat([first, CCS, hello([sni('other.test')], 25), data]);
    expect(follow(new TlsFollower('allowed.test'), split)).toMatch(/^refuse: a later .* names another site/);
  });

  test.each([
    ['no name', hello([ALPN])],
    ['two names', hello([sni('allowed.test', 'other.test')])],
    ['an encrypted ClientHello', hello([sni('allowed.test'), ext(0xfe0d, Buffer.alloc(40, 2))])],
  ])('hostile: a second ClientHello with %s is refused', (_what, second) => {
    expect(follow(new TlsFollower('allowed.test'), Buffer.concat([first, CCS, second, data]))).toMatch(
      /^refuse/,
    );
  });

  test('a TLS 1.3 handshake with a HelloRetryRequest: the same name twice, then encrypted records go on unread', () => {
    const flight = Buffer.concat([
      first,
      CCS,
      hello([sni('Allowed.Test'), ALPN]),
      data,
      record(22, message(1, Buffer.alloc(9))),
    ]);
    for (const step of [1, 3, 10000])
      expect(follow(new TlsFollower('allowed.test'), flight, step)).toBe('done');
  });

  test('TLS 1.2: ClientKeyExchange, CCS and an encrypted Finished (a handshake record of random bytes) go on, even one that starts like a ClientHello', () => {
    const kex = record(22, message(16, Buffer.concat([Buffer.from([32]), Buffer.alloc(32, 5)])));
    // GCM: an 8-byte nonce, the 16-byte Finished and a 16-byte tag, encrypted: here, bytes
    // whose first four read as a ClientHello header of 0x01ffff bytes, and of 0x000fff.
    for (const head of [
      [1, 1, 0xff, 0xff],
      [1, 0, 0x0f, 0xff],
      [20, 0, 0, 12],
    ]) {
      const finished = record(22, Buffer.concat([Buffer.from(head), Buffer.alloc(36, 0x5c)]));
      const flight = Buffer.concat([first, kex, CCS, finished, data]);
      expect(follow(new TlsFollower('allowed.test'), flight)).toBe('done');
      expect(follow(new TlsFollower('allowed.test'), flight, 1)).toBe('done');
    }
  });

  test('hostile: a second ClientHello longer than the fence reads is refused once a record continues it', () => {
    const big = message(1, Buffer.alloc(20000, 0));
    const records = [record(22, big.subarray(0, 16000)), record(22, big.subarray(16000))];
    expect(follow(new TlsFollower('allowed.test'), Buffer.concat([first, CCS, ...records, data]))).toBe(
      'refuse: a ClientHello larger than the fence reads',
    );
  });

  test('hostile: after a ClientHello offering early data, an application_data record (0-RTT, skipped by a server that rejects it) does not end the reading: a second ClientHello naming another site is refused', () => {
    const EARLY = ext(42, Buffer.alloc(0));
    const early = hello([sni('allowed.test'), EARLY]);
    expect(peekTls(early)).toEqual({ state: 'name', name: 'allowed.test', size: early.length, early: true });
    const flight = Buffer.concat([data, data, CCS, hello([sni('other.test')]), data]);
    for (const step of [1, 7, 10000])
      expect(follow(new TlsFollower('allowed.test', true), flight, step)).toBe(
        'refuse: a later request or ClientHello names another site',
      );
    // Without early data offered, the first application_data record is the encryption, as before.
    expect(follow(new TlsFollower('allowed.test'), flight)).toBe('done');
    // The same name in the second ClientHello (which offers no early data): the next
    // application_data record is the handshake's, and ends the reading.
    const ok = Buffer.concat([
      data,
      CCS,
      hello([sni('allowed.test')]),
      data,
      record(22, message(1, Buffer.alloc(9))),
    ]);
    for (const step of [1, 10000])
      expect(follow(new TlsFollower('allowed.test', true), ok, step)).toBe('done');
    // 0-RTT accepted (no second ClientHello): read to the end, every record framed.
    expect(follow(new TlsFollower('allowed.test', true), Buffer.concat([data, data, data]))).toBe('go');
    expect(
      follow(new TlsFollower('allowed.test', true), Buffer.concat([data, record(24, Buffer.alloc(3))])),
    ).toMatch(/^refuse/);
  });

  test.each([
    ['a record of another type', record(24, Buffer.alloc(3))],
    ['not TLS', Buffer.from('GET / HTTP/1.1\r\n\r\n')],
  ])('refused after the first ClientHello: %s', (_what, next) => {
    expect(follow(new TlsFollower('allowed.test'), Buffer.concat([first, next]))).toMatch(/^refuse/);
  });
});

describe('HttpFollower', () => {
  test('a request whose head is not whole is held, never sent on in part', () => {
    const f = new HttpFollower('allowed.test');
    const r = f.feed(Buffer.from('GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\nGET / HTTP/1.1\r\nHost: oth'));
    expect(r.state === 'go' && Buffer.concat(r.out).toString()).toBe(
      'GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n',
    );
    expect(f.holding).toBe(true);
    expect(f.feed(Buffer.from('er.test\r\n\r\n')).state).toBe('refuse');
  });
});

describe('the first ClientHello or request head is read once (by the peek), the follower starts after it', () => {
  test('TLS: the follower fed only what follows the first ClientHello reads it as the gate needs', () => {
    const first = hello([sni('allowed.test')], 20);
    const later = Buffer.concat([CCS, hello([sni('other.test')])]);
    const p = peekTls(Buffer.concat([first, later]));
    expect(p).toEqual({ state: 'name', name: 'allowed.test', size: first.length });
    expect(follow(new TlsFollower('allowed.test'), later)).toBe(
      'refuse: a later request or ClientHello names another site',
    );
    const data = record(23, Buffer.alloc(40, 0xab));
    expect(
      follow(new TlsFollower('allowed.test'), Buffer.concat([CCS, hello([sni('allowed.test')]), data])),
    ).toBe('done');
  });

  test("HTTP: a follower told the first head's body framing counts that body through, then reads the next head", () => {
    const head = 'POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 3\r\n\r\n';
    const get = (host: string): string => `GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`;
    const p = peekHttp(Buffer.from(head + 'abc' + get('other.test')));
    expect(p).toMatchObject({ state: 'name', name: 'allowed.test', size: head.length, body: 3 });
    const after = (body: 3 | 'chunked', rest: string, step?: number): string =>
      follow(new HttpFollower('allowed.test', body), Buffer.from(rest), step);
    expect(after(3, `abc${get('allowed.test')}`)).toBe('go');
    expect(after(3, `abc${get('other.test')}`, 1)).toBe(
      'refuse: a later request or ClientHello names another site',
    );
    expect(after('chunked', `3\r\nabc\r\n0\r\n\r\n${get('allowed.test')}`)).toBe('go');
    expect(after('chunked', `3\r\nabc\r\n0\r\n\r\n${get('other.test')}`)).toMatch(/names another site/);
    // No body: the next bytes are the next head.
    expect(follow(new HttpFollower('allowed.test', 0), Buffer.from(get('other.test')))).toMatch(
      /names another site/,
    );
  });
});

describe('peekHttp', () => {
  const req = (head: string): Buffer => Buffer.from(`${head}\r\n\r\n`);
  test('the one Host of a request, with its port and case dropped', () => {
    expect(peekHttp(req('GET / HTTP/1.1\r\nHost: Allowed.Test:80\r\nAccept: */*'))).toEqual({
      state: 'name',
      name: 'allowed.test',
      size: 54,
      body: 0,
    });
    expect(peekHttp(req('GET http://allowed.test/x HTTP/1.1\r\nhost: allowed.test')).state).toBe('name');
  });

  test('more bytes wanted until the head ends; a head past the limit is refused', () => {
    expect(peekHttp(Buffer.from('GET / HTTP/1.1\r\nHost: allowed.test\r\n')).state).toBe('more');
    const long = Buffer.from(`GET / HTTP/1.1\r\nX: ${'a'.repeat(MAX_PEEK_BYTES)}`);
    expect(peekHttp(long).state).toBe('refuse');
  });

  test.each([
    ['two Host headers', 'GET / HTTP/1.1\r\nHost: allowed.test\r\nHost: other.test'],
    ['no Host', 'GET / HTTP/1.0\r\nAccept: */*'],
    ['an absolute target naming another host', 'GET http://other.test/ HTTP/1.1\r\nHost: allowed.test'],
    ['CONNECT to another host', 'CONNECT other.test:443 HTTP/1.1\r\nHost: allowed.test'],
    ['a folded header', 'GET / HTTP/1.1\r\nHost: allowed.test\r\n other.test'],
    ['a Host with user info', 'GET / HTTP/1.1\r\nHost: x@other.test'],
    ['an HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM'],
    ['TLS on the HTTP port', '\u0016\u0003\u0001 / HTTP/1.1\r\nHost: allowed.test'],
    // A server that ends lines at a bare LF would read a second Host in these.
    ['a second Host after a bare LF', 'GET / HTTP/1.1\r\nHost: allowed.test\nHost: other.test'],
    ['a bare LF in the request line', 'GET / HTTP/1.1\nHost:other.test\r\nHost: allowed.test'],
    ['a space before the colon', 'GET / HTTP/1.1\r\nHost : other.test\r\nHost: allowed.test'],
    [
      'an absolute target with user info',
      'GET http://allowed.test@other.test/ HTTP/1.1\r\nHost: allowed.test',
    ],
  ])('refused: %s', (_what, head) => {
    expect(peekHttp(req(head)).state).toBe('refuse');
  });
});

test('plainName: lower case, no trailing dot, labels of letters, digits, - and _ only', () => {
  expect(plainName('WWW.Allowed.Test.')).toBe('www.allowed.test');
  for (const bad of ['', 'a..b', 'a b', 'a/b', '[::1]', 'x'.repeat(64) + '.test'])
    expect(plainName(bad)).toBeUndefined();
});

describe('AnsweredNames', () => {
  test('an address answered for a name, for max(TTL - age, min-ttl), canonical IPv6', () => {
    let now = 1_000_000;
    const a = new AnsweredNames(60, () => now);
    a.record(
      'allowed.test',
      [{ address: '203.0.113.61', ttl: 300 }],
      [{ address: '2001:DB8:2:0::61', ttl: 10 }],
      0,
    );
    expect(a.answered('allowed.test', '203.0.113.61')).toBe(true);
    expect(a.answered('allowed.test', '2001:db8:2::61')).toBe(true);
    expect(a.answered('other.test', '203.0.113.61')).toBe(false);
    now += 61_000;
    expect(a.answered('allowed.test', '2001:db8:2::61')).toBe(false);
    expect(a.answered('allowed.test', '203.0.113.61')).toBe(true);
    // A cached answer 250 s old: its address has 50 s left, less than min-ttl.
    a.record('short.test', [{ address: '203.0.113.9', ttl: 300 }], [], 250);
    now += 59_000;
    expect(a.answered('short.test', '203.0.113.9')).toBe(true);
    now += 2_000;
    expect(a.answered('short.test', '203.0.113.9')).toBe(false);
  });

  test('bounded: names past MAX_NAMES push out the least recently answered, addresses per name capped', () => {
    const a = new AnsweredNames(60);
    a.record('first.test', [{ address: '203.0.113.1', ttl: 60 }], []);
    for (let i = 0; i < MAX_NAMES; i++) a.record(`n${i}.test`, [{ address: '203.0.113.2', ttl: 60 }], []);
    expect(a.answered('first.test', '203.0.113.1')).toBe(false);
    expect(a.answered(`n${MAX_NAMES - 1}.test`, '203.0.113.2')).toBe(true);
    const many = Array.from({ length: MAX_ADDRESSES_PER_NAME + 5 }, (_, i) => ({
      address: `198.51.100.${i}`,
      ttl: 60,
    }));
    a.record('many.test', many, []);
    expect(a.answered('many.test', '198.51.100.0')).toBe(true);
    expect(a.answered('many.test', `198.51.100.${MAX_ADDRESSES_PER_NAME + 4}`)).toBe(false);
  });
});
