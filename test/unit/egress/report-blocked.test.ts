/**
 * The report's blocked destinations (control.ts): listed up to LISTED_BLOCKED, one per
 * address first, the rest counted; packets refused to destinations a full set could not
 * record, from the refuse chains' counters; and how the summary shows both.
 */
import { describe, expect, test } from '@jest/globals';
import {
  LISTED_BLOCKED,
  buildReport,
  listedBlocked,
  type ReportSources,
} from '../../../src/rootd/control.js';
import { BLOCKED_SET_SIZE, REFUSED_COUNTERS, renderRuleset } from '../../../src/fence/firewall.js';
import { ProxyStats } from '../../../src/fence/proxy-stats.js';
import { Refusals } from '../../../src/fence/refusals.js';
import { TamperLog } from '../../../src/rootd/tamper.js';
import { parseCidrs } from '../../../src/fence/policy.js';
import { toEvent } from '../../../src/actions/egress/report.js';
import { findings } from '../../../src/summary/findings.js';
import { blockedSection } from '../../../src/summary/blocked.js';
import type { DaemonReport } from '../../../src/rootd/protocol.js';
import type { LedgerEvent } from '../../../src/ledger/ledger.js';

type Blocked = DaemonReport['blocked'][number];
const dest = (
  address: string,
  port: number,
  packets: number,
  identity: 'agent' | 'runner' = 'agent',
): Blocked => ({
  address,
  protocol: 'tcp',
  port,
  packets,
  identity,
});

/** `list set` text as nft prints it for the given elements. */
function setListing(name: string, entries: { address: string; port: number; packets: number }[]): string {
  const els = entries
    .map(
      (e) =>
        `${e.address} . tcp . ${e.port} counter packets ${e.packets} bytes ${e.packets * 60} expires 23h59m`,
    )
    .join(',\n\t\t\t     ');
  return `table inet cordon {\n\tset ${name} {\n\t\ttype ipv4_addr . inet_proto . inet_service\n\t\tsize ${BLOCKED_SET_SIZE}\n\t\tflags dynamic,timeout\n\t\tcounter\n\t\ttimeout 1d\n${entries.length ? `\t\telements = { ${els} }\n` : ''}\t}\n}\n`;
}

function sources(listings: Record<string, string>, tamper = new TamperLog(() => undefined)): ReportSources {
  const proxy = () =>
    ({ stats: new ProxyStats(), refusals: new Refusals(undefined) }) as unknown as ReportSources['proxy'];
  return {
    policy: 'block',
    proxy: proxy(),
    agentProxy: proxy(),
    sets: { updates: 0 } as unknown as ReportSources['sets'],
    agentSets: { updates: 0 } as unknown as ReportSources['agentSets'],
    shell: {
      run: (cmd: string) => {
        const key = Object.keys(listings).find((k) => cmd.endsWith(` ${k}`));
        return key === undefined
          ? Promise.reject(new Error(`no such object: ${cmd}`))
          : Promise.resolve(listings[key]);
      },
    } as unknown as ReportSources['shell'],
    tamper,
    helper: { askers: new Map<string, string>(), runCgroups: [] } as unknown as ReportSources['helper'],
  };
}

const counter = (name: string, packets: number): string =>
  `table inet cordon {\n\tcounter ${name} {\n\t\tpackets ${packets} bytes ${packets * 60}\n\t}\n}\n`;

describe('the blocked destinations a report lists', () => {
  test('each address first (its destination with the most packets), then the rest by packets, at most LISTED_BLOCKED', () => {
    // A scan of one host's ports, 3 packets each, and one lone attempt elsewhere with 1.
    const scan = Array.from({ length: 2000 }, (_, i) => dest('198.51.100.7', i + 1, 3));
    const lone = dest('203.0.113.9', 443, 1);
    const { blocked, leftOut } = listedBlocked([...scan, lone]);
    expect(blocked).toHaveLength(LISTED_BLOCKED);
    expect(blocked[0]).toEqual(dest('198.51.100.7', 1, 3));
    expect(blocked[1]).toEqual(lone);
    expect(leftOut).toEqual({ destinations: 2001 - LISTED_BLOCKED, packets: (2001 - LISTED_BLOCKED) * 3 });
  });

  test('the same address for the agent and for the runner is listed for each', () => {
    const { blocked } = listedBlocked([
      ...Array.from({ length: 600 }, (_, i) => dest('198.51.100.7', i + 1, 5, 'agent')),
      dest('198.51.100.7', 80, 1, 'runner'),
    ]);
    expect(blocked.slice(0, 2).map((b) => b.identity)).toEqual(['agent', 'runner']);
  });

  test('under the cap nothing is left out, and the order is by packets', () => {
    const { blocked, leftOut } = listedBlocked([dest('192.0.2.1', 1, 1), dest('192.0.2.2', 1, 9)]);
    expect(blocked.map((b) => b.packets)).toEqual([9, 1]);
    expect(leftOut).toEqual({ destinations: 0, packets: 0 });
  });
});

