/**
 * Hostile whole-program runs of start -> run -> start's post, without the egress daemon:
 * the command runs as the runner user (`user: runner`), kills run's node process and
 * appends closing lines that chain correctly, as run would have written them. start's post
 * must not call that record intact. Needs root for the cgroup; without it the test fails
 * loudly under CI and is skipped otherwise.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { chmodSync, existsSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseLedgerText } from '../../src/ledger/ledger.js';
import { Job } from '../../src/devkit/run-action.js';
import { cgroup2Mount } from '../../src/platform/cgroup2.js';
import { canMakeUsers, makeTestUser, type TestUser } from '../harness/users.js';

const root = process.getuid?.() === 0;
const mount = cgroup2Mount();
if ((!root || !mount) && process.env.CI === 'true')
  throw new Error('recorder-killed e2e needs root and a cgroup2 mount under CI');
if (!root || !mount)
  console.log('recorder-killed e2e skipped: not root or no cgroup2 mount, and CI is unset');
const maybe = root && mount ? describe : describe.skip;

const jobs: Job[] = [];
const cgroupsBefore = new Set(mount ? ours() : []);
afterAll(async () => {
  for (const j of jobs) j.remove();
  // run was killed, so nothing removed its cgroup: end what is left in it and remove it.
  for (const name of ours().filter((d) => !cgroupsBefore.has(d))) {
    const dir = join(mount as string, name);
    try {
      writeFileSync(join(dir, 'cgroup.kill'), '1');
    } catch {
      // Already gone.
    }
    for (let i = 0; i < 50; i++) {
      try {
        rmdirSync(dir);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
});

function ours(): string[] {
  return readdirSync(mount as string).filter((d) => d.startsWith('cordon-run-'));
}

function newJob(): Job {
  const j = new Job({});
  jobs.push(j);
  chmodSync(j.root, 0o1777);
  return j;
}

function ledgerFile(job: Job): string {
  return join(job.runnerTemp, 'cordon', 'ledger.jsonl');
}

/**
 * What the command does once run is dead. `all`: appends every line run writes when its
 * command ends (ledger.verified, run.finished, run.sealed), copied from `model`, each chained
 * to the one before; `unsealed`: the same without the seal; `truncate`: removes its window
 * (run.started on) and leaves a key file of its own for start's post to find.
 */
const FORGE = `
const { createHash, generateKeyPairSync } = require('node:crypto');
const { readFileSync, appendFileSync, writeFileSync, rmSync } = require('node:fs');
const { dirname, join } = require('node:path');
const [file, modelFile, mode] = process.argv.slice(2);
const hash = (s) => createHash('sha256').update(s, 'utf8').digest('hex');
const lines = readFileSync(file, 'utf8').split('\\n').filter(Boolean);
const startedAt = lines.findIndex((l) => JSON.parse(l).type === 'run.started');
if (mode === 'truncate') {
  writeFileSync(file, lines.slice(0, startedAt).map((l) => l + '\\n').join(''));
  const { privateKey } = generateKeyPairSync('ed25519');
  const key = join(dirname(file), 'seal.key');
  rmSync(key, { force: true });
  writeFileSync(key, JSON.stringify({ window: 1, privateKey: privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64') }));
  process.exit(0);
}
const model = readFileSync(modelFile, 'utf8').split('\\n').filter(Boolean).map((l) => JSON.parse(l));
let prev = hash(lines[lines.length - 1]);
const out = [];
for (const m of model.slice(model.findIndex((e) => e.type === 'run.started') + 1)) {
  if (mode === 'unsealed' && m.type === 'run.sealed') continue;
  const data = m.type === 'ledger.verified' ? { by: 'run', upTo: startedAt + 1, duringRun: [] } : m.data;
  const raw = JSON.stringify({ ...m, time: new Date().toISOString(), data, prev });
  out.push(raw);
  prev = hash(raw);
}
appendFileSync(file, out.map((l) => l + '\\n').join(''));
`;

