import { afterEach, describe, expect, test } from '@jest/globals';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { tempDir } from '../../harness/tmp.js';
import { selfSignedCert } from '../../harness/tls.js';
import { AnsweredNames } from '../../../src/fence/answered.js';
import { DomainMatcher, parseDomains } from '../../../src/fence/policy.js';
import {
  LOGGED_REFUSALS,
  MAX_ORIGIN_LOOKUPS,
  nftOrigin,
  RefusalRecorder,
  WebGate,
  type GateRefusal,
  type WebGateOptions,
} from '../../../src/fence/webgate.js';

const closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

function listen(server: net.Server): Promise<number> {
  closers.push(() => server.close());
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)),
  );
}

/** An upstream that echoes what it got, prefixed, once the client ends its side. */
async function upstream(): Promise<{ port: number; got: Buffer[] }> {
  const got: Buffer[] = [];
  const s = net.createServer({ allowHalfOpen: true }, (c) => {
    // The gate resets both sides of a connection it refuses once joined.
    c.on('error', () => undefined);
    c.on('data', (d) => got.push(d));
    c.on('end', () => c.end(Buffer.concat([Buffer.from('echo:'), ...got])));
  });
  return { port: await listen(s), got };
}

/** A gate on loopback whose "original destination" is always `origin`, reaching `up` in its place. */
async function gate(
  origin: string | undefined,
  upPort: number,
  over: Partial<WebGateOptions> = {},
  gatePort: 80 | 443 = 80,
) {
  const refused: { why: GateRefusal; address?: string; port: number }[] = [];
  const answered = new AnsweredNames(60);
  answered.record('allowed.test', [{ address: '203.0.113.61', ttl: 300 }], []);
  answered.record('www.a.test', [{ address: '203.0.113.10', ttl: 300 }], []);
  const g = new WebGate({
    matcher: new DomainMatcher(parseDomains('allowed.test\nwww.a.test')),
    answered,
    origin: () => Promise.resolve(origin),
    refused: (why, address, port) => refused.push({ why, address, port }),
    connect: () => net.connect({ port: upPort, host: '127.0.0.1', allowHalfOpen: true }),
    ...over,
  });
  const server = net.createServer({ allowHalfOpen: true });
  g.serve(server, gatePort);
  return { port: await listen(server), refused, g };
}

/** Sends `bytes`, ends, and reads to the end: the reply, or `reset`/`closed` with what came before. */
function exchange(port: number, bytes: Buffer | string, end = true): Promise<string> {
  return new Promise((resolve) => {
    const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const parts: Buffer[] = [];
    c.on('data', (d) => parts.push(d));
    c.on('error', (e) => resolve(`reset ${(e as NodeJS.ErrnoException).code}`));
    c.on('end', () => resolve(Buffer.concat(parts).toString()));
    c.write(bytes);
    if (end) c.end();
  });
}

const GET = (host: string): string => `GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`;

