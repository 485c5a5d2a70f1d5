/**
 * "If the daemon cannot [make the cgroup], the command is not started" (docs/run.md,
 * Containment), whole program: the egress daemon is root in the runner's network namespace,
 * `run` is the unprivileged runner user without sudo, so its cgroup comes from the
 * daemon's root helper. The test makes the helper's cgroup2 mount read-only in the helper's
 * own mount namespace (never the host's), so its mkdir fails for real; the command must not
 * run, the step fails naming why, and nothing of the runner user is left running. Then the
 * mount is made writable again and the same step runs, contained: the control. Root, network
 * namespaces, nft, useradd, nsenter and cgroup2 are needed; under CI their absence fails loudly.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { parseLedgerText } from '../../src/ledger/ledger.js';
import { Job, type StepResult } from '../../src/devkit/run-action.js';
import { canUseNetns, run } from '../../src/devkit/netns.js';
import { fenceId, stateDir } from '../../src/rootd/protocol.js';
import { cgroup2Mount } from '../../src/platform/cgroup2.js';
import { World } from './egress-topology.js';
import { wrapAsUser } from '../harness/users.js';

/** The uid's processes (pid and command line), once there are none or after `ms`. */
async function processesOf(uid: number, ms: number): Promise<string> {
  const until = Date.now() + ms;
  for (;;) {
    const left = spawnSync('pgrep', ['-a', '-u', String(uid)], { encoding: 'utf8' }).stdout.trim();
    if (left === '' || Date.now() > until) return left;
    await new Promise((r) => setTimeout(r, 100));
  }
}

const usable =
  canUseNetns() &&
  existsSync('/usr/sbin/nft') &&
  existsSync('/usr/sbin/useradd') &&
  existsSync('/usr/bin/nsenter') &&
  cgroup2Mount() !== undefined;
if (!usable && process.env.CI === 'true')
  throw new Error(
    'run-cgroup-refused e2e: needs root, nft, ip, useradd, nsenter and a cgroup2 mount (CI=true)',
  );
if (!usable)
  console.warn('run-cgroup-refused e2e skipped: needs root, nft, ip, useradd, nsenter and cgroup2');
const suite = usable ? describe : describe.skip;

/** The root helper's pid: the daemon's child running `daemon.js helper <dir>`. */
function helperPid(dir: string): number | undefined {
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      if (argv.includes('helper') && argv.includes(dir)) return Number(p);
    } catch {
      // Gone.
    }
  }
  return undefined;
}

/** Where cgroup2 is mounted as `pid` sees it (the helper's own mount under `ip netns exec`). */
function cgroupMountOf(pid: number): string | undefined {
  for (const line of readFileSync(`/proc/${pid}/mounts`, 'utf8').split('\n')) {
    const [, where, type] = line.split(' ');
    if (type === 'cgroup2') return where;
  }
  return undefined;
}

suite("run's cgroup refused by the daemon: the command is not started", () => {
  const user = `ccgr${process.pid % 100000}`;
  let w: World;
  let job: Job;
  let egress: StepResult;
  let helper: number;
  let startState: Record<string, string> = {};
  let mount = '';
  const asRunner = (): string[] => wrapAsUser(user, job.root);
  const marker = (): string => join(job.workspace, 'ran.txt');
  const inHelperNs = (args: string[]): void => {
    run(['nsenter', '-t', String(helper), '-m', '--', ...args]);
  };

  beforeAll(async () => {
    run(['useradd', '--no-create-home', '--shell', '/bin/sh', user]);
    w = new World('c');
    await w.serve();
    job = new Job();
    chmodSync(job.root, 0o755);
    const start = await job.run('start', 'main', { wrap: asRunner() });
    startState = start.state;
    expect(start.code).toBe(0);
    egress = await job.run('egress', 'main', {
      inputs: { 'allowed-domains': 'www.a.test', preset: 'none' },
      wrap: w.runner.wrap,
      timeoutMs: 30000,
    });
    expect(egress.code).toBe(0);
    helper = helperPid(stateDir(fenceId(job.runnerTemp))) ?? 0;
    // The helper mounts cgroup2 once it runs: waited for, bounded (5 s).
    for (let i = 0; i < 50 && helper && !mount; i++) {
      mount = cgroupMountOf(helper) ?? '';
      if (!mount) await new Promise((res) => setTimeout(res, 100));
    }
  }, 90000);

  afterAll(async () => {
    await w?.destroy([fenceId(job.runnerTemp)]);
    run(['userdel', user], { allowFail: true });
  });

  test('the helper cannot make the cgroup (its mount read-only): the step fails, the command never ran, nothing is left', async () => {
    expect(helper).toBeGreaterThan(1);
    expect(mount).not.toBe('');
    // Only ever the helper's own mount namespace: the host's cgroup2 mount is never touched.
    expect(readlinkSync(`/proc/${helper}/ns/mnt`)).not.toBe(readlinkSync('/proc/self/ns/mnt'));
    const uid = Number(run(['id', '-u', user]).trim());
    let r: StepResult;
    inHelperNs(['mount', '-o', 'remount,bind,ro', mount]);
    try {
      r = await job.run('run', 'main', {
        inputs: { run: 'echo ran > ran.txt\nsleep 300' },
        wrap: asRunner(),
        timeoutMs: 30000,
      });
    } finally {
      inHelperNs(['mount', '-o', 'remount,bind,rw', mount]);
    }
    expect(r.code).not.toBe(0);
    const err = r.commands.find((c) => c.command === 'error')?.message ?? '';
    expect(err).toContain('the egress daemon could not put the command in a cgroup; it was not started');
    expect(err).toMatch(/read-only file system/i);
    expect(err).toContain('Fix:');
    expect(existsSync(marker())).toBe(false);
    // The held shell was killed: no process of the runner user is left (a killed process
    // may take a moment to be reaped: looked at for up to 5 s, then listed if any is left).
    expect(await processesOf(uid, 5000)).toBe('');
    const events = parseLedgerText(
      readFileSync(join(job.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8'),
    ).flatMap((l) => (l.event ? [l.event] : []));
    // The record says the command was not started, and is closed as at any end: verified, sealed.
    const finished = events.find((e) => e.type === 'run.finished')?.data;
    expect(finished).toMatchObject({ exitCode: null, containment: 'cgroup', ledgerIntact: true });
    expect(String(finished?.notStarted)).toContain('could not put the command in a cgroup');
    expect(events.map((e) => e.type).slice(-3)).toEqual(['ledger.verified', 'run.finished', 'run.sealed']);
  }, 60000);

  test('the control: with the mount writable again the same step runs, in a cgroup the daemon made', async () => {
    const r = await job.run('run', 'main', {
      inputs: { run: 'echo ran > ran.txt\ncat /proc/self/cgroup' },
      wrap: asRunner(),
      timeoutMs: 30000,
    });
    expect(r.code).toBe(0);
    expect(existsSync(marker())).toBe(true);
    expect(r.stdout).toMatch(/^0::\/cordon-run-\d+-[0-9a-f]{8}$/m);
  }, 60000);

  // Both run steps closed their windows: start's post trusts the record and shows the refusal.
  test("start's post: the record intact, the refused step shown as not started", async () => {
    const post = await job.run('start', 'post', { state: startState, wrap: asRunner() });
    expect(post.summary).not.toContain('RECORD ALTERED');
    expect(post.summary).toContain('not started');
    expect(post.commands.filter((c) => c.command === 'error')).toEqual([]);
  }, 60000);
});