describe('buildReport: a full set of blocked destinations', () => {
  test('lists LISTED_BLOCKED, counts the rest, and takes the chain counter less what was recorded as unrecorded', async () => {
    const agent4 = Array.from({ length: BLOCKED_SET_SIZE }, (_, i) => ({
      address: `192.0.2.${1 + Math.floor(i / 4096)}`,
      port: 1 + (i % 4096),
      packets: 1,
    }));
    const runner4 = [{ address: '203.0.113.5', port: 25, packets: 4 }];
    const r = await buildReport(
      sources({
        blocked4: setListing('blocked4', runner4),
        blocked6: setListing('blocked6', []),
        agentblocked4: setListing('agentblocked4', agent4),
        agentblocked6: setListing('agentblocked6', []),
        [REFUSED_COUNTERS.runner]: counter(REFUSED_COUNTERS.runner, 4),
        // 700 packets past the full set: refused, counted, not recorded.
        [REFUSED_COUNTERS.agent]: counter(REFUSED_COUNTERS.agent, BLOCKED_SET_SIZE + 700),
        dnsflood: counter('dnsflood', 0),
        dnsuiddrops: 'table inet cordon {\n}\n',
      }),
    );
    expect(r.blocked).toHaveLength(LISTED_BLOCKED);
    expect(r.blocked[0]).toMatchObject({ address: '203.0.113.5', port: 25, packets: 4, identity: 'runner' });
    expect(r.blockedLeftOut).toEqual({
      destinations: BLOCKED_SET_SIZE + 1 - LISTED_BLOCKED,
      packets: BLOCKED_SET_SIZE + 1 - LISTED_BLOCKED,
    });
    expect(r.blockedUnrecorded).toBe(700);
    expect(r.tamper).toEqual([]);
    // The ledger event and the summary say so.
    const event = toEvent(r);
    expect(event.blockedDestinations).toHaveLength(LISTED_BLOCKED);
    expect(event.blockedDestinationsLeftOut).toEqual(r.blockedLeftOut);
    expect(event.blockedUnrecordedPackets).toBe(700);
    const events = [{ seq: 1, type: 'egress.report', data: event } as unknown as LedgerEvent];
    const text = JSON.stringify(blockedSection(events));
    expect(text).toContain(`${BLOCKED_SET_SIZE + 1 - LISTED_BLOCKED} more blocked destination(s)`);
    expect(text).toContain('700 packet(s) went to destinations the full record could not hold');
    const f = findings(events, { status: 'intact', details: [] });
    expect(f.map((x) => x.short)).toContain('the record of blocked destinations was full');
    expect(f.map((x) => x.short)).toContain(`${BLOCKED_SET_SIZE + 1} destinations blocked`);
  });

  test('nothing left out and nothing unrecorded: neither field, and no such finding', async () => {
    const r = await buildReport(
      sources({
        blocked4: setListing('blocked4', [{ address: '203.0.113.5', port: 25, packets: 2 }]),
        blocked6: setListing('blocked6', []),
        agentblocked4: setListing('agentblocked4', []),
        agentblocked6: setListing('agentblocked6', []),
        [REFUSED_COUNTERS.runner]: counter(REFUSED_COUNTERS.runner, 2),
        [REFUSED_COUNTERS.agent]: counter(REFUSED_COUNTERS.agent, 0),
        dnsflood: counter('dnsflood', 0),
        dnsuiddrops: 'table inet cordon {\n}\n',
      }),
    );
    expect(r.blocked).toHaveLength(1);
    expect(r.blockedLeftOut).toBeUndefined();
    expect(r.blockedUnrecorded).toBeUndefined();
    const event = toEvent(r);
    expect('blockedDestinationsLeftOut' in event).toBe(false);
    expect('blockedUnrecordedPackets' in event).toBe(false);
    const events = [{ seq: 1, type: 'egress.report', data: event } as unknown as LedgerEvent];
    const shorts = findings(events, { status: 'intact', details: [] }).map((x) => x.short);
    expect(shorts).toContain('1 destination blocked');
    expect(shorts).not.toContain('the record of blocked destinations was full');
    expect(JSON.stringify(blockedSection(events))).not.toContain('left out of this list');
  });

  test('packets refused while the report reads (sets not full) are not taken for unrecorded ones', async () => {
    // The runner's and the agent's refused retries go on while the sets are listed: each
    // chain's counter, read after, is ahead of what the sets held when read.
    const reads: string[] = [];
    const src = sources({
      blocked4: setListing('blocked4', [{ address: '203.0.113.5', port: 25, packets: 2 }]),
      blocked6: setListing('blocked6', []),
      agentblocked4: setListing('agentblocked4', [{ address: '192.0.2.1', port: 443, packets: 5 }]),
      agentblocked6: setListing('agentblocked6', []),
      [REFUSED_COUNTERS.runner]: counter(REFUSED_COUNTERS.runner, 9),
      [REFUSED_COUNTERS.agent]: counter(REFUSED_COUNTERS.agent, 12),
      dnsflood: counter('dnsflood', 0),
      dnsuiddrops: 'table inet cordon {\n}\n',
    });
    const run = src.shell.run.bind(src.shell);
    src.shell = {
      run: (cmd: string) => {
        reads.push(cmd);
        return run(cmd);
      },
    } as unknown as ReportSources['shell'];
    const r = await buildReport(src);
    expect(r.blockedUnrecorded).toBeUndefined();
    // And the counters are read before the sets: what arrives in between is in the sets only.
    const last = (k: string): number => reads.findIndex((c) => c.endsWith(` ${k}`));
    expect(last(REFUSED_COUNTERS.agent)).toBeLessThan(last('agentblocked4'));
    expect(last(REFUSED_COUNTERS.runner)).toBeLessThan(last('blocked4'));
  });

  test('a counter that cannot be read is recorded as tampering', async () => {
    const tamper = new TamperLog(() => undefined);
    await buildReport(
      sources(
        {
          blocked4: setListing('blocked4', []),
          blocked6: setListing('blocked6', []),
          agentblocked4: setListing('agentblocked4', []),
          agentblocked6: setListing('agentblocked6', []),
          [REFUSED_COUNTERS.runner]: counter(REFUSED_COUNTERS.runner, 0),
          dnsflood: counter('dnsflood', 0),
          dnsuiddrops: 'table inet cordon {\n}\n',
        },
        tamper,
      ),
    );
    expect(tamper.entries).toEqual([`the counter ${REFUSED_COUNTERS.agent} could not be read`]);
  });
});

describe('the ruleset', () => {
  test(`the blocked sets hold ${BLOCKED_SET_SIZE}, and both refuse chains count every packet first in a named counter`, () => {
    const r = renderRuleset({
      policy: 'block',
      staticAllowed: parseCidrs('192.0.2.0/24'),
      dnsUid: 997,
      upstreams: ['198.51.100.53'],
      agent: { uidMin: 61000, uidMax: 61183, dnsPort: 5354 },
    });
    for (const set of ['blocked4', 'blocked6', 'agentblocked4', 'agentblocked6'])
      expect(r).toMatch(new RegExp(`set ${set} \\{[^}]*size ${BLOCKED_SET_SIZE}; counter; \\}`));
    expect(r).toContain(`counter ${REFUSED_COUNTERS.runner} { }`);
    expect(r).toContain(`counter ${REFUSED_COUNTERS.agent} { }`);
    expect(r).toMatch(new RegExp(`chain refuse \\{\\n\\s+counter name ${REFUSED_COUNTERS.runner}\\n`));
    expect(r).toMatch(new RegExp(`chain agent_refuse \\{\\n\\s+counter name ${REFUSED_COUNTERS.agent}\\n`));
  });
});