describe('WebGate', () => {
  test('a name on the list, to an address answered for it: the bytes go on unchanged and the reply comes back', async () => {
    const up = await upstream();
    const { port, refused, g } = await gate('203.0.113.61', up.port);
    const body = `POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 16\r\n\r\nrest of the body`;
    expect(await exchange(port, body)).toBe(`echo:${body}`);
    expect(refused).toEqual([]);
    expect(g.stats.passed).toBe(1);
  });

  test.each([
    ['name off the list', 'other.test', '203.0.113.61'],
    ['address not answered for the name', 'www.a.test', '203.0.113.61'],
    ['address not answered for the name', 'allowed.test', '203.0.113.10'],
  ])('refused (%s): %s to %s, recorded by address and port only', async (why, host, origin) => {
    const up = await upstream();
    const { port, refused } = await gate(origin, up.port);
    expect(await exchange(port, GET(host))).toMatch(/^reset/);
    expect(refused).toEqual([{ why, address: origin, port: 80 }]);
    expect(JSON.stringify(refused)).not.toContain(host);
    expect(up.got).toEqual([]);
  });

  test('no original destination in the kernel map: reset', async () => {
    const up = await upstream();
    const { port, refused } = await gate(undefined, up.port);
    expect(await exchange(port, GET('allowed.test'))).toMatch(/^reset/);
    expect(refused).toEqual([{ why: 'no original destination', address: undefined, port: 80 }]);
  });

  test('bounded: a start that never names a site is reset after decideMs, one past MAX_PEEK_BYTES at once', async () => {
    const up = await upstream();
    const { port, refused } = await gate('203.0.113.61', up.port, { decideMs: 300 });
    const t = Date.now();
    expect(await exchange(port, 'GET / HTTP/1.1\r\nHost: allowed.test\r\n', false)).toMatch(/^reset/);
    expect(Date.now() - t).toBeGreaterThanOrEqual(250);
    expect(await exchange(port, `GET / HTTP/1.1\r\nX: ${'a'.repeat(20000)}`, false)).toMatch(/^reset/);
    expect(refused.map((r) => r.why)).toEqual(['no name in time', 'unreadable start']);
  });

  test('bounded: past maxConnections a new connection is reset, and a slot frees when one closes', async () => {
    const up = await upstream();
    const { port, g } = await gate('203.0.113.61', up.port, { maxConnections: 1, decideMs: 2000 });
    const held = net.connect({ port, host: '127.0.0.1' });
    held.on('error', () => undefined);
    await new Promise((r) => held.once('connect', r));
    await new Promise((r) => setTimeout(r, 50));
    expect(await exchange(port, GET('allowed.test'))).toMatch(/^reset/);
    expect(g.stats.overCap).toBe(1);
    held.destroy();
    await new Promise((r) => setTimeout(r, 50));
    expect(await exchange(port, GET('allowed.test'))).toBe(`echo:${GET('allowed.test')}`);
  });

  test('a destination that refuses: the agent is reset and it is recorded', async () => {
    const closed = net.createServer();
    const dead = await listen(closed);
    closed.close();
    const { port, refused } = await gate('203.0.113.61', dead);
    expect(await exchange(port, GET('allowed.test'))).toMatch(/^reset/);
    expect(refused).toEqual([{ why: 'destination unreachable', address: '203.0.113.61', port: 80 }]);
  });
});

/** An HTTP upstream answering each request with the Host it read and the body's length. */
async function httpUpstream(): Promise<{ port: number; hosts: string[] }> {
  const hosts: string[] = [];
  const s = http.createServer((req, res) => {
    hosts.push(req.headers.host ?? 'none');
    let n = 0;
    req.on('data', (d: Buffer) => (n += d.length));
    req.on('end', () => res.end(`host ${req.headers.host} body ${n}\n`));
  });
  return { port: await listen(s as unknown as net.Server), hosts };
}

/**
 * Writes `parts` one after another on one connection, each once the replies so far say
 * `wait[i]`; resolves with all that came back and how it ended.
 */
function session(port: number, parts: (string | Buffer)[], wait: string[] = []): Promise<string> {
  return new Promise((resolve) => {
    const c = net.connect({ port, host: '127.0.0.1' });
    let got = '';
    let next = 0;
    const go = (): void => {
      while (next < parts.length && (next === 0 || got.includes(wait[next - 1] ?? '')))
        c.write(parts[next++]);
    };
    c.on('data', (d) => {
      got += d.toString();
      go();
    });
    c.on('error', (e) => (got += ` reset ${(e as NodeJS.ErrnoException).code}`));
    c.setTimeout(3000, () => {
      got += ' timeout';
      c.destroy();
    });
    c.on('close', () => resolve(got));
    c.on('connect', go);
    // Closed by the test once every reply is in.
    setTimeout(() => c.end(), 1500);
  });
}

