/**
 * Egress per identity, run for real: the bundled daemon in a "runner" namespace (see
 * egress-topology.ts) with a preset the test controls, and a Unix user whose uid is in the
 * agents' range. The agent gets `allowed-domains` and `allowed-ips` only; the preset serves
 * root (the runner side) and never the agent, neither by name nor by address. Needs root,
 * nft, ip, dig, curl, useradd and setpriv.
 */
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseDomains, parseCidrs } from '../../src/fence/policy.js';
import { requestReport } from '../../src/rootd/protocol.js';
import { toEvent } from '../../src/actions/egress/report.js';
import {
  CHAIN4,
  DNS4,
  DNS6,
  EVIL4,
  OTHER4,
  OTHER6,
  WEB4,
  WEB6,
  World,
  addAgentUser,
  asUid,
  connect,
  dig,
  egressSuite,
  fetchUrl,
  setElements,
  startDaemon,
  type Runs,
} from './egress-topology.js';
import { tempDir } from '../harness/tmp.js';

const suite = egressSuite('egress-identity', ['curl']);

/** The agent's name (A) and the preset's (P): different addresses, both with a web server. */
const A = 'www.a.test';
const P = 'cdn.other.test';

/** Starts the daemon inside `w.runner` with a hand-written config; returns its id. */
function startIdentityDaemon(w: World, dir: string, policy: 'block' | 'audit', tag: string): Promise<string> {
  return startDaemon(w, join(dir, `config-${tag}.json`), {
    id: `identity${tag}${process.pid}`,
    policy,
    // The runner's: the agent's list and the test's preset.
    domains: parseDomains(`${A}\n${P}`),
    agentDomains: parseDomains(A),
    ips: parseCidrs(`${OTHER4}/32`),
  });
}

