/**
 * Cordon's own endpoints behind the fence, run for real: the bundled daemon in a "runner"
 * namespace, its lists built as the egress step builds them (`aws-regions: us-east-1` and an
 * ID-token URL). The runner side (root here: Cordon's steps, the broker) resolves and
 * reaches STS of the region and the ID-token host without `allowed-domains` naming them;
 * a uid of the agents' range cannot. Needs root, nft, ip, dig, curl, useradd and setpriv.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { canUseNetns, run } from '../../src/devkit/netns.js';
import { parseEgressInputs } from '../../src/actions/egress/inputs.js';
import { daemonLists } from '../../src/actions/egress/launch.js';
import {
  DNS4,
  WEB4,
  World,
  asUid,
  connect,
  dig,
  fetchUrl,
  startDaemon,
  type Runs,
  freeAgentUid,
} from './egress-topology.js';
import { tempDir } from '../harness/tmp.js';

const usable =
  canUseNetns() &&
  ['/usr/sbin/nft', '/usr/bin/dig', '/usr/bin/curl', '/usr/sbin/useradd', '/usr/bin/setpriv'].every((f) =>
    existsSync(f),
  );
if (!usable && process.env.CI === 'true')
  throw new Error('egress-own e2e: needs root, nft, ip, dig, curl, useradd and setpriv (CI=true)');
if (!usable) console.warn('egress-own e2e skipped: needs root, nft, ip, dig, curl, useradd and setpriv');
const suite = usable ? describe : describe.skip;

const STS = 'sts.us-east-1.amazonaws.com';
const SM = 'secretsmanager.us-east-1.amazonaws.com';
const TOKEN = 'token.ids.test';
/** Test-made addresses on the namespace "internet", each with a web server. */
const STS4 = '203.0.113.61';
const TOKEN4 = '203.0.113.62';

suite("egress: Cordon's own endpoints serve the runner side, never the agent", () => {
  const user = `cown${process.pid % 100000}`;
  let w: World;
  let dir: string;
  let id = '';
  let agent: Runs;

  beforeAll(async () => {
    const uid = freeAgentUid(7);
    run(['useradd', '--uid', String(uid), '--user-group', '--no-create-home', '--shell', '/bin/sh', user]);
    const gid = Number(run(['id', '-g', user]).trim());
    dir = tempDir('cordon-own-');
    w = new World('o');
    await w.serve({
      zone: {
        [STS]: [{ type: 'A', value: STS4 }],
        [SM]: [{ type: 'A', value: STS4 }],
        [TOKEN]: [{ type: 'A', value: TOKEN4 }],
      },
      http: [STS4, TOKEN4],
    });
    // What the egress step builds from its inputs and environment; the preset is off.
    const s = parseEgressInputs({
      INPUT_PRESET: 'none',
      'INPUT_ALLOWED-DOMAINS': 'www.a.test',
      'INPUT_AWS-REGIONS': 'us-east-1',
      ACTIONS_ID_TOKEN_REQUEST_URL: `https://${TOKEN}/_apis/token?api-version=2.0`,
    });
    id = await startDaemon(w, join(dir, 'config.json'), { id: `own${process.pid}`, ...daemonLists(s) });
    agent = asUid(w.runner, uid, gid);
  }, 60000);

  afterAll(async () => {
    await w?.destroy(id ? [id] : []);
    spawnSync('userdel', [user], { timeout: 15000 });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the runner side resolves and reaches STS of the region and the ID-token host, unlisted', () => {
    expect(dig(w.runner, STS).answers).toEqual([STS4]);
    expect(fetchUrl(w.runner, `http://${STS}/`, 4)).toBe(`hello from ${STS4}`);
    expect(dig(w.runner, SM).answers).toEqual([STS4]);
    expect(fetchUrl(w.runner, `http://${TOKEN}/`, 4)).toBe(`hello from ${TOKEN4}`);
  });

  test("the agent's uid can neither resolve them nor connect to their addresses", () => {
    for (const name of [STS, SM, TOKEN]) expect(dig(agent, name).status).toBe('NXDOMAIN');
    expect(dig(agent, STS, { server: DNS4 }).status).toBe('NXDOMAIN');
    expect(connect(agent, STS4, 80).result).toBe('ECONNREFUSED');
    expect(connect(agent, TOKEN4, 80).result).toBe('ECONNREFUSED');
    expect(fetchUrl(agent, `http://${STS}/`, 4)).toMatch(/^curl exit/);
    // Its own list still works, so the refusals above are the identity's, not a broken fence.
    expect(fetchUrl(agent, 'http://www.a.test/', 4)).toBe(`hello from ${WEB4}`);
  });
});