/** The command: find run's node process above it, SIGKILL it, then forge its record. */
function killAndForge(job: Job, model: string, mode: string): string {
  const forge = join(job.root, 'forge.cjs');
  writeFileSync(forge, FORGE);
  const done = join(job.root, 'forged');
  return [
    'exec >/dev/null 2>&1',
    'P=$PPID',
    'for i in 1 2 3 4 5; do grep -q "run/main.js" /proc/$P/cmdline && break; P=$(awk \'{print $4}\' /proc/$P/stat); done',
    'kill -9 "$P"',
    'for i in $(seq 100); do [ -d /proc/$P ] || break; sleep 0.05; done',
    `"${process.execPath}" "${forge}" "$RUNNER_TEMP/cordon/ledger.jsonl" "${model}" ${mode}`,
    `touch "${done}"`,
  ].join('\n');
}

async function waitFor(path: string): Promise<void> {
  for (let i = 0; i < 200 && !existsSync(path); i++) await new Promise((r) => setTimeout(r, 50));
  expect(existsSync(path)).toBe(true);
}

maybe('a recorder that dies, as whole programs', () => {
  test.each([
    ['appends every closing line run writes, a copied seal too', 'all', 'its signature is not run'],
    ['appends the closing lines without a seal', 'unsealed', 'run never sealed it'],
    ['removes its window and leaves a key of its own', 'truncate', 'is not the one the last seal names'],
  ])(
    'run killed by its command (user: runner), which then %s: post never says Record intact and fails',
    async (_what, mode, detail) => {
      // A clean job first: the lines run writes when it ends, for the forger to copy.
      const clean = newJob();
      const cleanStart = await clean.run('start', 'main');
      const cleanRun = await clean.run('run', 'main', { inputs: { run: 'true', user: 'runner' } });
      expect(cleanRun.code).toBe(0);
      const cleanPost = await clean.run('start', 'post', { state: cleanStart.state });
      expect(cleanPost.code).toBe(0);
      expect(cleanPost.summary).toContain('Record intact');
      const model = join(clean.root, 'model.jsonl');
      writeFileSync(model, readFileSync(ledgerFile(clean), 'utf8'));
      // report, given start's seal-key output, finds the clean record intact too.
      const cleanReport = await clean.run('report', 'main', {
        inputs: { 'seal-key': cleanStart.outputs['seal-key'] },
      });
      expect([cleanReport.code, cleanReport.outputs.verdict]).toEqual([0, 'intact']);

      const job = newJob();
      const start = await job.run('start', 'main');
      expect(start.code).toBe(0);
      const run = await job.run('run', 'main', {
        inputs: { run: killAndForge(job, model, mode), user: 'runner' },
      });
      // SIGKILLed: the step has no exit code.
      expect(run.code).toBeNull();
      await waitFor(join(job.root, 'forged'));
      // The forged lines chain and close the window as run's would.
      const types = parseLedgerText(readFileSync(ledgerFile(job), 'utf8')).map((l) => l.event?.type);
      const modelTypes = parseLedgerText(readFileSync(model, 'utf8')).map((l) => l.event?.type);
      const expected = {
        all: modelTypes,
        unsealed: modelTypes.filter((t) => t !== 'run.sealed'),
        truncate: ['run.recorded'],
      };
      expect(types).toEqual(expected[mode as keyof typeof expected]);

      const post = await job.run('start', 'post', { state: start.state });
      expect(post.summary).not.toContain('Record intact');
      expect(post.summary).toContain('RECORD ALTERED while the agent ran');
      expect(post.summary).toContain('cannot be trusted');
      expect(post.summary).toContain(detail);
      // What the forger wrote as run's is not rendered as Cordon's.
      expect(post.summary).not.toMatch(/\| run \| (ledger\.verified|run\.finished|run\.sealed) \|/);
      expect(post.code).not.toBe(0);
      expect(post.stdout + post.stderr).toContain('the run ledger was altered');

      const lenient = await job.run('start', 'post', {
        state: start.state,
        inputs: { 'fail-on-tamper': 'false' },
      });
      expect(lenient.code).toBe(0);
      expect(lenient.summary).not.toContain('Record intact');

      // report, with start's seal-key output (the composite wires it), is not fooled either:
      // the attribution.json an upload step takes says altered, and the step fails.
      const report = await job.run('report', 'main', { inputs: { 'seal-key': start.outputs['seal-key'] } });
      expect(report.outputs.verdict).toBe('altered');
      expect(report.code).not.toBe(0);
      const attribution = readFileSync(report.outputs['attribution-path'], 'utf8');
      expect(attribution).toContain('cannot be trusted');
    },
    90000,
  );
});