suite('egress per identity: the agent gets only its list', () => {
  const user = `cagent${process.pid % 100000}`;
  let uid = 0;
  let gid = 0;
  let w: World;
  let dir: string;
  let id: string;
  let agent: Runs;

  beforeAll(async () => {
    ({ uid, gid } = addAgentUser(user, 0));
    dir = tempDir('cordon-identity-');
    w = new World('p');
    // P answers over IPv6 too (an address off allowed-ips), for the agent's IPv6 refusal.
    await w.serve({
      zone: {
        [P]: [
          { type: 'A', value: CHAIN4, ttl: 300 },
          { type: 'AAAA', value: OTHER6, ttl: 300 },
        ],
      },
    });
    id = await startIdentityDaemon(w, dir, 'block', 'b');
    agent = asUid(w.runner, uid, gid);
  }, 60000);

  afterAll(async () => {
    await w?.destroy(id ? [id] : []);
    spawnSync('userdel', [user], { timeout: 15000 });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the agent resolves and reaches its own names, over IPv4 and IPv6, through its own sets', () => {
    expect(dig(agent, A).answers).toEqual([WEB4]);
    expect(fetchUrl(agent, `http://${A}/`, 4)).toBe(`hello from ${WEB4}`);
    expect(fetchUrl(agent, `http://${A}/`, 6)).toBe(`hello from ${WEB6}`);
    expect(setElements(w, 'agent4')).toContain(WEB4);
    expect(setElements(w, 'agent6')).toContain(WEB6);
  });

  test("the agent's DNS to an outside resolver or the runner's proxy is answered by its own proxy", async () => {
    expect(dig(agent, A, { server: DNS4 }).answers).toEqual([WEB4]);
    expect(dig(agent, A, { server: DNS4, tcp: true }).answers).toEqual([WEB4]);
    expect(dig(agent, A, { server: DNS6 }).answers).toEqual([WEB4]);
    for (const server of [DNS4, DNS6, '127.0.0.1', '::1']) {
      expect(dig(agent, P, { server }).status).toBe('NXDOMAIN');
      expect(dig(agent, P, { server, tcp: true }).status).toBe('NXDOMAIN');
    }
    // Every query the upstream saw came from the proxy (the agent's, redirected), none for P.
    expect(await w.asked(P)).toEqual([]);
    expect((await w.asked(A)).every((q) => q.from === '198.51.100.2')).toBe(true);
  });

  test('the preset serves root (the runner side): it resolves and reaches P', () => {
    expect(dig(w.runner, P).answers).toEqual([CHAIN4]);
    expect(connect(w.runner, CHAIN4, 80).result).toBe('open');
    expect(setElements(w, 'allow4')).toContain(CHAIN4);
  });

  test("P's address, in the runner's set, is refused to the agent and recorded as the agent's", () => {
    expect(dig(agent, P).status).toBe('NXDOMAIN');
    const c = connect(agent, CHAIN4, 80);
    expect(c.result).toBe('ECONNREFUSED');
    expect(c.ms).toBeLessThan(1000);
    expect(setElements(w, 'agent4')).not.toContain(CHAIN4);
    expect(setElements(w, 'agentblocked4')).toContain(`${CHAIN4} . tcp . 80`);
    expect(setElements(w, 'blocked4')).not.toContain(CHAIN4);
    // Root still reaches it.
    expect(connect(w.runner, CHAIN4, 80).result).toBe('open');
  });

  test("P's IPv6 address, in the runner's set, is refused to the agent and recorded as the agent's", () => {
    expect(dig(w.runner, P, { type: 'AAAA' }).answers).toEqual([OTHER6]);
    expect(setElements(w, 'allow6')).toContain(OTHER6);
    expect(connect(w.runner, OTHER6, 80).result).toBe('open');
    expect(dig(agent, P, { type: 'AAAA' }).status).toBe('NXDOMAIN');
    const c = connect(agent, OTHER6, 80);
    expect(c.result).toBe('ECONNREFUSED');
    expect(c.ms).toBeLessThan(1000);
    expect(setElements(w, 'agent6')).not.toContain(OTHER6);
    expect(setElements(w, 'agentblocked6')).toContain(`${OTHER6} . tcp . 80`);
  });

  test('allowed-ips are open to the agent; DoT is not, even to its own address', () => {
    expect(connect(agent, OTHER4, 80).result).toBe('open');
    expect(connect(agent, WEB4, 853).result).toBe('ECONNREFUSED');
  });

  test('the report says which identity was refused a name or a destination', async () => {
    expect(dig(w.runner, 'secret.evil.test').status).toBe('NXDOMAIN');
    const event = toEvent(await requestReport(id));
    expect(event.blockedNames).toContainEqual(expect.objectContaining({ name: P, identity: 'agent' }));
    expect(event.blockedNames).toContainEqual(
      expect.objectContaining({ name: 'secret.evil.test', identity: 'runner' }),
    );
    expect(event.blockedNames.some((n) => n.name === P && n.identity === 'runner')).toBe(false);
    expect(event.blockedDestinations).toContainEqual(
      expect.objectContaining({ address: CHAIN4, port: 80, identity: 'agent' }),
    );
    // A name answered to both identities is one entry of `allowed`.
    expect(event.allowed.filter((n) => n.name === A)).toHaveLength(1);
  });

  test("audit mode: the agent's refusals are recorded as the agent's and let through", async () => {
    // A new world with an audit-mode daemon in place of the block-mode one.
    await w.destroy([id]);
    w = new World('q');
    await w.serve();
    id = await startIdentityDaemon(w, dir, 'audit', 'a');
    agent = asUid(w.runner, uid, gid);
    // A name off its list is forwarded and recorded; its answer fills the agent's set.
    expect(dig(agent, P).answers).toEqual([CHAIN4]);
    expect(setElements(w, 'agent4')).toContain(CHAIN4);
    expect(setElements(w, 'allow4')).not.toContain(CHAIN4);
    // An address it never resolved: let through, recorded as the agent's.
    expect(connect(agent, EVIL4, 80).result).toBe('open');
    expect(setElements(w, 'agentblocked4')).toContain(`${EVIL4} . tcp . 80`);
    expect(setElements(w, 'blocked4')).not.toContain(EVIL4);
    const event = toEvent(await requestReport(id));
    expect(event.blockedNames).toContainEqual(expect.objectContaining({ name: P, identity: 'agent' }));
  }, 60000);
});
