/**
 * A flood of refused names from one socket: the proxy keeps no state per refused query
 * (one who-asked lookup for the socket, not one per name), stops answering the socket
 * past its per-second budget, and an allowed name asked meanwhile from another socket is
 * still answered; the report and the summary record the flood with its source.
 */
import { afterEach, describe, expect, test } from '@jest/globals';
import dgram from 'node:dgram';
import { toEvent } from '../../../src/actions/egress/report.js';
import { DomainMatcher, parseDomains } from '../../../src/fence/policy.js';
import { DnsProxy } from '../../../src/fence/proxy.js';
import { NAMES_PER_SOURCE, REFUSALS_PER_SOURCE_PER_SECOND } from '../../../src/fence/refusals.js';
import { blockedSection } from '../../../src/summary/blocked.js';
import { query } from '../../harness/dns.js';
import { daemonReport, egressReportLine } from '../../harness/sample-events.js';

const open: { close(): void }[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
});

/** A bound socket, closed after the test unless `owner` closes it (the proxy its server's). */
async function udp(owner?: 'proxy'): Promise<dgram.Socket> {
  const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
  if (!owner) open.push(s);
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  return s;
}

/** An upstream answering every query with one A record (192.0.2.1, TTL 300). */
async function upstream(): Promise<dgram.Socket> {
  const s = await udp();
  s.on('message', (m, r) => {
    const a = Buffer.concat([m, Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1])]);
    a.writeUInt16BE(0x8180, 2);
    a.writeUInt16BE(1, 6);
    s.send(a, r.port, r.address);
  });
  return s;
}

describe('a flood of refused names', () => {
  test('from one socket does not stop an allowed name from being answered, and is counted per source', async () => {
    const up = await upstream();
    const asked: string[] = [];
    const proxy = new DnsProxy({
      matcher: new DomainMatcher(parseDomains('*.a.test')),
      policy: 'block',
      upstream: { address: '127.0.0.1', port: up.address().port },
      sink: { ensure: () => undefined },
      onRefused: (key) => asked.push(key),
    });
    open.push(proxy);
    const server = await udp('proxy');
    proxy.serveUdp(server);
    await proxy.connectUpstream();
    const to = server.address().port;
    const flooder = await udp();
    let refusalsBack = 0;
    flooder.on('message', () => refusalsBack++);
    const client = await udp();
    const answered = new Set<number>();
    client.on('message', (m) => {
      if ((m.readUInt16BE(2) & 0xf) === 0 && m.readUInt16BE(6) === 1) answered.add(m.readUInt16BE(0));
    });
    // 20000 distinct refused names sent as fast as the socket takes them, with an allowed
    // lookup from another socket after every 2000.
    const FLOOD = 20000;
    for (let i = 0; i < FLOOD; i++) {
      flooder.send(query(`n${i}.flood.test`, i & 0xffff), to, '127.0.0.1');
      if (i % 2000 === 1999) client.send(query('www.a.test', i / 2000), to, '127.0.0.1');
      if (i % 500 === 499) await new Promise((r) => setImmediate(r));
    }
    // A resolver asks again when a query goes unanswered; so does this client, a few times
    // (a query lost in a full buffer is the kernel's, not the proxy's choice).
    for (let round = 0; round < 50 && answered.size < 10; round++) {
      await new Promise((r) => setTimeout(r, 200));
      if (round % 5 === 4)
        for (let k = 0; k < 10; k++)
          if (!answered.has(k)) client.send(query('www.a.test', k), to, '127.0.0.1');
    }
    expect([...answered].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    await new Promise((r) => setImmediate(r));

    const key = `udp 127.0.0.1 ${flooder.address().port}`;
    const src = proxy.refusals.sources.get(key);
    expect(src).toBeDefined();
    // What reached the proxy was counted against the one socket, and every refusal past
    // its budget in a second went unanswered.
    expect(src!.refused).toBe(proxy.refusals.total);
    expect(src!.refused).toBeGreaterThan(REFUSALS_PER_SOURCE_PER_SECOND);
    expect(src!.unanswered).toBeGreaterThan(0);
    expect(src!.refused - src!.unanswered).toBeLessThanOrEqual(REFUSALS_PER_SOURCE_PER_SECOND * 10);
    expect(refusalsBack).toBeLessThanOrEqual(src!.refused - src!.unanswered);
    // One who-asked lookup for the socket, not one per name.
    expect(asked).toEqual([key]);
    // The refused names remember the socket; it added no more than its share of the table,
    // so a name refused afterwards from another socket is still itemised.
    expect(proxy.stats.names.get('www.a.test')?.queries).toBeGreaterThanOrEqual(10);
    expect(proxy.stats.names.get('n0.flood.test')?.source).toBe(key);
    expect([...proxy.stats.names.values()].filter((n) => n.source === key).length).toBe(NAMES_PER_SOURCE);
    const late = new Promise((r) => client.once('message', r));
    client.send(query('late.evil.test', 99), to, '127.0.0.1');
    await late;
    expect(proxy.stats.names.get('late.evil.test')?.source).toBe(`udp 127.0.0.1 ${client.address().port}`);
  });

  test('the report records the flood with its source and the summary flags it', () => {
    const r = daemonReport({
      names: [
        { name: 'n0.flood.test', queries: 1, allowed: false, addresses: [], process: 'python3 (pid 77)' },
      ],
      namesDropped: 4999,
      refusals: {
        total: 640000,
        peakPerSecond: 81000,
        unanswered: 600000,
        kernelDropped: 250000,
        sources: [
          {
            proto: 'udp',
            address: '127.0.0.1',
            port: 40001,
            refused: 639000,
            peakPerSecond: 80000,
            process: 'python3 (pid 77)',
            identity: 'agent',
          },
          {
            proto: 'udp',
            address: '127.0.0.1',
            port: 40002,
            refused: 3,
            peakPerSecond: 1,
            identity: 'runner',
          },
        ],
      },
    });
    const event = toEvent(r);
    expect(event.refusals).toMatchObject({
      total: 640000,
      peakPerSecond: 81000,
      flood: true,
      topSources: [
        { protocol: 'udp', port: 40001, queries: 639000, process: 'python3 (pid 77)', identity: 'agent' },
        { protocol: 'udp', port: 40002, queries: 3 },
      ],
    });
    const text = JSON.stringify(blockedSection([egressReportLine(event)]));
    expect(text).toContain('A flood of refused DNS names');
    expect(text).toContain('python3 (pid 77)');
    expect(text).toContain('udp 127.0.0.1 port 40002');

    // A few refusals a second are no flood.
    const calm = toEvent({ ...r, refusals: { ...r.refusals!, peakPerSecond: 5, kernelDropped: 0 } });
    expect(calm.refusals?.flood).toBe(false);
    const quiet = JSON.stringify(blockedSection([egressReportLine(calm)]));
    expect(quiet).not.toContain('A flood');
  });
});
