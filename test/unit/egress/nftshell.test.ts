/**
 * The long-lived `nft -i` child against a real table in a namespace: requests resolve in
 * order, a failing request is rejected without desynchronising the ones after it, and
 * batched set updates land with their timeouts. Needs root and nft.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { canUseNetns, Netns } from '../../../src/devkit/netns.js';
import { renderRuleset } from '../../../src/fence/firewall.js';
import { ACK_RANGE, AllowSets, NftShell } from '../../../src/fence/nftshell.js';
import { tempDir } from '../../harness/tmp.js';

const usable = canUseNetns() && existsSync('/usr/sbin/nft');
if (!usable && process.env.CI === 'true') throw new Error('nftshell test: needs root and nft (CI=true)');
if (!usable) console.warn('nftshell test skipped: needs root and nft');
const suite = usable ? describe : describe.skip;

suite('NftShell and AllowSets', () => {
  let ns: Netns;
  let shell: NftShell;
  let dir: string;

  const ruleset = renderRuleset({
    policy: 'audit',
    staticAllowed: [],
    dnsUid: 0,
    upstreams: ['192.0.2.53'],
    agent: { uidMin: 61000, uidMax: 61183, dnsPort: 5354 },
  });

  beforeAll(() => {
    ns = Netns.create(`egn${process.pid % 100000}`);
    dir = tempDir('cordon-nft-');
    ns.exec(['nft', '-f', '-'], { input: ruleset });
    // The child runs inside the namespace through a two-line wrapper.
    const wrapper = join(dir, 'nft');
    writeFileSync(wrapper, `#!/bin/sh\nexec /usr/sbin/ip netns exec ${ns.name} /usr/sbin/nft "$@"\n`, {
      mode: 0o755,
    });
    shell = new NftShell(wrapper);
  });

  afterAll(() => {
    shell?.close();
    ns?.delete();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a failing request is rejected with nft’s message and the next ones still resolve in order', async () => {
    const results = await Promise.allSettled([
      shell.run('list set inet cordon ack'),
      shell.run('add element inet cordon nosuch { 192.0.2.1 }'),
      shell.run('add element inet cordon allow4 { 192.0.2.7 timeout 30s }'),
      shell.run('list set inet cordon allow4'),
    ]);
    expect(results[0].status).toBe('fulfilled');
    expect(results[1].status).toBe('rejected');
    expect(String((results[1] as PromiseRejectedResult).reason)).toContain('No such file or directory');
    expect(results[2].status).toBe('fulfilled');
    expect((results[3] as PromiseFulfilledResult<string>).value).toContain('192.0.2.7');
  });

  test("two shells on one table (the proxies' and the tamper watch's) each get every request answered", async () => {
    // nft echoes no element that is already there: with the same sentinel numbers, the
    // second shell's request would wait for ever, and every one queued behind it.
    const other = new NftShell(join(dir, 'nft'), ACK_RANGE);
    const shells = [shell, other];
    try {
      const both = Promise.all(
        Array.from({ length: 10 }, (_, i) => shells[i % 2].run('list set inet cordon ack')),
      );
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve('timed out'), 10000);
      });
      const outcome = await Promise.race([both.then(() => 'answered'), late]);
      clearTimeout(timer);
      expect(outcome).toBe('answered');
    } finally {
      other.close();
    }
  });

  test('updates are batched, skipped when the address is already in for long enough, and refreshed when not', async () => {
    let now = 1_000_000;
    const sets = new AllowSets(shell, 60, () => now);
    const a = sets.ensure([{ address: '198.51.100.1', ttl: 5 }], [{ address: '2001:db8::1', ttl: 300 }]);
    const b = sets.ensure([{ address: '198.51.100.2', ttl: 5 }], []);
    await Promise.all([a, b]);
    expect(sets.updates).toBe(2);
    expect(sets.ensure([{ address: '198.51.100.1', ttl: 10 }], [])).toBeUndefined();
    const v4 = ns.exec(['nft', 'list', 'set', 'inet', 'cordon', 'allow4']);
    expect(v4).toMatch(/198\.51\.100\.1 timeout 1m15s/);
    expect(ns.exec(['nft', 'list', 'set', 'inet', 'cordon', 'allow6'])).toMatch(/2001:db8::1 timeout 6m15s/);
    // 20 s later, 55 s are left: less than min-ttl, so the element is written again.
    now += 20_000;
    await sets.ensure([{ address: '198.51.100.1', ttl: 5 }], []);
    expect(ns.exec(['nft', 'list', 'set', 'inet', 'cordon', 'allow4'])).toMatch(
      /198\.51\.100\.1 timeout 1m15s expires 1m1[45]s/,
    );
  });

  test('an address still on its way to the kernel makes a second answer wait for the same update', async () => {
    const sets = new AllowSets(shell, 60);
    const first = sets.ensure([{ address: '198.51.100.3', ttl: 30 }], []);
    const second = sets.ensure([{ address: '198.51.100.3', ttl: 30 }], []);
    expect(first).toBeDefined();
    expect(second).toBe(first);
    await second;
    expect(ns.exec(['nft', 'list', 'set', 'inet', 'cordon', 'allow4'])).toContain('198.51.100.3');
    // Confirmed now: nothing to wait for, also for a cached answer 10 s old.
    expect(sets.ensure([{ address: '198.51.100.3', ttl: 30 }], [], 10)).toBeUndefined();
    expect(sets.updates).toBe(1);
  });

  test('after the table is loaded again, refill puts every known address back with the time it has left', async () => {
    let now = 2_000_000;
    const runner = new AllowSets(shell, 60, () => now);
    const agent = new AllowSets(shell, 60, () => now, ['agent4', 'agent6']);
    await runner.ensure([{ address: '198.51.100.7', ttl: 300 }], [{ address: '2001:db8::7', ttl: 300 }]);
    await agent.ensure([{ address: '198.51.100.8', ttl: 300 }], [{ address: '2001:db8::8', ttl: 300 }]);
    // The table loaded again, as the tamper watch does: every set comes back empty.
    ns.exec(['nft', '-f', '-'], { input: ruleset });
    const list = (set: string): string => ns.exec(['nft', 'list', 'set', 'inet', 'cordon', set]);
    expect(list('allow4')).not.toContain('198.51.100.7');
    now += 100_000;
    expect(await runner.refill()).toBe(2);
    expect(await agent.refill()).toBe(2);
    // 375 s written, 100 s gone: 275 s left.
    expect(list('allow4')).toMatch(/198\.51\.100\.7 timeout 4m35s/);
    expect(list('allow6')).toMatch(/2001:db8::7 timeout 4m35s/);
    expect(list('agent4')).toContain('198.51.100.8');
    expect(list('agent6')).toContain('2001:db8::8');
    // Known and in the set again: an answer carrying it costs nothing.
    expect(runner.ensure([{ address: '198.51.100.7', ttl: 60 }], [])).toBeUndefined();
  });
});