/**
 * The command (as the runner user, run not root, as on a hosted runner) hunts for the seal
 * key: the key file, every regular file run and its ancestors hold open (a deleted one too),
 * their environments and command lines, and their memory; then kills run and writes run's
 * closing lines, sealed with whatever key it found (a fresh one of its own if none).
 */
const HUNT = `
const { createHash, createPrivateKey, generateKeyPairSync, sign } = require('node:crypto');
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');
const [file, out] = process.argv.slice(2);
const seen = [];
const grab = (what, f) => { try { seen.push('== ' + what, f()); } catch (e) { seen.push('== ' + what + ' refused: ' + e.code); } };
grab('key file', () => fs.readFileSync(file.replace(/ledger\\.jsonl$/, 'seal.key'), 'utf8'));
grab('folder', () => fs.readdirSync(file.replace(/\\/ledger\\.jsonl$/, '')).join(' '));
let p = process.ppid, runPid = 0, mem = 'not tried';
for (let i = 0; i < 8 && p > 1; i++) {
  const cmd = fs.readFileSync('/proc/' + p + '/cmdline', 'utf8');
  seen.push('== cmdline ' + p, cmd);
  grab('environ ' + p, () => fs.readFileSync('/proc/' + p + '/environ', 'utf8'));
  let fds = [];
  try { fds = fs.readdirSync('/proc/' + p + '/fd'); } catch (e) { seen.push('== fds ' + p + ' refused: ' + e.code); }
  for (const fd of fds) {
    const path = '/proc/' + p + '/fd/' + fd;
    try { if (!fs.statSync(path).isFile()) continue; } catch { continue; }
    grab('fd ' + path + ' -> ' + (() => { try { return fs.readlinkSync(path); } catch { return '?'; } })(), () => fs.readFileSync(path, 'utf8').slice(0, 1 << 20));
  }
  if (cmd.includes('run/main.js')) { runPid = p; break; }
  p = Number(fs.readFileSync('/proc/' + p + '/stat', 'utf8').split(') ')[1].split(' ')[1]);
}
if (runPid) {
  // Its memory: one byte of its first readable mapping is enough to know whether it can be read.
  const first = fs.readFileSync('/proc/' + runPid + '/maps', 'utf8').split('\\n').find((l) => / r/.test(l));
  try {
    const fd = fs.openSync('/proc/' + runPid + '/mem', 'r');
    fs.readSync(fd, Buffer.alloc(1), 0, 1, Number.parseInt(first.split('-')[0], 16));
    mem = 'read';
  } catch (e) { mem = 'refused: ' + e.code; }
}
fs.writeFileSync(out, seen.join('\\n') + '\\n== mem ' + mem + '\\n');
const found = /"window":(\\d+),"privateKey":"([A-Za-z0-9+/=]+)"/.exec(seen.join('\\n'));
const key = found
  ? createPrivateKey({ key: Buffer.from(found[2], 'base64'), format: 'der', type: 'pkcs8' })
  : generateKeyPairSync('ed25519').privateKey;
fs.writeFileSync(out + '.found', found ? 'found' : 'none');
if (runPid) { process.kill(runPid, 'SIGKILL'); for (let i = 0; i < 100 && fs.existsSync('/proc/' + runPid); i++) execFileSync('sleep', ['0.05']); }
const hash = (t) => createHash('sha256').update(t, 'utf8').digest('hex');
const lines = fs.readFileSync(file, 'utf8').split('\\n').filter(Boolean);
const upTo = lines.findIndex((l) => JSON.parse(l).type === 'run.started') + 1;
let prev = hash(lines[lines.length - 1]);
const append = (type, data) => {
  const raw = JSON.stringify({ v: 1, time: new Date().toISOString(), action: 'run', type, data, prev });
  fs.appendFileSync(file, raw + '\\n');
  prev = hash(raw);
};
append('ledger.verified', { by: 'run', upTo, duringRun: [] });
append('run.finished', { exitCode: 0, processesAlive: 0, ledgerIntact: true });
const next = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
const msg = 'cordon run.sealed v1\\nwindow 1\\nprev ' + prev + '\\nnext ' + next + '\\n';
append('run.sealed', { window: 1, next, signature: sign(null, Buffer.from(msg), key).toString('base64') });
fs.writeFileSync(out + '.done', '');
`;

