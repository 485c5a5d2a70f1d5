/**
 * The warm-up (src/fence/warmup.ts): the daemon's last setup step sends a throwaway proxy,
 * built by the daemon's own builder, thousands of queries on loopback. It must run every
 * part of the answer path (cached, forwarded with a set update, AAAA, refused), write
 * nothing anywhere real, close what it opened, and stop at its time budget when the
 * upstream never answers.
 */
import { expect, test } from '@jest/globals';
import dgram from 'node:dgram';
import { readAnswer, readQuery } from '../../../src/fence/dnswire.js';
import { AnsweredNames } from '../../../src/fence/answered.js';
import { AllowSets, type SetShell } from '../../../src/fence/nftshell.js';
import { DomainMatcher } from '../../../src/fence/policy.js';
import { DnsProxy } from '../../../src/fence/proxy.js';
import { NO_SETS, WARM_DOMAINS, warmAnswer, warmQuery, warmUp } from '../../../src/fence/warmup.js';

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
  const a = readAnswer(warmAnswer(warmQuery(7, 'x.warm.cordon.invalid', 1), 3), {
    name: 'x.warm.cordon.invalid',
    end: 12 + 23 + 4,
  });
  expect(a?.v4.map((v) => [v.address, v.ttl])).toEqual([['192.0.2.4', 300]]);
  const q6 = warmQuery(8, 'y.warm.cordon.invalid', 28);
  expect(readQuery(q6)).toMatchObject({ ok: true, q: { id: 8, qtype: 28 } });
  const a6 = readAnswer(warmAnswer(q6, 0x1234), { name: 'y.warm.cordon.invalid', end: q6.length });
  expect(a6?.v6.map((v) => v.address)).toEqual(['2001:db8::1234']);
});

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