describe('WebGate, port 80: every request on a joined connection', () => {
  const get = (host: string, extra = ''): string => `GET / HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`;

  test('hostile: a second request on a kept-alive connection naming another site is reset, the first answered', async () => {
    const up = await httpUpstream();
    const { port, refused } = await gate('203.0.113.61', up.port);
    const got = await session(port, [get('allowed.test'), get('other.test')], ['host allowed.test']);
    expect(got).toContain('host allowed.test body 0');
    expect(got).not.toContain('other.test');
    expect(got).toMatch(/reset ECONNRESET$/);
    expect(up.hosts).toEqual(['allowed.test']);
    expect(refused).toEqual([
      { why: 'another name later on the connection', address: '203.0.113.61', port: 80 },
    ]);
  });

  test('hostile: pipelined in one write, after a body, or split byte by byte, the other site is never asked', async () => {
    const up = await httpUpstream();
    const { port, refused } = await gate('203.0.113.61', up.port);
    const post = 'POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 3\r\n\r\nabc';
    expect(await session(port, [get('allowed.test') + get('other.test')])).not.toContain('other.test');
    expect(await session(port, [post + get('other.test')])).not.toContain('other.test');
    const bytes = Buffer.from(get('allowed.test') + get('other.test'));
    const one = await session(
      port,
      [...bytes].map((b) => Buffer.from([b])),
      [],
    );
    expect(one).not.toContain('other.test');
    expect(up.hosts).not.toContain('other.test');
    expect(refused.map((r) => r.why)).toEqual(Array(3).fill('another name later on the connection'));
  });

  test('a connection reset after it joined counts once, as reset, not also as let through', async () => {
    const up = await httpUpstream();
    const { port, g } = await gate('203.0.113.61', up.port);
    // Refused at its first bytes (pipelined), refused at a later request, and one let through.
    await session(port, [get('allowed.test') + get('other.test')]);
    await session(port, [get('allowed.test'), get('other.test')], ['host allowed.test']);
    expect(await session(port, [get('allowed.test')])).toContain('host allowed.test body 0');
    expect(g.stats).toEqual({ passed: 1, refused: 2, overCap: 0 });
  });

  test('requests for the first name all go on: bodies by length and chunked are counted through, not read as requests', async () => {
    const up = await httpUpstream();
    const { port, refused } = await gate('203.0.113.61', up.port);
    // A body that looks like a request for another site is a body.
    const inner = get('other.test');
    const chunked = `POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n${inner.length.toString(16)}\r\n${inner}\r\n3\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n`;
    const parts = [
      get('Allowed.Test:80'),
      `POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: ${inner.length}\r\n\r\n${inner}`,
      `\r\n${chunked}`,
      `GET http://allowed.test/x HTTP/1.1\r\nHost: allowed.test\r\n\r\n`,
    ];
    const got = await session(port, parts, ['body 0', `body ${inner.length}`, `body ${inner.length + 3}`]);
    expect(got.match(/host \S+ body \d+/g)).toEqual([
      'host Allowed.Test:80 body 0',
      `host allowed.test body ${inner.length}`,
      `host allowed.test body ${inner.length + 3}`,
      'host allowed.test body 0',
    ]);
    expect(refused).toEqual([]);
    // The same, every byte its own write.
    const all = Buffer.from(parts.join(''));
    const slow = await session(
      port,
      [...all].map((b) => Buffer.from([b])),
    );
    expect(slow.match(/host \S+ body \d+/g)).toHaveLength(4);
    expect(refused).toEqual([]);
  });

  test.each([
    [
      'an Upgrade (no plain-HTTP WebSocket)',
      get('allowed.test', 'Connection: Upgrade\r\nUpgrade: websocket\r\n'),
    ],
    ['CONNECT', 'CONNECT other.test:443 HTTP/1.1\r\nHost: allowed.test\r\n\r\n'],
    [
      'both Content-Length and Transfer-Encoding',
      get('allowed.test', 'Content-Length: 4\r\nTransfer-Encoding: chunked\r\n'),
    ],
    ['two Content-Lengths', get('allowed.test', 'Content-Length: 0\r\nContent-Length: 40\r\n')],
    ['a Content-Length list', get('allowed.test', 'Content-Length: 0, 40\r\n')],
    ['a coding before chunked', get('allowed.test', 'Transfer-Encoding: gzip, chunked\r\n')],
    [
      'chunked in HTTP/1.0',
      'POST / HTTP/1.0\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    ],
    [
      'a chunk size with an extension',
      `${get('allowed.test', 'Transfer-Encoding: chunked\r\n')}3;x=${'1'.repeat(20)}\r\nabc\r\n0\r\n\r\n`,
    ],
    [
      'a chunk size that is not hex',
      `${get('allowed.test', 'Transfer-Encoding: chunked\r\n')}-3\r\nabc\r\n0\r\n\r\n`,
    ],
    [
      'a chunk not followed by CRLF',
      `${get('allowed.test', 'Transfer-Encoding: chunked\r\n')}3\r\nabcd\r\n0\r\n\r\n`,
    ],
    ['a second head over 16 KiB', get('allowed.test', `X: ${'a'.repeat(17000)}\r\n`)],
    [
      'an absolute target naming another host',
      'GET http://other.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n',
    ],
  ])('refused as a later request: %s', async (_what, second) => {
    const up = await httpUpstream();
    const { port, refused } = await gate('203.0.113.61', up.port);
    const got = await session(port, [get('allowed.test'), second], ['host allowed.test']);
    expect(got).toContain('host allowed.test body 0');
    expect(got).toMatch(/reset ECONNRESET$/);
    expect(up.hosts).toEqual(['allowed.test']);
    expect(refused).toHaveLength(1);
  });

  test('an Upgrade as the first request is refused before anything goes on', async () => {
    const up = await httpUpstream();
    const { port, refused } = await gate('203.0.113.61', up.port);
    const got = await session(port, [get('allowed.test', 'Connection: Upgrade\r\nUpgrade: h2c\r\n')]);
    expect(got).toMatch(/reset ECONNRESET$/);
    expect(up.hosts).toEqual([]);
    expect(refused.map((r) => r.why)).toEqual(['unreadable start']);
  });

  test('bounded: a large body goes on in the reads it came in, held by neither side of the gate', async () => {
    const up = await httpUpstream();
    const { port } = await gate('203.0.113.61', up.port);
    const size = 32 << 20;
    const got = await session(port, [
      `POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: ${size}\r\n\r\n`,
      Buffer.alloc(size, 0x61),
    ]);
    expect(got).toContain(`host allowed.test body ${size}`);
  });
});

/** A TLS record of `type` holding `body`. */
const record = (type: number, body: Buffer): Buffer =>
  Buffer.concat([Buffer.from([type, 3, 3, body.length >> 8, body.length & 0xff]), body]);
/** A ClientHello naming `name` (TLS 1.3's shape: a 32-byte session id, two suites), in one record. */
function clientHello(name: string): Buffer {
  const entry = Buffer.concat([Buffer.from([0, 0, name.length]), Buffer.from(name)]);
  const list = Buffer.concat([Buffer.from([0, entry.length]), entry]);
  const exts = Buffer.concat([Buffer.from([0, 0, 0, list.length]), list]);
  const body = Buffer.concat([
    Buffer.from([3, 3]),
    Buffer.alloc(32, 7),
    Buffer.from([32]),
    Buffer.alloc(32, 1),
    Buffer.from([0, 4, 0x13, 0x01, 0x13, 0x02, 1, 0, 0, exts.length]),
    exts,
  ]);
  return record(22, Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]));
}