const usersOk = canMakeUsers();
if (!usersOk && process.env.CI === 'true')
  throw new Error('recorder-killed e2e needs root to make a runner user');
(usersOk ? describe : describe.skip)('the seal key while the command runs (run not root)', () => {
  let user: TestUser;
  beforeAll(() => {
    user = makeTestUser('cdseal', { sudo: false });
  });
  afterAll(() => user?.remove());

  test('hostile: the command finds no key (file, open files, environments, command lines, memory where Yama guards it); its forged seal is caught', async () => {
    const job = new Job({});
    jobs.push(job);
    const as = (): string[] => user.wrap(job.root);
    const start = await job.run('start', 'main', { wrap: as() });
    expect(start.code).toBe(0);
    // The key run will take: what the command must not find, in any form.
    const keyText = readFileSync(join(job.runnerTemp, 'cordon', 'seal.key'), 'utf8');
    const privateKey = (JSON.parse(keyText) as { privateKey: string }).privateKey;
    expect(privateKey.length).toBeGreaterThan(40);
    const hunt = join(job.root, 'hunt.cjs');
    writeFileSync(hunt, HUNT);
    const out = join(job.root, 'seen.txt');
    const run = await job.run('run', 'main', {
      inputs: {
        run: `exec >/dev/null 2>&1; "${process.execPath}" "${hunt}" "$RUNNER_TEMP/cordon/ledger.jsonl" "${out}"`,
        user: 'runner',
      },
      wrap: as(),
      timeoutMs: 30000,
    });
    // SIGKILLed (the wrapper's runuser reports 137).
    expect(run.code).not.toBe(0);
    await waitFor(`${out}.done`);
    const seen = readFileSync(out, 'utf8');
    // It looked: the key file is gone, run's command line and environment were read.
    expect(seen).toMatch(/== key file refused: ENOENT/);
    expect(seen).toMatch(/== cmdline \d+\n.*run\/main\.js/);
    expect(seen).toMatch(/== environ \d+\n/);
    // It found nothing: not the key in any form it could read.
    for (const form of [privateKey, Buffer.from(privateKey, 'base64').toString('hex')])
      expect(seen).not.toContain(form);
    expect(readFileSync(`${out}.found`, 'utf8')).toBe('none');
    // run's memory: closed to a same-user process only where Yama's ptrace_scope is 1 or more.
    let scope = 0;
    try {
      scope = Number(readFileSync('/proc/sys/kernel/yama/ptrace_scope', 'utf8'));
    } catch {
      // No Yama: the same user may read run's memory (threat-model T48).
    }
    if (scope >= 1) expect(seen).toMatch(/== mem refused/);

    const post = await job.run('start', 'post', { state: start.state, wrap: as() });
    expect(post.code).not.toBe(0);
    expect(post.summary).toContain('RECORD ALTERED while the agent ran');
    expect(post.summary).toContain("its signature is not run's");
    expect(post.summary).not.toMatch(/\| run \| (ledger\.verified|run\.finished|run\.sealed) \|/);
  }, 90000);
});
