/**
 * The root daemon's sockets against hostile local users, whole program: the daemon is root
 * (a hosted runner's sudo) in a network namespace, the other steps are an unprivileged
 * runner user, and a second unprivileged user stands for anyone else on the host (the
 * agent's own user among them). Root, network namespaces, nft, useradd and cgroup2 are
 * needed; under CI their absence fails loudly.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Job, type StepResult } from '../../src/devkit/run-action.js';
import { canUseNetns, run } from '../../src/devkit/netns.js';
import {
  CGROUP_SOCKET,
  CONTROL_SOCKET,
  LEDGER_SOCKET,
  fenceId,
  ledgerCopyPaths,
  stateDir,
} from '../../src/rootd/protocol.js';
import { cgroup2Mount } from '../../src/platform/cgroup2.js';
import { asUid, dig, World } from './egress-topology.js';
import { wrapAsUser } from '../harness/users.js';

const usable =
  canUseNetns() &&
  existsSync('/usr/sbin/nft') &&
  existsSync('/usr/sbin/useradd') &&
  cgroup2Mount() !== undefined;
if (!usable && process.env.CI === 'true')
  throw new Error('rootd-sockets e2e: needs root, nft, ip, useradd and a cgroup2 mount (CI=true)');
if (!usable) console.warn('rootd-sockets e2e skipped: needs root, nft, ip, useradd and cgroup2');
const suite = usable ? describe : describe.skip;

/**
 * As `user`: connects to `sock`, sends `data` (on stdin: an argument holds 128 KiB at most),
 * prints what comes back, or the connect error's code, or TIMEOUT when nothing comes within 4 s.
 */
function talk(user: string, sock: string, data: string, end = false): string {
  const script = `
    const c = require('net').connect(process.argv[1]);
    let out = '';
    const t = setTimeout(() => { console.log('TIMEOUT ' + out); process.exit(0); }, 4000);
    c.on('connect', () => c[process.argv[2] ? 'end' : 'write'](require('fs').readFileSync(0)));
    c.setEncoding('utf8');
    c.on('data', (d) => { out += d; });
    c.on('error', (e) => { clearTimeout(t); console.log(e.code); process.exit(0); });
    c.on('close', () => { clearTimeout(t); console.log('CLOSED ' + out); process.exit(0); });`;
  const r = spawnSync('runuser', ['-u', user, '--', process.execPath, '-e', script, sock, end ? 'end' : ''], {
    input: data,
    encoding: 'utf8',
    timeout: 10000,
  });
  return (r.stdout ?? '').trim();
}

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