describe('WebGate, port 443: every ClientHello before the encrypted records', () => {
  const ccs = record(20, Buffer.from([1]));
  const data = record(23, Buffer.alloc(64, 0x61));

  test('hostile: a second ClientHello (after a HelloRetryRequest) naming another site is reset, before it reaches the server', async () => {
    const up = await upstream();
    const { port, refused } = await gate('203.0.113.61', up.port, {}, 443);
    const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const ended = new Promise<string>((resolve) => {
      c.on('error', (e) => resolve(`reset ${(e as NodeJS.ErrnoException).code}`));
      c.on('end', () => resolve('end'));
    });
    c.write(clientHello('allowed.test'));
    // As a client does once the server's HelloRetryRequest came: CCS, then the second hello.
    await new Promise((r) => setTimeout(r, 100));
    c.write(Buffer.concat([ccs, clientHello('other.test')]));
    expect(await ended).toBe('reset ECONNRESET');
    expect(Buffer.concat(up.got).includes('other.test')).toBe(false);
    expect(refused).toEqual([
      { why: 'another name later on the connection', address: '203.0.113.61', port: 443 },
    ]);
  });

  test('a connection reset at a later ClientHello counts once, as reset', async () => {
    const up = await upstream();
    const { port, g } = await gate('203.0.113.61', up.port, {}, 443);
    expect(
      await exchange(port, Buffer.concat([clientHello('allowed.test'), ccs, clientHello('other.test')])),
    ).toMatch(/^reset/);
    expect(g.stats).toEqual({ passed: 0, refused: 1, overCap: 0 });
  });

  test('the same name twice, then encrypted records: everything goes on unchanged', async () => {
    const up = await upstream();
    const { port, refused } = await gate('203.0.113.61', up.port, {}, 443);
    const flight = Buffer.concat([clientHello('allowed.test'), ccs, clientHello('allowed.test'), data]);
    // After the first encrypted record nothing is read: even a record that would be refused.
    const after = record(22, clientHello('other.test'));
    const reply = await exchange(port, Buffer.concat([flight, after]));
    expect(Buffer.from(reply, 'latin1').length).toBe(5 + flight.length + after.length);
    expect(refused).toEqual([]);
  });
});

