/**
 * A DNS flood from many sockets, run for real: the bundled daemon in a "runner" namespace
 * (egress-topology.ts), one user sending refused names from 64 UDP sockets, each under
 * the fence's per-socket limit, while the runner's user looks an allowed name up every
 * 0.3 s (dns-load.py). Every lookup is answered within a stub resolver's retries, and the
 * kernel's drops are counted against the flooding uid in the report. Users are uids only
 * (setpriv), none created. Needs root, nft, ip, setpriv and python3.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { canUseNetns, stop } from '../../src/devkit/netns.js';
import { parseDomains } from '../../src/fence/policy.js';
import { AGENT_UID_MAX, AGENT_UID_MIN } from '../../src/identity/user.js';
import { requestReport } from '../../src/rootd/protocol.js';
import { toEvent } from '../../src/actions/egress/report.js';
import { World, startDaemon } from './egress-topology.js';
import { tempDir } from '../harness/tmp.js';

const usable =
  canUseNetns() && ['/usr/sbin/nft', '/usr/bin/setpriv', '/usr/bin/python3'].every((f) => existsSync(f));
if (!usable && process.env.CI === 'true')
  throw new Error('egress-flood e2e: needs root, nft, ip, setpriv and python3 (CI=true)');
if (!usable) console.warn('egress-flood e2e skipped: needs root, nft, ip, setpriv and python3');
const suite = usable ? describe : describe.skip;

const HERE = dirname(fileURLToPath(import.meta.url));
const LOAD = join(HERE, 'dns-load.py');
const ALLOWED = 'www.a.test';
/** Lookups by the runner's uid, 0.3 s apart; the flood runs until the last is done. */
const LOOKUPS = 15;

/** A uid with no user, from `from`, differing per test process. */
function freeUid(from: number, span: number, not: number[] = []): number {
  for (let i = 0; i < span; i++) {
    const uid = from + ((process.pid + i) % span);
    if (!not.includes(uid) && spawnSync('getent', ['passwd', String(uid)]).status !== 0) return uid;
  }
  throw new Error(`no free uid in ${from}-${from + span - 1}`);
}

interface Lookup {
  tries: number;
  rcode: number | null;
  us: number;
}

/** Output of a child, once it exits (it is stopped after `timeoutMs` at the latest). */
function output(child: ChildProcess, timeoutMs: number): Promise<string> {
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve) => {
    const timer = setTimeout(() => void stop(child), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(out.trim());
    });
  });
}

suite('egress under a DNS flood from many sockets', () => {
  let w: World;
  let dir: string;
  let id = '';
  const kids: ChildProcess[] = [];
  const runnerUid = freeUid(62000, 500);
  const otherUid = freeUid(62500, 500, [runnerUid]);
  const agentUid = freeUid(AGENT_UID_MIN, AGENT_UID_MAX - AGENT_UID_MIN + 1);
  const as = (uid: number): string[] => ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups'];

  beforeAll(async () => {
    dir = tempDir('cordon-flood-');
    w = new World('f');
    await w.serve();
    id = await startDaemon(w, join(dir, 'config.json'), {
      id: `flood${process.pid}`,
      domains: parseDomains(ALLOWED),
      agentDomains: parseDomains(ALLOWED),
    });
  }, 60000);

  afterAll(async () => {
    for (const k of kids) await stop(k);
    await w?.destroy(id ? [id] : []);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /**
   * `floodUid` floods 127.0.0.1:53 from 64 sockets (two processes of 32, one per core)
   * while the runner's uid looks ALLOWED up.
   */
  async function flooded(floodUid: number): Promise<{ lookups: Lookup[]; sent: number }> {
    const floods = [0, 1].map(() =>
      w.runner.spawn([...as(floodUid), '/usr/bin/python3', LOAD, 'flood', '127.0.0.1', '53', '32', '90']),
    );
    kids.push(...floods);
    const sent = floods.map((f) => output(f, 100000));
    const lookups = w.runner.spawn([
      ...as(runnerUid),
      '/usr/bin/python3',
      LOAD,
      'lookups',
      '127.0.0.1',
      '53',
      ALLOWED,
      String(LOOKUPS),
    ]);
    kids.push(lookups);
    const found = JSON.parse((await output(lookups, 80000)) || '[]') as Lookup[];
    for (const f of floods) await stop(f);
    return { lookups: found, sent: (await Promise.all(sent)).reduce((n, x) => n + Number(x), 0) };
  }

  test("another user's flood from 64 sockets: every runner lookup answered, the drops counted against that uid", async () => {
    const { lookups, sent } = await flooded(otherUid);
    // The flood was one: far more than the proxy could drain in its time.
    expect(sent).toBeGreaterThan(20000);
    expect(lookups).toHaveLength(LOOKUPS);
    expect(lookups.filter((l) => l.rcode !== 0)).toEqual([]);
    const r = toEvent(await requestReport(id)).refusals;
    expect(r?.flood).toBe(true);
    const dropped = r?.droppedByUid ?? [];
    expect(dropped.find((u) => u.uid === otherUid)?.dropped).toBeGreaterThan(0);
    expect(dropped.some((u) => u.uid === runnerUid)).toBe(false);
  }, 120000);

  test("the agent's flood from 64 sockets, redirected to its own proxy: every runner lookup answered", async () => {
    const { lookups, sent } = await flooded(agentUid);
    expect(sent).toBeGreaterThan(20000);
    expect(lookups).toHaveLength(LOOKUPS);
    expect(lookups.filter((l) => l.rcode !== 0)).toEqual([]);
    const dropped = toEvent(await requestReport(id)).refusals?.droppedByUid ?? [];
    expect(dropped.find((u) => u.uid === agentUid)?.dropped).toBeGreaterThan(0);
    expect(dropped.some((u) => u.uid === runnerUid)).toBe(false);
  }, 120000);
});