suite('the root daemon against other local users and bad input', () => {
  const tag = process.pid % 100000;
  const user = `crsr${tag}`;
  const stranger = `crsx${tag}`;
  let w: World;
  let job: Job;
  let start: StepResult;
  let egress: StepResult;
  const sock = (name: string): string => join(stateDir(fenceId(job.runnerTemp)), name);
  const sockets = [CONTROL_SOCKET, LEDGER_SOCKET, CGROUP_SOCKET];
  const inputs = { 'allowed-domains': 'www.a.test', preset: 'none' };

  beforeAll(async () => {
    run(['useradd', '--no-create-home', '--shell', '/bin/sh', user]);
    run(['useradd', '--no-create-home', '--shell', '/bin/sh', stranger]);
    w = new World('s');
    await w.serve();
    job = new Job();
    chmodSync(job.root, 0o755);
    start = await job.run('start', 'main', { wrap: wrapAsUser(user, job.root) });
    egress = await job.run('egress', 'main', { inputs, wrap: w.runner.wrap, timeoutMs: 30000 });
  }, 90000);

  afterAll(async () => {
    await w?.destroy([fenceId(job.runnerTemp)]);
    run(['userdel', user], { allowFail: true });
    run(['userdel', stranger], { allowFail: true });
  });

  test("another user cannot connect to any socket (EACCES); they are the runner user's, 0600", () => {
    expect(start.code).toBe(0);
    expect(egress.code).toBe(0);
    const uid = Number(run(['id', '-u', user]).trim());
    for (const name of sockets) {
      const st = statSync(sock(name));
      expect({ name, mode: st.mode & 0o777, uid: st.uid }).toEqual({ name, mode: 0o600, uid });
      expect({ name, got: talk(stranger, sock(name), 'report\n') }).toEqual({
        name,
        got: 'EACCES',
      });
    }
    expect(statSync(ledgerCopyPaths(job.runnerTemp).copy).mode & 0o007).toBe(0);
    // The runner user still gets the report.
    expect(talk(user, sock(CONTROL_SOCKET), 'report\n')).toMatch(/^CLOSED \{"policy":"block"/);
  });

  test('bad lines to each socket get an error or are dropped; the daemon and its helper keep serving', async () => {
    const helper = helperPid(stateDir(fenceId(job.runnerTemp)));
    expect(helper).toBeGreaterThan(1);
    const bad = [
      'null\n',
      '42\n',
      '{"op":"join"}\n',
      '{"op":"join","pid":1}\n',
      '{"op":\n',
      'x'.repeat(8192) + '\n',
    ];
    for (const line of bad) {
      const got = talk(user, sock(CGROUP_SOCKET), line);
      expect({ line: line.slice(0, 20), got: got.startsWith('CLOSED {"error":') }).toEqual({
        line: line.slice(0, 20),
        got: true,
      });
      talk(user, sock(LEDGER_SOCKET), line, true);
      expect(talk(user, sock(CONTROL_SOCKET), line)).toMatch(/^CLOSED \{"policy"/);
    }
    // The helper is the same process, and still makes run's cgroup.
    expect(helperPid(stateDir(fenceId(job.runnerTemp)))).toBe(helper);
    const r = await job.run('run', 'main', {
      inputs: { run: 'cat /proc/self/cgroup' },
      wrap: wrapAsUser(user, job.root),
      timeoutMs: 30000,
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^0::\/cordon-run-\d+-[0-9a-f]{8}$/m);
  }, 60000);

  test.each(['fifo', 'symlink to a fifo'])(
    'a %s at agent.pid does not block the helper',
    async (kind) => {
      const pidFile = join(job.runnerTemp, 'cordon', 'agent.pid');
      const fifo = join(job.runnerTemp, 'cordon', 'agent.fifo');
      rmSync(pidFile, { force: true });
      rmSync(fifo, { force: true });
      if (kind === 'fifo') run(['runuser', '-u', user, '--', 'mkfifo', pidFile]);
      else {
        run(['runuser', '-u', user, '--', 'mkfifo', fifo]);
        symlinkSync(fifo, pidFile);
      }
      // A refused name has the helper look up who asked, reading agent.pid.
      const uid = Number(run(['id', '-u', user]).trim());
      const gid = Number(run(['id', '-g', user]).trim());
      expect(['NXDOMAIN', 'REFUSED']).toContain(
        dig(asUid(w.runner, uid, gid), `${kind.length}.evil.test`).status,
      );
      await new Promise((r) => setTimeout(r, 500));
      // Still answering at once: its one thread is not waiting on the FIFO.
      expect(talk(user, sock(CGROUP_SOCKET), '{"op":"join","pid":1}\n')).toMatch(/^CLOSED \{"error":/);
      rmSync(pidFile, { force: true });
      rmSync(fifo, { force: true });
    },
    30000,
  );

  test('a 300 KiB line of multi-byte characters is refused by the ledger copy', () => {
    const copy = ledgerCopyPaths(job.runnerTemp).copy;
    const before = statSync(copy).size;
    // 102,400 characters (under 256 Ki), 307,200 bytes (over 256 KiB).
    const line = JSON.stringify({ big: '€'.repeat(102400) }) + '\n';
    talk(user, sock(LEDGER_SOCKET), line, true);
    expect(statSync(copy).size).toBe(before);
    expect(readFileSync(join(stateDir(fenceId(job.runnerTemp)), 'daemon.log'), 'utf8')).toContain(
      'a line longer than 262144 bytes was dropped',
    );
  });

  test("a killed root helper is recorded as tampering and fails egress's post", async () => {
    const helper = helperPid(stateDir(fenceId(job.runnerTemp)));
    expect(helper).toBeGreaterThan(1);
    process.kill(helper as number, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 500));
    const post = await job.run('egress', 'post', { inputs, state: egress.state, wrap: w.runner.wrap });
    expect(post.code).not.toBe(0);
    expect(post.stdout).toContain("the daemon's root helper was killed (SIGKILL)");
  }, 30000);
});