/** A TLS server on loopback for both names (one certificate), answering the server name it was asked for. */
async function tlsUpstream(over: tls.TlsOptions): Promise<{ port: number; names: string[] }> {
  const dir = tempDir('cordon-gate-tls-');
  const { key, cert } = selfSignedCert(dir, ['allowed.test', 'other.test']);
  const names: string[] = [];
  const s = tls.createServer({ key: readFileSync(key), cert: readFileSync(cert), ...over }, (c) => {
    names.push((c as tls.TLSSocket & { servername?: string }).servername ?? 'none');
    c.end(`tls ${(c as tls.TLSSocket & { servername?: string }).servername}`);
  });
  return { port: await listen(s as unknown as net.Server), names };
}

/** A real TLS client through the gate: the server's answer and the group its key exchange ended on. */
function tlsThrough(port: number, over: tls.ConnectionOptions = {}): Promise<string> {
  return new Promise((resolve) => {
    const c = tls.connect({
      port,
      host: '127.0.0.1',
      servername: 'allowed.test',
      rejectUnauthorized: false,
      ...over,
    });
    let got = '';
    c.on('data', (d) => (got += d));
    c.on('error', (e) => resolve(`error ${e.message}`));
    c.on('end', () =>
      resolve(
        `${got} ${c.getProtocol()} ${(c.getEphemeralKeyInfo() as { name?: string } | null)?.name ?? ''}`,
      ),
    );
  });
}

describe('WebGate, port 443, a real TLS client and server', () => {
  test('TLS 1.3 with a HelloRetryRequest (the server takes only P-384, the client offers an X25519 share first), and TLS 1.2, go through', async () => {
    const up = await tlsUpstream({ ecdhCurve: 'P-384' });
    const { port, refused } = await gate(
      '203.0.113.61',
      up.port,
      { connect: () => net.connect({ port: up.port, host: '127.0.0.1' }) },
      443,
    );
    // The client's first share is X25519: ending on P-384 means the server asked again.
    expect(await tlsThrough(port, { ecdhCurve: 'X25519:P-384' })).toBe('tls allowed.test TLSv1.3 secp384r1');
    // TLS 1.2: the client's encrypted Finished is a handshake record after its CCS (random
    // bytes each time; 20 handshakes).
    for (let i = 0; i < 20; i++)
      expect(await tlsThrough(port, { maxVersion: 'TLSv1.2', ecdhCurve: 'P-384:P-256' })).toBe(
        'tls allowed.test TLSv1.2 secp384r1',
      );
    expect(refused).toEqual([]);
    expect(up.names).toEqual(Array(21).fill('allowed.test'));
  });
});

