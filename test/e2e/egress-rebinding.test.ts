/**
 * DNS rebinding, run for real (threat T35): allowed wildcard names whose owner answers
 * with the metadata service, loopback or a private address (under `private-answers:
 * refuse`) open nothing, for the runner and the agent's uids alike, and post records each
 * as a rebinding attempt with its name. Needs root, nft, ip, dig and setpriv.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Job, type StepResult } from '../../src/devkit/run-action.js';
import { canUseNetns } from '../../src/devkit/netns.js';
import { fenceId } from '../../src/rootd/protocol.js';
import { AGENT_UID_MIN } from '../../src/identity/user.js';
import { WEB4, World, asUid, connect, dig, fetchUrl } from './egress-topology.js';

const usable =
  canUseNetns() && ['/usr/sbin/nft', '/usr/bin/dig', '/usr/bin/setpriv'].every((f) => existsSync(f));
if (!usable && process.env.CI === 'true')
  throw new Error('egress-rebinding e2e: needs root, nft, ip, dig and setpriv (CI=true, so not skipping)');
if (!usable) console.warn('egress-rebinding e2e skipped: needs root, nft, ip, dig and setpriv');
const suite = usable ? describe : describe.skip;

const IMDS = '169.254.169.254';
const CORP = '10.66.0.10';
const MIXED_PUBLIC = '203.0.113.12';
const INPUTS = { 'allowed-domains': '*.a.test', preset: 'none', 'private-answers': 'refuse' };

interface Rebinding {
  name: string;
  answers: number;
  addresses: { address: string; kind: string }[];
  identity?: string;
}

suite('egress: answers that point inward', () => {
  let w: World;
  let job: Job;
  let main: StepResult;
  let before: string;

  beforeAll(async () => {
    w = new World('n');
    await w.serve({
      zone: {
        'imds.a.test': [{ type: 'A', value: IMDS }],
        'lo.a.test': [{ type: 'A', value: '127.0.0.1' }],
        'corp.a.test': [{ type: 'A', value: CORP }],
        'mixed.a.test': [
          { type: 'A', value: MIXED_PUBLIC },
          { type: 'A', value: IMDS },
        ],
        'agent-imds.a.test': [{ type: 'A', value: IMDS }],
      },
      http: [IMDS, CORP, MIXED_PUBLIC],
    });
    // Without the fence the "metadata service" and the private host answer.
    before = `${connect(w.runner, IMDS, 80).result} ${connect(w.runner, CORP, 80).result}`;
    job = new Job();
    main = await job.run('egress', 'main', { inputs: INPUTS, wrap: w.runner.wrap, timeoutMs: 30000 });
  }, 60000);

  afterAll(async () => {
    await w?.destroy([fenceId(job.runnerTemp)]);
  });

  test('the metadata listener and the private host are there before the fence', () => {
    expect(before).toBe('open open');
    expect(main.code).toBe(0);
  });

  test('an allowed name answered with the metadata service is refused and does not open it', () => {
    expect(dig(w.runner, 'imds.a.test').status).toBe('REFUSED');
    expect(dig(w.runner, 'imds.a.test', { tcp: true }).status).toBe('REFUSED');
    expect(connect(w.runner, IMDS, 80).result).toBe('ECONNREFUSED');
    expect(w.runner.exec(['nft', 'list', 'set', 'inet', 'cordon', 'allow4'])).not.toContain(IMDS);
  });

  test('an answer with a public address next to the metadata service is refused whole', () => {
    expect(dig(w.runner, 'mixed.a.test').status).toBe('REFUSED');
    expect(connect(w.runner, IMDS, 80).result).toBe('ECONNREFUSED');
    expect(connect(w.runner, MIXED_PUBLIC, 80).result).toBe('ECONNREFUSED');
  });

  test('loopback and, under private-answers: refuse, a private address are refused', () => {
    // Loopback itself stays open to local processes (`oif "lo" accept`); the answer is what is refused.
    expect(dig(w.runner, 'lo.a.test').status).toBe('REFUSED');
    expect(dig(w.runner, 'corp.a.test').status).toBe('REFUSED');
    expect(connect(w.runner, CORP, 80).result).toBe('ECONNREFUSED');
  });

  test("the agent's proxy refuses the same answers", () => {
    const agent = asUid(w.runner, AGENT_UID_MIN + (process.pid % 100), AGENT_UID_MIN + (process.pid % 100));
    expect(dig(agent, 'agent-imds.a.test').status).toBe('REFUSED');
    expect(connect(agent, IMDS, 80).result).toBe('ECONNREFUSED');
    expect(dig(agent, 'www.a.test').answers).toEqual([WEB4]);
  });

  test('a normal public answer still works', () => {
    expect(fetchUrl(w.runner, 'http://www.a.test/', 4)).toBe(`hello from ${WEB4}`);
  });

  test('post records each rebinding attempt with its name, addresses and who asked, and warns', async () => {
    const post = await job.run('egress', 'post', { inputs: INPUTS, state: main.state, wrap: w.runner.wrap });
    expect(post.code).toBe(0);
    const report = readFileSync(join(job.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { type: string; data: { rebinding?: Rebinding[] } })
      .filter((e) => e.type === 'egress.report')
      .pop()?.data;
    const by = new Map((report?.rebinding ?? []).map((r) => [`${r.identity} ${r.name}`, r]));
    expect(by.get('runner imds.a.test')?.addresses).toEqual([{ address: IMDS, kind: 'metadata' }]);
    expect(by.get('runner imds.a.test')?.answers).toBe(2);
    expect(by.get('runner mixed.a.test')?.addresses).toEqual([{ address: IMDS, kind: 'metadata' }]);
    expect(by.get('runner lo.a.test')?.addresses).toEqual([{ address: '127.0.0.1', kind: 'loopback' }]);
    expect(by.get('runner corp.a.test')?.addresses).toEqual([{ address: CORP, kind: 'private' }]);
    expect(by.get('agent agent-imds.a.test')?.addresses).toEqual([{ address: IMDS, kind: 'metadata' }]);
    const warned = post.commands.filter((c) => c.command === 'warning' && c.message.includes('imds.a.test'));
    expect(warned.map((c) => c.message)).toContainEqual(
      expect.stringMatching(
        /DNS answer for imds\.a\.test pointed inward \(169\.254\.169\.254 metadata\): a rebinding attempt, refused for the runner/,
      ),
    );
  });
});
