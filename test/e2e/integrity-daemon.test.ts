/**
 * Integrity with the egress daemon running, as on a hosted runner where every step but the
 * daemon is the unprivileged runner user: `run` (not root) gets its cgroup from the
 * daemon's root helper, and everything the command left is gone when it returns; every
 * step's ledger lines reach the daemon's root-owned copy, the summary is rendered from
 * that copy and names the line the agent edited; each post step checks its own head.
 * Root, network namespaces and cgroup2 are needed; under CI their absence fails loudly.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseLedgerText } from '../../src/ledger/ledger.js';
import { compareWithCopy } from '../../src/ledger/verify.js';
import { Job, type StepResult } from '../../src/devkit/run-action.js';
import { canUseNetns, run } from '../../src/devkit/netns.js';
import { CGROUP_SOCKET, fenceId, ledgerCopyPaths, stateDir } from '../../src/rootd/protocol.js';
import { cgroup2Mount } from '../../src/platform/cgroup2.js';
import { World } from './egress-topology.js';
import { alive } from '../harness/proc.js';
import { wrapAsUser } from '../harness/users.js';

const mount = cgroup2Mount();
const usable =
  canUseNetns() && existsSync('/usr/sbin/nft') && existsSync('/usr/sbin/useradd') && mount !== undefined;
if (!usable && process.env.CI === 'true')
  throw new Error('integrity-daemon e2e: needs root, nft, ip, useradd and a cgroup2 mount (CI=true)');
if (!usable) console.warn('integrity-daemon e2e skipped: needs root, nft, ip, useradd and cgroup2');
const suite = usable ? describe : describe.skip;

suite('integrity with the egress daemon, steps as an unprivileged runner user', () => {
  const user = `cint${process.pid % 100000}`;
  let w: World;
  let job: Job;
  let start: StepResult;
  let egress: StepResult;
  let runStep: StepResult;
  const asRunner = (): string[] => wrapAsUser(user, job.root);
  const ledgerPath = (): string => join(job.runnerTemp, 'cordon', 'ledger.jsonl');
  const events = (text: string): { type: string; action: string; data: Record<string, unknown> }[] =>
    parseLedgerText(text).flatMap((l) => (l.event ? [l.event] : []));
  const ours = (): string[] => readdirSync(mount as string).filter((d) => d.startsWith('cordon-run-'));
  const before = usable ? ours() : [];

  beforeAll(async () => {
    run(['useradd', '--no-create-home', '--shell', '/bin/sh', user]);
    w = new World('i');
    await w.serve();
    job = new Job();
    chmodSync(job.root, 0o755);
    start = await job.run('start', 'main', { wrap: asRunner() });
    // The daemon is root (a hosted runner's sudo); the fence is in the runner namespace.
    egress = await job.run('egress', 'main', {
      inputs: { 'allowed-domains': 'www.a.test', preset: 'none' },
      wrap: w.runner.wrap,
      timeoutMs: 30000,
    });
    const ledger = ledgerPath();
    runStep = await job.run('run', 'main', {
      inputs: {
        run: [
          'cat /proc/self/cgroup',
          'setsid nohup sleep 600 >/dev/null 2>&1 &',
          'echo "sleeper $!"',
          // The agent rewrites the fence's record in the file it can write.
          `sed -i 's/"policy":"block"/"policy":"audit"/' ${ledger}`,
        ].join('\n'),
      },
      wrap: asRunner(),
      timeoutMs: 30000,
    });
  }, 90000);

  afterAll(async () => {
    await w?.destroy([fenceId(job.runnerTemp)]);
    run(['userdel', user], { allowFail: true });
  });

  test('run, not root, is contained in a cgroup the daemon made; what it left is killed and the cgroup removed', () => {
    expect(start.code).toBe(0);
    expect(egress.code).toBe(0);
    expect(runStep.stdout).toMatch(/^0::\/cordon-run-\d+-[0-9a-f]{8}$/m);
    const sleeper = Number(/sleeper (\d+)/.exec(runStep.stdout)?.[1]);
    expect(sleeper).toBeGreaterThan(1);
    expect(alive(sleeper)).toBe(false);
    const ev = events(readFileSync(ledgerPath(), 'utf8'));
    expect(ev.find((e) => e.type === 'run.started')?.data).toMatchObject({
      containment: 'cgroup',
      containmentBy: 'egress daemon',
    });
    expect(ev.find((e) => e.type === 'run.finished')?.data).toMatchObject({ containment: 'cgroup' });
    expect(Number(ev.find((e) => e.type === 'run.finished')?.data.processesAlive)).toBeGreaterThanOrEqual(1);
    expect(ours().filter((d) => !before.includes(d))).toEqual([]);
  });

  test("every step's lines reach the daemon's root-owned copy, which keeps what the agent edited in the file", () => {
    const copy = readFileSync(ledgerCopyPaths(job.runnerTemp).copy, 'utf8');
    const types = events(copy).map((e) => e.type);
    expect(types.slice(0, 2)).toEqual(['run.recorded', 'egress.started']);
    expect(types).toEqual(expect.arrayContaining(['run.started', 'run.finished']));
    expect(events(copy).find((e) => e.type === 'egress.started')?.data.policy).toBe('block');
    expect(
      events(readFileSync(ledgerPath(), 'utf8')).find((e) => e.type === 'egress.started')?.data.policy,
    ).toBe('audit');
  });

  test("egress's post finds the line its main wrote is gone; start's post renders from the copy and names the edit", async () => {
    const post = await job.run('egress', 'post', {
      inputs: { 'allowed-domains': 'www.a.test', preset: 'none', 'fail-on-tamper': 'false' },
      state: egress.state,
      wrap: w.runner.wrap,
    });
    const checked = events(readFileSync(ledgerPath(), 'utf8')).find(
      (e) => e.action === 'egress' && (e.type === 'ledger.tampered' || e.type === 'ledger.verified'),
    );
    expect(checked?.type).toBe('ledger.tampered');
    expect(String(checked?.data.details)).toContain('no longer in the ledger');
    expect(post.stdout).toContain('the run ledger was altered after this step wrote to it');

    const summary = await job.run('start', 'post', { state: start.state, wrap: asRunner() });
    expect(summary.summary).toContain('RECORD ALTERED');
    expect(summary.summary).toContain("Rendered from the egress daemon's root-owned copy");
    expect(summary.summary).toMatch(
      /line 2 of the daemon's copy \(egress\.started, as egress\) is not in the ledger file/,
    );
    expect(summary.summary).toMatch(
      /egress post \(line \d+\): the last line egress wrote is no longer in the ledger/,
    );
    expect(summary.code).not.toBe(0);
  }, 60000);
});

/**
 * The command, as the runner user inside run's cgroup: starts a shell held exactly as run
 * holds its own and asks the daemon's helper to move it (out of run's cgroup); sends the
 * daemon's ledger copy two forged lines (one chained to nothing, one chained to the file's
 * last line, as if egress wrote it); then opens more connections than the socket keeps.
 */