describe('WebGate, port 443, a real TLS 1.3 HelloRetryRequest', () => {
  test("hostile: a real client's second ClientHello naming another site (its first rewritten to the agent's name) never reaches the server", async () => {
    const up = await tlsUpstream({ ecdhCurve: 'P-384' });
    // What the gate sends the server, every write.
    const sent: Buffer[] = [];
    const { port, refused } = await gate(
      '203.0.113.10',
      up.port,
      {
        connect: () => {
          const s = net.connect({ port: up.port, host: '127.0.0.1' });
          const write = s.write.bind(s) as (b: Buffer) => boolean;
          s.write = ((b: Buffer) => (sent.push(Buffer.from(b)), write(b))) as typeof s.write;
          return s;
        },
      },
      443,
    );
    // Between the client and the gate: the first ClientHello's other.test becomes www.a.test
    // (same length), the rest goes on as it is; the server's HelloRetryRequest then makes
    // the client send a second ClientHello, naming other.test.
    const relay = net.createServer((c) => {
      const g = net.connect({ port, host: '127.0.0.1' });
      let first = true;
      c.on('data', (d: Buffer) => {
        if (first) {
          const at = d.indexOf('other.test');
          if (at >= 0) d.write('www.a.test', at, 'latin1');
          first = false;
        }
        g.write(d);
      });
      g.pipe(c);
      g.on('error', () => c.destroy());
      c.on('error', () => g.destroy());
      g.on('close', () => c.destroy());
    });
    const relayPort = await listen(relay);
    const got = await tlsThrough(relayPort, { servername: 'other.test', ecdhCurve: 'X25519:P-384' });
    expect(got).not.toMatch(/^tls/);
    const upstreamGot = Buffer.concat(sent);
    // The first ClientHello went on; the second did not.
    expect(upstreamGot.includes('www.a.test')).toBe(true);
    expect(upstreamGot.includes('other.test')).toBe(false);
    expect(refused).toEqual([
      { why: 'another name later on the connection', address: '203.0.113.10', port: 443 },
    ]);
  });
});

describe('nftOrigin', () => {
  /** A stand-in for the nft shell: answers `get element` from `maps`, records every line. */
  const shell = (maps: Record<string, Record<number, string>>) => {
    const lines: string[] = [];
    return {
      lines,
      run: (line: string): Promise<string> => {
        lines.push(line);
        if (line.startsWith('delete')) return Promise.resolve('');
        const out: string[] = [];
        for (const m of line.matchAll(/get element inet cordon (\w+) \{ (\d+) \}/g)) {
          const value = maps[m[1]]?.[Number(m[2])];
          if (!value)
            return Promise.reject(new Error('Error: Could not process rule: No such file or directory'));
          out.push(
            `table inet cordon {\n\tmap ${m[1]} {\n\t\ttype inet_service : ipv6_addr\n\t\tsize 65535\n\t\tflags dynamic,timeout\n\t\ttimeout 30s\n\t\telements = { ${m[2]} expires 29s964ms : ${value} }\n\t}\n}`,
          );
        }
        return Promise.resolve(out.join('\n'));
      },
    };
  };

  test('the original address for the source port, when the map saw the same source, in one nft request', async () => {
    const s = shell({ weborig6: { 40001: '2001:db8:2::61' }, websrc6: { 40001: '2001:db8:1::2' } });
    expect(await nftOrigin(s)(6, '2001:db8:1:0::2', 40001)).toBe('2001:db8:2::61');
    expect(s.lines).toEqual([
      'get element inet cordon weborig6 { 40001 }; get element inet cordon websrc6 { 40001 }',
    ]);
  });

  test('undefined: no element, another source on that port, a family mismatch, a source that is not an address', async () => {
    const s = shell({ weborig4: { 40001: '203.0.113.61' }, websrc4: { 40001: '198.51.100.3' } });
    expect(await nftOrigin(s)(4, '198.51.100.2', 40001)).toBeUndefined();
    expect(await nftOrigin(s)(4, '198.51.100.3', 40002)).toBeUndefined();
    expect(await nftOrigin(s)(6, '198.51.100.3', 40001)).toBeUndefined();
    expect(await nftOrigin(s)(4, '1.2.3.4 } ; flush ruleset', 40001)).toBeUndefined();
    expect(await nftOrigin(s)(4, '198.51.100.3', 40001)).toBe('203.0.113.61');
  });
  test('hostile: a flood of connections keeps at most MAX_ORIGIN_LOOKUPS lookups with the shared nft shell, and each still gets its answer', async () => {
    // The gate shares its nft shell with the tamper watch and the report: an agent that
    // opens hundreds of connections at once must not queue hundreds of lookups ahead of them.
    const waiting: (() => void)[] = [];
    let inShell = 0;
    let most = 0;
    const s = {
      run: (line: string): Promise<string> => {
        const port = /\{ (\d+) \}/.exec(line)![1];
        inShell++;
        most = Math.max(most, inShell);
        return new Promise<string>((resolve) =>
          waiting.push(() => {
            inShell--;
            resolve(
              `map weborig4 {\n elements = { ${port} : 203.0.113.61 }\n}\nmap websrc4 {\n elements = { ${port} : 198.51.100.3 }\n}`,
            );
          }),
        );
      },
    };
    const origin = nftOrigin(s);
    let settled = false;
    const all = Promise.all(Array.from({ length: 200 }, (_, i) => origin(4, '198.51.100.3', 40000 + i)));
    void all.then(() => (settled = true));
    for (let round = 0; round < 1000 && !settled; round++) {
      await new Promise((r) => setImmediate(r));
      for (const w of waiting.splice(0)) w();
    }
    expect(await all).toEqual(Array.from({ length: 200 }, () => '203.0.113.61'));
    expect(most).toBe(MAX_ORIGIN_LOOKUPS);
  });
});

