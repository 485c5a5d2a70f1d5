/**
 * Two promises of docs/run.md about what reaches what, attacked by whole-program runs of
 * dist/run as an unprivileged runner user (made here): the agent's user reaches a workspace
 * under closed directories of the runner user's, but nothing else in them, and every such
 * directory has its mode back after the step, however the command ends; and, without root
 * or sudo, a command whose `setsid` child keeps writing to the output does not hold the
 * step (the output stops being read 5 s after the command ends; the child is left, as the
 * docs say). Needs root and useradd; under CI their absence fails loudly.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseLedgerText } from '../../src/ledger/ledger.js';
import { Job, type StepResult } from '../../src/devkit/run-action.js';
import { alive } from '../harness/proc.js';
import { canMakeUsers, makeTestUser, type TestUser } from '../harness/users.js';

const usable = canMakeUsers();
if (!usable && process.env.CI === 'true') throw new Error('run-reach e2e: needs root and useradd (CI=true)');
if (!usable) console.warn('run-reach e2e skipped: needs root and useradd');
const suite = usable ? describe : describe.skip;

function finished(job: Job): Record<string, unknown> | undefined {
  const text = readFileSync(join(job.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8');
  return parseLedgerText(text)
    .flatMap((l) => (l.event ? [l.event] : []))
    .filter((e) => e.type === 'run.finished')
    .pop()?.data;
}

const modeOf = (p: string): number => statSync(p).mode & 0o7777;

suite('run: the agent reaches the workspace under closed directories, and nothing else in them', () => {
  let runner: TestUser;
  let job: Job;
  let closed: string;
  let mid: string;
  let workspace: string;

  beforeAll(() => {
    runner = makeTestUser('creach', { sudo: true });
    job = new Job();
    chmodSync(job.root, 0o755);
    // A home closed to others (0700) and a project folder open to the group only (0750).
    closed = join(job.root, 'closed');
    mid = join(closed, 'projects');
    workspace = join(mid, 'ws');
    mkdirSync(workspace, { recursive: true });
    writeFileSync(join(workspace, 'tracked.txt'), 'in the workspace\n');
    writeFileSync(join(closed, 'secret.txt'), 'content-of-secret-9c1\n', { mode: 0o600 });
    mkdirSync(join(closed, 'private'), { mode: 0o700 });
    writeFileSync(join(closed, 'private', 'key'), 'content-of-key-4e7\n', { mode: 0o644 });
    writeFileSync(join(mid, 'notes.txt'), 'content-of-notes-2b5\n', { mode: 0o640 });
    chmodSync(join(closed, 'private'), 0o700);
    chmodSync(mid, 0o750);
    chmodSync(closed, 0o700);
  });

  afterAll(() => runner?.remove());

  /** Every attempt prints `<name> WON` or `<name> held`; the modes as the agent sees them too. */
  const hostile = (end: string): string =>
    String.raw`
try() { name=$1; shift; if ( "$@" ) >/dev/null 2>&1; then echo "$name WON"; else echo "$name held"; fi; }
echo "whoami $(id -un)"
cat tracked.txt && echo "workspace reached"
echo "modes during $(stat -c %a ${closed}) $(stat -c %a ${mid})"
try list-closed ls ${closed}
try list-parent ls ${mid}
try sibling-file cat ${closed}/secret.txt
try sibling-dir cat ${closed}/private/key
try sibling-dir-list ls ${closed}/private
try group-sibling cat ${mid}/notes.txt
try write-parent touch ${mid}/planted
try chmod-parent chmod 777 ${mid}
${end}
`;

  const step = (run: string, extra: Record<string, string> = {}): Promise<StepResult> =>
    job.run('run', 'main', {
      inputs: { run, user: 'agent', ...extra },
      env: { GITHUB_WORKSPACE: workspace },
      cwd: workspace,
      wrap: runner.wrap(job.root),
      timeoutMs: 60000,
    });

  const expectHeld = (r: StepResult): void => {
    expect(r.stdout).toMatch(/^whoami cordon-agent-/m);
    expect(r.stdout).toContain('in the workspace');
    expect(r.stdout).toContain('workspace reached');
    // Opened for the step (o+x only): the test exercises the loan, not an open tree.
    expect(r.stdout).toContain('modes during 701 751');
    for (const name of [
      'list-closed',
      'list-parent',
      'sibling-file',
      'sibling-dir',
      'sibling-dir-list',
      'group-sibling',
      'write-parent',
      'chmod-parent',
    ])
      expect(r.stdout).toContain(`${name} held`);
    expect(r.stdout).not.toContain('WON');
    for (const secret of ['content-of-secret-9c1', 'content-of-key-4e7', 'content-of-notes-2b5'])
      expect(r.stdout).not.toContain(secret);
  };

  const expectModesBack = (): void => {
    expect(modeOf(closed).toString(8)).toBe('700');
    expect(modeOf(mid).toString(8)).toBe('750');
    expect(modeOf(job.root).toString(8)).toBe('755');
    expect(modeOf(join(closed, 'private')).toString(8)).toBe('700');
  };

  test('a command that succeeds: held, and every parent has its mode back', async () => {
    const r = await step(hostile('true'));
    expect(r.code).toBe(0);
    expectHeld(r);
    expectModesBack();
  }, 90000);

  test('a command that fails: held, and every parent has its mode back', async () => {
    const r = await step(hostile('exit 3'));
    expect(r.code).not.toBe(0);
    expect(r.outputs['exit-code']).toBe('3');
    expectHeld(r);
    expectModesBack();
  }, 90000);

  test('a command killed by the timeout: held, and every parent has its mode back', async () => {
    const r = await step(hostile("trap '' TERM\nfor i in $(seq 120); do sleep 1; done"), {
      'timeout-minutes': '0.1',
    });
    expect(r.code).not.toBe(0);
    expect(r.commands.find((c) => c.command === 'error')?.message).toContain('timed out');
    expect(finished(job)?.timedOut).toBe(true);
    expectHeld(r);
    expectModesBack();
  }, 90000);
});