const INSIDE = `
const net = require('net'), fs = require('fs'), cp = require('child_process'), c = require('crypto');
const [cgsock, ledsock, ledger, out] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ask = (sock, text) => new Promise((res) => {
  const s = net.connect(sock); let d = '';
  const t = setTimeout(() => s.destroy(), 5000);
  s.setEncoding('utf8'); s.on('error', (e) => { d += 'error ' + e.code; });
  s.on('connect', () => s.write(text));
  s.on('data', (x) => { d += x; if (d.includes('\\n')) s.end(); });
  s.on('close', () => { clearTimeout(t); res(d); });
  if (!text.startsWith('{"op"')) s.on('connect', () => setTimeout(() => s.end(), 200));
});
(async () => {
  const r = {};
  const held = cp.spawn('/bin/sh', ['-c', 'kill -STOP $$; exec "$@"', 'sh', 'sleep', '30'], { stdio: 'ignore' });
  for (let i = 0; i < 250; i++) {
    const st = fs.readFileSync('/proc/' + held.pid + '/stat', 'utf8');
    if (st.slice(st.lastIndexOf(')') + 2)[0] === 'T') break;
    await sleep(20);
  }
  r.join = await ask(cgsock, JSON.stringify({ op: 'join', pid: held.pid }) + '\\n');
  r.heldCgroup = fs.readFileSync('/proc/' + held.pid + '/cgroup', 'utf8');
  held.kill('SIGKILL');
  const lines = fs.readFileSync(ledger, 'utf8').split('\\n').filter(Boolean);
  const last = c.createHash('sha256').update(lines[lines.length - 1], 'utf8').digest('hex');
  const time = new Date().toISOString();
  r.sent = await ask(ledsock, [
    { v: 1, time, action: 'start', type: 'commits.observed', data: {}, prev: 'forged-by-the-agent' },
    { v: 1, time, action: 'egress', type: 'egress.report', data: { runCgroups: [] }, prev: last },
  ].map((e) => JSON.stringify(e) + '\\n').join(''));
  const conns = [];
  let closed = 0;
  for (let i = 0; i < 72; i++) {
    const s = net.connect(ledsock);
    s.on('error', () => undefined);
    s.on('close', () => closed++);
    conns.push(s);
  }
  await sleep(1500);
  r.closedByServer = closed;
  for (const s of conns) s.destroy();
  fs.writeFileSync(out, JSON.stringify(r));
})();
`;