describe('RefusalRecorder', () => {
  test('hostile: a full blocked set (the agent filled it with refused destinations) is not tampering', async () => {
    const logged: string[] = [];
    let failed = 0;
    const r = new RefusalRecorder(
      {
        // What nft 1.0 says when a set is at its size (seen on this machine).
        run: () =>
          Promise.reject(
            new Error(
              'Error: Could not process rule: Too many open files in system\nadd element inet cordon agentblocked4 { 203.0.113.61 . tcp . 443 }',
            ),
          ),
      },
      (l) => logged.push(l),
      () => failed++,
    );
    r.note('name off the list', '203.0.113.61', 443);
    r.note('name off the list', '203.0.113.62', 443);
    await new Promise((res) => setImmediate(res));
    expect(failed).toBe(0);
    expect(logged.filter((l) => l.includes('blocked set is full'))).toHaveLength(1);
  });

  test('any other failure to record a block is reported', async () => {
    let failed = 0;
    const r = new RefusalRecorder(
      { run: () => Promise.reject(new Error('Error: Could not process rule: No such file or directory')) },
      () => undefined,
      () => failed++,
    );
    r.note('name off the list', '203.0.113.61', 443);
    await new Promise((res) => setImmediate(res));
    expect(failed).toBe(1);
  });

  test("a destination goes to the agent's blocked set once a second at most; the log names LOGGED_REFUSALS, then says it stops", () => {
    const lines: string[] = [];
    const logged: string[] = [];
    let now = 0;
    const r = new RefusalRecorder(
      { run: (l) => (lines.push(l), Promise.resolve('')) },
      (l) => logged.push(l),
      () => undefined,
      () => now,
    );
    r.note('name off the list', '203.0.113.61', 443);
    r.note('name off the list', '203.0.113.61', 443);
    r.note('address not answered for the name', '2001:db8:2::61', 80);
    r.note('no original destination', undefined, 80);
    expect(lines).toEqual([
      'add element inet cordon agentblocked4 { 203.0.113.61 . tcp . 443 }',
      'add element inet cordon agentblocked6 { 2001:db8:2::61 . tcp . 80 }',
    ]);
    now += 1000;
    r.note('name off the list', '203.0.113.61', 443);
    expect(lines).toHaveLength(3);
    for (let i = 0; i < LOGGED_REFUSALS * 2; i++) r.note('name off the list', '203.0.113.61', 443);
    expect(logged).toHaveLength(LOGGED_REFUSALS + 1);
    expect(logged[0]).toBe('web gate: reset an agent connection to 203.0.113.61 port 443: name off the list');
    expect(logged.at(-1)).toBe('web gate: further resets are counted, not logged');
  });
});

test('bounded: while the origin is on its way, the gate holds at most one read past MAX_PEEK_BYTES', async () => {
  const up = await upstream();
  let release: (a: string) => void = () => undefined;
  const { port, g, refused } = await gate(undefined, up.port, {
    origin: () => new Promise<string>((r) => (release = r)),
  });
  const c = net.connect({ port, host: '127.0.0.1' });
  c.on('error', () => undefined);
  // 32 MiB of a request head that never ends, more than the kernel's buffers hold: what
  // the gate does not read stays with the client.
  const flood = Buffer.alloc(32 << 20, 0x61);
  c.write('GET / HTTP/1.1\r\nX: ');
  c.write(flood);
  await new Promise((r) => setTimeout(r, 200));
  expect(g.connections).toBe(1);
  expect(c.writableLength).toBeGreaterThan(0);
  release('203.0.113.61');
  await new Promise((r) => c.once('close', r));
  expect(refused.map((r) => r.why)).toEqual(['unreadable start']);
});
