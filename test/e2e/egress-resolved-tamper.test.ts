/**
 * systemd-resolved's Cordon drop-in, changed or removed as root during a fenced run, is
 * recorded (T16), against the bundled daemon. No systemd runs here, so the daemon runs in
 * a mount namespace of its own where it finds systemd-resolved "running": /run/systemd is
 * a directory made here holding resolve/stub-resolv.conf, /etc/systemd another (where it
 * writes the drop-in), and `systemctl` on its PATH a script that says the service is active
 * and logs what it is asked. Everything else is the real daemon and its real check. The
 * test edits the drop-in through the directory it made, from outside. Needs root, nft, ip,
 * dig, unshare and setpriv.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { canUseNetns } from '../../src/devkit/netns.js';
import { parseDomains } from '../../src/fence/policy.js';
import { requestReport } from '../../src/rootd/protocol.js';
import { toEvent } from '../../src/actions/egress/report.js';
import { DNS4, World, asUid, dig, startDaemon } from './egress-topology.js';
import { tempDir } from '../harness/tmp.js';
import { inPrivateMounts } from '../harness/mounts.js';

const usable =
  canUseNetns() &&
  ['/usr/sbin/nft', '/usr/bin/dig', '/usr/bin/unshare', '/usr/bin/setpriv'].every((f) => existsSync(f)) &&
  ['/run/systemd', '/etc/systemd'].every((d) => existsSync(d));
if (!usable && process.env.CI === 'true')
  throw new Error(
    'egress-resolved-tamper e2e: needs root, nft, ip, dig, unshare, setpriv, /run/systemd and /etc/systemd (CI=true)',
  );
if (!usable)
  console.warn(
    'egress-resolved-tamper e2e skipped: needs root, nft, ip, dig, unshare, setpriv, /run/systemd and /etc/systemd',
  );
const suite = usable ? describe : describe.skip;

const NOTE =
  '/etc/systemd/resolved.conf.d/zz-cordon-egress.conf (systemd-resolved pointed at the proxy) was changed or removed';

/** A fenced run whose daemon sees a running systemd-resolved (see above). */
interface Fenced {
  w: World;
  id: string;
  /** The daemon's /etc/systemd, as this test reaches it. */
  etc: string;
  /** What the stand-in `systemctl` was asked, one call a line. */
  calls: () => string[];
}

async function fenced(tag: string): Promise<Fenced> {
  const dir = tempDir(`cordon-resolved-${tag}-`);
  const run = join(dir, 'run-systemd');
  const etc = join(dir, 'etc-systemd');
  const bin = join(dir, 'bin');
  for (const d of [join(run, 'resolve'), etc, bin]) mkdirSync(d, { recursive: true });
  writeFileSync(join(run, 'resolve', 'stub-resolv.conf'), 'nameserver 127.0.0.53\n');
  const log = join(dir, 'systemctl.log');
  writeFileSync(join(bin, 'systemctl'), `#!/bin/sh\necho "$*" >> '${log}'\nexit 0\n`);
  chmodSync(join(bin, 'systemctl'), 0o755);
  const w = new World(tag);
  await w.serve();
  const id = `resolved${tag}${process.pid}`;
  try {
    await startDaemon(
      w,
      join(dir, 'config.json'),
      { id, domains: parseDomains('www.a.test'), agentDomains: parseDomains('www.a.test') },
      inPrivateMounts(
        'mount --bind "$1" /run/systemd && mount --bind "$2" /etc/systemd && PATH="$3:$PATH" && shift 3 && exec "$@"',
        ['sh', run, etc, bin],
      ),
    );
  } catch (e) {
    await w.destroy([id]);
    throw e;
  }
  return { w, id, etc, calls: () => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : []) };
}

/** The daemon's tamper list once it holds `note`, or as it is after 5 s (checked every 100 ms). */
async function tamperWith(id: string, note: string): Promise<string[]> {
  let tamper: string[] = [];
  for (let i = 0; i < 50; i++) {
    tamper = (await requestReport(id)).tamper;
    if (tamper.includes(note)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return tamper;
}

suite('egress: systemd-resolved’s drop-in changed or removed during a fenced run', () => {
  const runs: Fenced[] = [];

  afterAll(async () => {
    for (const f of runs) await f.w.destroy([f.id]);
  });

  let changed: Fenced;
  beforeAll(async () => {
    changed = await fenced('r');
    runs.push(changed);
  }, 60000);

  test('control: the daemon pointed resolved at the proxy (drop-in written, service restarted), nothing recorded yet', async () => {
    const text = readFileSync(join(changed.etc, 'resolved.conf.d', 'zz-cordon-egress.conf'), 'utf8');
    expect(text).toContain('DNS=127.0.0.1');
    expect(text).toContain('DNSStubListener=no');
    expect(changed.calls()).toEqual(['is-active --quiet systemd-resolved', 'restart systemd-resolved']);
    expect((await requestReport(changed.id)).tamper).toEqual([]);
  });

  test('changed as root (pointed at another server): recorded in the report and in egress.report, and DNS to that server stays refused', async () => {
    const file = join(changed.etc, 'resolved.conf.d', 'zz-cordon-egress.conf');
    writeFileSync(file, readFileSync(file, 'utf8').replace('DNS=127.0.0.1', `DNS=${DNS4}`));
    const tamper = await tamperWith(changed.id, NOTE);
    expect(tamper).toContain(NOTE);
    expect(toEvent(await requestReport(changed.id)).tamper).toContain(NOTE);
    // resolved would now ask the upstream itself, as its own user: any user but the
    // proxy's is refused there (nobody plays systemd-resolve's user).
    expect(dig(asUid(changed.w.runner, 65534, 65534), 'www.a.test', { server: DNS4 }).status).toMatch(
      /^failed/,
    );
    expect(await changed.w.asked('www.a.test')).toEqual([]);
  });

  test('removed as root: recorded', async () => {
    const removed = await fenced('s');
    runs.push(removed);
    expect((await requestReport(removed.id)).tamper).toEqual([]);
    rmSync(join(removed.etc, 'resolved.conf.d', 'zz-cordon-egress.conf'));
    expect(await tamperWith(removed.id, NOTE)).toContain(NOTE);
  }, 60000);
});
