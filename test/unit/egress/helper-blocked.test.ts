import { describe, expect, test } from '@jest/globals';
import { PassThrough } from 'node:stream';
import { traceListeners, watchBlocked, type BlockedWatchDeps } from '../../../src/rootd/helper.js';

// /proc/net/netlink with `nft monitor trace` (pid 4242: NFNLGRP_NFTRACE, 0x100), `nft
// monitor ruleset` (pid 4343: NFNLGRP_NFTABLES, 0x40) and an unbound netfilter socket.
const NETLINK = `sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode
00000000ab4fd9de 12  4242       00000100 0        0        0     2        0        5443369
00000000ab4fd9df 12  4343       00000040 0        0        0     2        0        5443370
00000000d55a8def 12  0          00000000 0        0        0     2        0        1244
00000000d55a8df0 0   4444       00000100 0        0        0     2        0        1245
`;

const BLOCKED4 = `table inet cordon {
	set blocked4 {
		type ipv4_addr . inet_proto . inet_service
		size 8192
		flags dynamic,timeout
		counter
		elements = { 198.51.100.7 . tcp . 443 counter packets 2 bytes 120 expires 59m }
	}
}`;

describe("the root helper's blocked destinations", () => {
  test('the trace listeners are the pids whose netfilter socket is in NFNLGRP_NFTRACE, and only those', () => {
    // Not the ruleset monitor (4343), an unbound socket, or a socket of another family.
    expect(traceListeners(NETLINK)).toEqual([4242]);
    expect(traceListeners('')).toEqual([]);
  });

  test('the blocked sets are listed once, as soon as the trace monitor listens, and the walk resolves only after it', async () => {
    const events: string[] = [];
    let polls = 0;
    const stdout = new PassThrough();
    const deps: BlockedWatchDeps = {
      monitor: () =>
        ({ pid: 77, stdout, kill: () => true }) as unknown as ReturnType<BlockedWatchDeps['monitor']>,
      // Not listening for the first three looks.
      listening: (pid) => {
        expect(pid).toBe(77);
        events.push(`look ${++polls}`);
        return polls > 3;
      },
      listSet: (set) => {
        events.push(`list ${set}`);
        return Promise.resolve(set === 'blocked4' ? BLOCKED4 : '');
      },
    };
    const found: string[] = [];
    await watchBlocked(
      (b) => {
        found.push(`${b.address} ${b.protocol} ${b.port}`);
        return true;
      },
      () => undefined,
      deps,
    );
    events.push('resolved');
    expect(events).toEqual([
      'look 1',
      'look 2',
      'look 3',
      'look 4',
      'list blocked4',
      'list blocked6',
      'list agentblocked4',
      'list agentblocked6',
      'resolved',
    ]);
    // The destination the listing found is looked up (on the next turn of the loop).
    for (let i = 0; i < 20 && !found.length; i++) await new Promise((r) => setTimeout(r, 5));
    expect(found).toEqual(['198.51.100.7 tcp 443']);
    // No second listing later on while the monitor runs.
    await new Promise((r) => setTimeout(r, 50));
    expect(events.filter((e) => e.startsWith('list'))).toHaveLength(4);
    stdout.end();
  });

  test('when the monitor is never seen listening, the sets are still listed after a bounded wait', async () => {
    const stdout = new PassThrough();
    const lists: number[] = [];
    const started = Date.now();
    await watchBlocked(
      () => false,
      () => undefined,
      {
        monitor: () =>
          ({ pid: undefined, stdout, kill: () => true }) as unknown as ReturnType<
            BlockedWatchDeps['monitor']
          >,
        listening: () => false,
        listSet: () => {
          lists.push(Date.now() - started);
          return Promise.resolve('');
        },
      },
    );
    expect(lists).toHaveLength(4);
    expect(Math.min(...lists)).toBeGreaterThanOrEqual(900);
    expect(Math.max(...lists)).toBeLessThan(5000);
    stdout.end();
  });
});
