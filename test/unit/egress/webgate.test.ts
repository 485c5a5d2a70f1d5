import { afterEach, describe, expect, test } from '@jest/globals';
import net from 'node:net';
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
    c.on('data', (d) => got.push(d));
    c.on('end', () => c.end(Buffer.concat([Buffer.from('echo:'), ...got])));
  });
  return { port: await listen(s), got };
}

/** A gate on loopback whose "original destination" is always `origin`, reaching `up` in its place. */
async function gate(origin: string | undefined, upPort: number, over: Partial<WebGateOptions> = {}) {
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
  g.serve(server, 80);
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
    const body = `${GET('allowed.test')}rest of the body`;
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