/** Asks the cgroup helper, as `user`, to move `pid`; returns its answer. */
function askHelper(sock: string, user: string, pid: number): string {
  return run([
    'runuser',
    '-u',
    user,
    '--',
    process.execPath,
    '-e',
    `
    const c = require('net').connect(${JSON.stringify(sock)});
    c.on('connect', () => c.write(JSON.stringify({ op: 'join', pid: ${pid} }) + '\\n'));
    c.setEncoding('utf8'); c.on('data', (d) => { process.stdout.write(d); c.destroy(); });`,
  ]);
}

suite('the cgroup socket and an agent that kills run', () => {
  const user = `cink${process.pid % 100000}`;
  let w: World;
  let job: Job;
  let startState: Record<string, string> = {};
  let egressState: Record<string, string> = {};
  const asRunner = (): string[] => wrapAsUser(user, job.root);
  const ledgerPath = (): string => join(job.runnerTemp, 'cordon', 'ledger.jsonl');
  const events = (text: string): { type: string }[] =>
    parseLedgerText(text).flatMap((l) => (l.event ? [l.event] : []));

  beforeAll(async () => {
    run(['useradd', '--no-create-home', '--shell', '/bin/sh', user]);
    w = new World('k');
    await w.serve();
    job = new Job();
    chmodSync(job.root, 0o755);
  }, 60000);

  afterAll(async () => {
    await w?.destroy([fenceId(job.runnerTemp)]);
    run(['userdel', user], { allowFail: true });
  });

  test("the helper moves only run's held shell: another process of the user is refused", async () => {
    const started = await job.run('start', 'main', { wrap: asRunner() });
    expect(started.code).toBe(0);
    const egress = await job.run('egress', 'main', {
      inputs: { 'allowed-domains': 'www.a.test', preset: 'none' },
      wrap: w.runner.wrap,
      timeoutMs: 30000,
    });
    expect(egress.code).toBe(0);
    const sock = join(stateDir(fenceId(job.runnerTemp)), CGROUP_SOCKET);
    const uid = Number(run(['id', '-u', user]).trim());
    const gid = Number(run(['id', '-g', user]).trim());
    const target = spawn('sleep', ['30'], { stdio: 'ignore', uid, gid });
    try {
      const sleeper = target.pid as number;
      const ask = (pid: number): string =>
        run([
          'runuser',
          '-u',
          user,
          '--',
          process.execPath,
          '-e',
          `
          const c = require('net').connect(${JSON.stringify(sock)});
          c.on('connect', () => c.write(JSON.stringify({ op: 'join', pid: ${pid} }) + '\\n'));
          c.setEncoding('utf8'); c.on('data', (d) => { process.stdout.write(d); c.destroy(); });`,
        ]);
      expect(ask(sleeper)).toContain('is not stopped');
      // Root's own process (this test).
      expect(ask(process.pid)).toContain("is not a runner user's");
      expect(alive(sleeper)).toBe(true);
      expect(readFileSync(`/proc/${sleeper}/cgroup`, 'utf8')).not.toContain('cordon-run-');
    } finally {
      target.kill('SIGKILL');
    }
    startState = started.state;
    egressState = egress.state;
  }, 60000);

  test("hostile, from inside run's cgroup: the helper will not move a held shell there nor one of the proxy's user; lines sent to the copy's socket are judged; it keeps 64 connections", async () => {
    const sock = join(stateDir(fenceId(job.runnerTemp)), CGROUP_SOCKET);
    const copy = ledgerCopyPaths(job.runnerTemp);
    const inside = join(job.root, 'inside.cjs');
    writeFileSync(inside, INSIDE);
    const out = join(job.workspace, 'inside.json');
    const r = await job.run('run', 'main', {
      inputs: {
        run: `"${process.execPath}" "${inside}" "${sock}" "${copy.socket}" "${ledgerPath()}" "${out}"`,
      },
      wrap: asRunner(),
      timeoutMs: 30000,
    });
    expect(r.code).toBe(0);
    const seen = JSON.parse(readFileSync(out, 'utf8')) as Record<string, string | number>;
    // The held shell stays where it was, in run's cgroup.
    expect(seen.join).toContain('is already in a cgroup made for run');
    expect(seen.heldCgroup).toMatch(/^0::\/cordon-run-\d+-[0-9a-f]{8}$/m);
    // The socket kept at most 64 of the agent's 72 connections (run's own, if open, among them).
    expect(Number(seen.closedByServer)).toBeGreaterThanOrEqual(8);
    expect(Number(seen.closedByServer)).toBeLessThan(72);

    // Both forged lines reached the copy; run's lines after the agent's flood reached it too.
    const copyText = readFileSync(copy.copy, 'utf8');
    expect(copyText).toContain('forged-by-the-agent');
    expect(events(copyText).filter((e) => e.type === 'run.finished')).toHaveLength(1);
    // Judged as the summary does: neither is Cordon's, and the verdict is altered.
    const judged = compareWithCopy(
      parseLedgerText(readFileSync(ledgerPath(), 'utf8')),
      parseLedgerText(copyText),
      { nonce: startState.nonce },
    );
    const said = judged.details.join('\n');
    expect(said).toMatch(
      /\(commits\.observed, as start\) does not fit its chain: sent by someone other than a Cordon step/,
    );
    expect(said).toMatch(
      /\(egress\.report, as egress\) does not fit its chain: sent by someone other than a Cordon step/,
    );
    expect(judged.untrusted.size).toBe(2);

    // A held shell of the proxy's user (made here, as root): refused, and left where it is.
    const dnsUid = Number(run(['id', '-u', 'cordon-dns']).trim());
    const dnsGid = Number(run(['id', '-g', 'cordon-dns']).trim());
    const proxyHeld = spawn('/bin/sh', ['-c', 'kill -STOP $$; exec "$@"', 'sh', 'sleep', '30'], {
      stdio: 'ignore',
      uid: dnsUid,
      gid: dnsGid,
    });
    try {
      const pid = proxyHeld.pid as number;
      for (let i = 0; i < 100 && !/\) T /.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); i++)
        await new Promise((res) => setTimeout(res, 20));
      expect(askHelper(sock, user, pid)).toContain("is not a runner user's");
      expect(readFileSync(`/proc/${pid}/cgroup`, 'utf8')).not.toContain('cordon-run-');
    } finally {
      proxyHeld.kill('SIGKILL');
    }
  }, 60000);

  // docs/integrity.md: "Everything in the cgroup stays root's, so nothing inside can move out
  // or lock run out". The command tries each way out a cgroup v2 offers its own user.
  test("hostile, from inside run's cgroup: the command cannot move itself out, make a child cgroup, freeze or limit it; what it left dies", async () => {
    const m = mount as string;
    const r = await job.run('run', 'main', {
      inputs: {
        run: String.raw`
try() { name=$1; shift; if ( "$@" ) >/dev/null 2>&1; then echo "$name WON"; else echo "$name held"; fi; }
cg=$(sed -n 's/^0:://p' /proc/self/cgroup)
runcg=$(sed -n 's/^0:://p' /proc/$PPID/cgroup)
echo "cgroup $cg"
echo "run-cgroup $runcg"
for f in "${m}/cgroup.procs" "${m}$runcg/cgroup.procs" "${m}$cg/cgroup.freeze" "${m}$cg/cgroup.subtree_control" "${m}$cg/cgroup.max.descendants"; do
  [ -e "$f" ] && echo "exists $f"
done
try move-to-root sh -c "echo $$ > ${m}/cgroup.procs"
try move-to-run sh -c "echo $$ > ${m}$runcg/cgroup.procs"
try child-cgroup mkdir "${m}$cg/escape"
try freeze sh -c "echo 1 > ${m}$cg/cgroup.freeze"
try subtree sh -c "echo +pids > ${m}$cg/cgroup.subtree_control"
try descendants sh -c "echo 0 > ${m}$cg/cgroup.max.descendants"
echo "after $(sed -n 's/^0:://p' /proc/self/cgroup)"
setsid nohup sleep 600 >/dev/null 2>&1 &
echo "sleeper $!"
`,
      },
      wrap: asRunner(),
      timeoutMs: 30000,
    });
    expect(r.code).toBe(0);
    const cg = /^cgroup (\/cordon-run-\d+-[0-9a-f]{8})$/m.exec(r.stdout)?.[1];
    expect(cg).toBeDefined();
    const runCg = /^run-cgroup (\S+)$/m.exec(r.stdout)?.[1];
    expect(runCg).toBeDefined();
    expect(runCg).not.toBe(cg);
    // The targets were there, so "held" means held.
    for (const f of [`${m}/cgroup.procs`, `${m}${runCg}/cgroup.procs`, `${m}${cg}/cgroup.freeze`])
      expect(r.stdout).toContain(`exists ${f}`);
    for (const attack of [
      'move-to-root',
      'move-to-run',
      'child-cgroup',
      'freeze',
      'subtree',
      'descendants',
    ]) {
      expect(r.stdout).toContain(`${attack} held`);
      expect(r.stdout).not.toContain(`${attack} WON`);
    }
    expect(r.stdout).toContain(`after ${cg}`);
    const sleeper = Number(/^sleeper (\d+)$/m.exec(r.stdout)?.[1]);
    expect(sleeper).toBeGreaterThan(1);
    expect(alive(sleeper)).toBe(false);
    expect(existsSync(`${m}${cg}`)).toBe(false);
  }, 60000);

  test("the agent forges run's verification, then kills run: its cgroup dies with run, and the record says so", async () => {
    const ledger = ledgerPath();
    const forge = [
      // A correctly chained ledger.verified and run.finished, as if run had written them.
      `for t in ledger.verified run.finished; do`,
      `  prev=$(tail -n 1 ${ledger} | tr -d '\\n' | sha256sum | cut -d' ' -f1)`,
      `  printf '{"v":1,"time":"2026-11-25T00:00:00.000Z","action":"run","type":"%s","data":{"by":"run","upTo":3,"duringRun":[],"exitCode":0},"prev":"%s"}\\n' "$t" "$prev" >> ${ledger}`,
      `done`,
      'setsid nohup sleep 600 >/dev/null 2>&1 &',
      // run dies before it could forward output: the pid goes to a file.
      'echo $! > sleeper.pid',
      'kill -9 $PPID',
      'sleep 600',
    ].join('\n');
    const r = await job.run('run', 'main', { inputs: { run: forge }, wrap: asRunner(), timeoutMs: 30000 });
    expect(r.code).not.toBe(0);
    const sleeper = Number(readFileSync(join(job.workspace, 'sleeper.pid'), 'utf8').trim());
    expect(sleeper).toBeGreaterThan(1);
    let gone = false;
    for (let i = 0; i < 50 && !gone; i++) {
      gone = !alive(sleeper);
      if (!gone) await new Promise((res) => setTimeout(res, 100));
    }
    expect(gone).toBe(true);
    const post = await job.run('egress', 'post', {
      inputs: { 'allowed-domains': 'www.a.test', preset: 'none' },
      state: egressState,
      wrap: w.runner.wrap,
    });
    expect(post.code).not.toBe(0);
    expect(post.stdout).toContain("run's process went away while its command ran");
    const summary = await job.run('start', 'post', { state: startState, wrap: asRunner() });
    expect(summary.summary).toContain('RECORD ALTERED');
    expect(summary.summary).toContain("run's process went away while its command ran");
    expect(summary.summary).toContain('does not fit its chain: sent by someone other than a Cordon step');
  }, 60000);
});