suite('run without root or sudo: a setsid child that keeps writing does not hold the step', () => {
  let plain: TestUser;
  let job: Job;
  let survivor = 0;

  beforeAll(() => {
    plain = makeTestUser('cnosu', { sudo: false });
    job = new Job();
    chmodSync(job.root, 0o755);
  });

  afterAll(() => {
    if (survivor > 1 && alive(survivor)) process.kill(-survivor, 'SIGKILL');
    plain?.remove();
  });

  test('the step ends (the output stops being read 5 s after the command), says so, and the child is left as documented', async () => {
    const pidFile = join(job.root, 'survivor.pid');
    writeFileSync(pidFile, '', { mode: 0o666 });
    chmodSync(pidFile, 0o666);
    // The child leaves the process group, ignores SIGPIPE (so a closed pipe does not end it)
    // and writes for two minutes, longer than the harness waits for the step.
    const r = await job.run('run', 'main', {
      inputs: {
        run: `setsid sh -c 'trap "" PIPE; echo $$ > ${pidFile}; for i in $(seq 600); do echo tick; sleep 0.2; done' &\nsleep 1\necho command-done`,
      },
      wrap: plain.wrap(job.root),
      timeoutMs: 60000,
    });
    survivor = Number(readFileSync(pidFile, 'utf8').trim());
    // Not killed by the harness: the step ended of itself, well before the child would.
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('command-done');
    expect(r.stdout).toContain('tick');
    expect(
      r.commands.some(
        (c) => c.command === 'warning' && /left its process group and kept the output open/.test(c.message),
      ),
    ).toBe(true);
    expect(finished(job)).toMatchObject({ containment: 'process-group', exitCode: 0 });
    // "a process that leaves the process group (setsid) survives the step": it is still there.
    expect(survivor).toBeGreaterThan(1);
    expect(alive(survivor)).toBe(true);
    process.kill(-survivor, 'SIGKILL');
  }, 90000);
});
