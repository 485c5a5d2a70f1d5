/**
 * Hostile whole-program runs of start -> run -> start's post through the harness: the
 * command leaves processes behind (setsid + nohup, a double fork appending to the ledger),
 * edits earlier ledger lines, and reaches for earlier steps' credential files. Needs root
 * for the cgroup; without it the test fails loudly under CI and is skipped otherwise.
 */
import { afterAll, describe, expect, test } from '@jest/globals';
import { chmodSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { parseLedgerText } from '../../src/ledger/ledger.js';
import { DEFAULT_HOME_BASE } from '../../src/identity/user.js';
import { Job } from '../../src/devkit/run-action.js';
import { cgroup2Mount } from '../../src/platform/cgroup2.js';
import { alive } from '../harness/proc.js';

const root = process.getuid?.() === 0;
const mount = cgroup2Mount();
if ((!root || !mount) && process.env.CI === 'true')
  throw new Error('integrity e2e needs root and a cgroup2 mount under CI');
if (!root || !mount) console.log('integrity e2e skipped: not root or no cgroup2 mount, and CI is unset');
const maybe = root && mount ? describe : describe.skip;

const jobs: Job[] = [];
afterAll(() => {
  for (const j of jobs) rmSync(j.root, { recursive: true, force: true });
});

function newJob(env: Record<string, string> = {}): Job {
  const j = new Job({ env });
  jobs.push(j);
  // The command runs as its own user (run's default as root): it writes what it saw into
  // the job's folder, open to all like /tmp; RUNNER_TEMP and the rest stay root's.
  chmodSync(j.root, 0o1777);
  return j;
}

function ledgerFile(job: Job): string {
  return join(job.runnerTemp, 'cordon', 'ledger.jsonl');
}

function events(job: Job): { type: string; action: string; data: Record<string, unknown> }[] {
  return parseLedgerText(readFileSync(ledgerFile(job), 'utf8')).flatMap((l) => (l.event ? [l.event] : []));
}

function ours(): string[] {
  return readdirSync(mount as string).filter((d) => d.startsWith(`cordon-run-`));
}

maybe('integrity, as whole programs', () => {
  test('a clean run: cgroup containment, ledger.verified, post says record intact', async () => {
    const job = newJob();
    const start = await job.run('start', 'main');
    expect(start.code).toBe(0);
    const run = await job.run('run', 'main', { inputs: { run: 'echo hello-from-agent' } });
    expect(run.code).toBe(0);
    const ev = events(job);
    const started = ev.find((e) => e.type === 'run.started');
    expect(started?.data.containment).toBe('cgroup');
    expect(ev.map((e) => e.type)).toEqual([
      'run.recorded',
      'run.started',
      'ledger.verified',
      'run.finished',
      'run.sealed',
    ]);
    expect(ev.find((e) => e.type === 'run.finished')?.data).toMatchObject({
      processesAlive: 0,
      ledgerIntact: true,
      containment: 'cgroup',
    });
    const post = await job.run('start', 'post', { state: start.state });
    expect(post.code).toBe(0);
    expect(post.summary).toContain('Record intact');
    expect(post.summary).not.toContain('RECORD ALTERED');
  }, 60000);

  test('setsid nohup sleep and a double-forked ledger writer: killed with the cgroup, appends reported as tampering', async () => {
    const job = newJob();
    const before = ours();
    const start = await job.run('start', 'main');
    const pids = join(job.root, 'pids');
    mkdirSync(pids);
    const script = [
      `setsid nohup sh -c 'echo $$ > ${pids}/sleep; exec sleep 600' >/dev/null 2>&1 &`,
      // Double fork: the subshell exits at once, its child is re-parented and loops.
      `( sh -c 'echo $$ > ${pids}/loop; i=0; while [ $i -lt 6000 ]; do echo "{\\"v\\":1,\\"type\\":\\"commits.observed\\",\\"action\\":\\"start\\",\\"data\\":{},\\"prev\\":\\"forged\\"}" >> "$RUNNER_TEMP/cordon/ledger.jsonl"; i=$((i+1)); sleep 0.05; done' >/dev/null 2>&1 & ) &`,
      `for i in $(seq 50); do [ -s ${pids}/sleep ] && [ -s ${pids}/loop ] && break; sleep 0.05; done`,
      'sleep 0.4',
      'echo agent-done',
    ].join('\n');
    // As the runner user: the agent's own user cannot write the ledger at all.
    const run = await job.run('run', 'main', { inputs: { run: script, user: 'runner' } });
    const sleepPid = Number(readFileSync(join(pids, 'sleep'), 'utf8'));
    const loopPid = Number(readFileSync(join(pids, 'loop'), 'utf8'));
    expect(sleepPid).toBeGreaterThan(1);
    expect(loopPid).toBeGreaterThan(1);
    // Both are gone the moment run returns.
    expect(alive(sleepPid)).toBe(false);
    expect(alive(loopPid)).toBe(false);
    expect(run.stdout).toContain('agent-done');
    expect(run.code).not.toBe(0);
    expect(run.stdout + run.stderr).toContain('the run ledger was altered while the command ran');
    // The cgroup is removed after.
    expect(ours()).toEqual(before);

    const lengthAfterRun = readFileSync(ledgerFile(job), 'utf8').length;
    await new Promise((r) => setTimeout(r, 300));
    expect(readFileSync(ledgerFile(job), 'utf8').length).toBe(lengthAfterRun);

    const ev = events(job);
    const finished = ev.find((e) => e.type === 'run.finished');
    expect(finished?.data.processesAlive).toBeGreaterThanOrEqual(2);
    expect(finished?.data.ledgerIntact).toBe(false);
    const tampered = ev.find((e) => e.type === 'ledger.tampered');
    expect(tampered).toBeDefined();
    const inserted = tampered?.data.inserted as number[];
    expect(inserted.length).toBeGreaterThan(0);
    // Every forged line is among those reported as inserted.
    const forged = parseLedgerText(readFileSync(ledgerFile(job), 'utf8'))
      .filter((l) => l.event?.prev === 'forged')
      .map((l) => l.line);
    expect(forged.length).toBeGreaterThan(0);
    expect(inserted).toEqual(expect.arrayContaining(forged));
    expect(tampered?.data.changed).toEqual([]);
    expect(tampered?.data.removed).toEqual([]);

    const post = await job.run('start', 'post', { state: start.state });
    expect(post.code).not.toBe(0);
    expect(post.summary).toContain('RECORD ALTERED while the agent ran');
    expect(post.summary).toContain('Written while the agent ran');
    // The forged lines are listed apart, not rendered as Cordon's events (nor break the summary).
    expect(post.summary).not.toContain('could not be rendered');
    expect(post.summary).toContain('No new commits.');
    expect(post.summary).toMatch(
      /\d+ process\(es\) the command left running were killed when it ended \(with its cgroup\)/,
    );
    expect(post.summary).toMatch(
      new RegExp(`lines? ${forged[0]}(-\\d+)? (was|were) written while the agent ran`),
    );
    expect(post.stdout + post.stderr).toContain('the run ledger was altered');

    // fail-on-tamper: false renders the same verdict but lets the job pass.
    const lenient = await job.run('start', 'post', {
      state: start.state,
      inputs: { 'fail-on-tamper': 'false' },
    });
    expect(lenient.code).toBe(0);
    expect(lenient.summary).toContain('RECORD ALTERED while the agent ran');
  }, 60000);

  test('an earlier line changed and one removed while the command ran: reported by line', async () => {
    const job = newJob();
    const start = await job.run('start', 'main');
    // A second earlier line, so that one can be removed and another changed.
    await job.run('run', 'main', { inputs: { run: 'true' } });
    const lines = readFileSync(ledgerFile(job), 'utf8').split('\n').filter(Boolean).length;
    expect(lines).toBe(5);
    const script = [
      'L="$RUNNER_TEMP/cordon/ledger.jsonl"',
      // Line 1 changed (the repository renamed), line 2 removed.
      `sed -i -e '1s/octo-repo/evil-repo/' -e '2d' "$L"`,
    ].join('\n');
    // As the runner user: the agent's own user cannot write the ledger at all.
    const run = await job.run('run', 'main', { inputs: { run: script, user: 'runner' } });
    expect(run.code).not.toBe(0);
    const tampered = events(job).find((e) => e.type === 'ledger.tampered');
    expect(tampered?.data.changed).toEqual([1]);
    expect(tampered?.data.removed).toEqual([2]);
    const post = await job.run('start', 'post', { state: start.state });
    expect(post.code).not.toBe(0);
    expect(post.summary).toContain('line 1 was changed');
    expect(post.summary).toContain('line 2 was removed');
  }, 60000);

  test('two earlier lines swapped and every line after rechained while the command ran: the chain holds, run still names them', async () => {
    const job = newJob();
    const start = await job.run('start', 'main');
    await job.run('run', 'main', { inputs: { run: 'true' } });
    // The chain is public: the command reorders lines 2 and 3 and recomputes every prev
    // from line 2 on (its own run.started included), so the file chains from the nonce.
    const script = `node -e '
      const fs = require("fs"), c = require("crypto");
      const f = process.env.RUNNER_TEMP + "/cordon/ledger.jsonl";
      const ls = fs.readFileSync(f, "utf8").split("\\n").filter(Boolean).map((l) => JSON.parse(l));
      [ls[1], ls[2]] = [ls[2], ls[1]];
      let prev = ls[0].prev, out = "";
      for (const e of ls) { e.prev = prev; const line = JSON.stringify(e); out += line + "\\n";
        prev = c.createHash("sha256").update(line).digest("hex"); }
      fs.writeFileSync(f, out);'`;
    // As the runner user: the agent's own user cannot write the ledger at all.
    const run = await job.run('run', 'main', { inputs: { run: script, user: 'runner' } });
    expect(run.code).not.toBe(0);
    const lines = parseLedgerText(readFileSync(ledgerFile(job), 'utf8'));
    // The attack did what it meant to: no line fails to chain.
    expect(lines.every((l, i) => i === 0 || l.event?.prev === lines[i - 1].hash)).toBe(true);
    const tampered = events(job).find((e) => e.type === 'ledger.tampered');
    expect(tampered?.data.changed).toEqual(expect.arrayContaining([2, 3]));
    const post = await job.run('start', 'post', { state: start.state });
    expect(post.code).not.toBe(0);
    expect(post.summary).toContain('RECORD ALTERED');
    expect(post.summary).toContain('line 2 was changed');
    expect(post.summary).toContain('line 3 was changed');
  }, 60000);

  test("fresh HOME: earlier steps' credential files and variables out of reach, the checkout token withheld and put back", async () => {
    const job = newJob();
    const SECRET = 'earlier-step-credential-value-9d1f';
    const files = [
      '.aws/credentials',
      '.docker/config.json',
      '.git-credentials',
      '.netrc',
      '.npmrc',
      '.ssh/id_rsa',
      '.kube/config',
      '.config/gh/hosts.yml',
    ];
    for (const f of files) {
      mkdirSync(join(job.home, f, '..'), { recursive: true });
      writeFileSync(join(job.home, f), `${SECRET} ${f}\n`);
    }
    // github-token configured the bot identity in git's global config.
    writeFileSync(
      join(job.home, '.gitconfig'),
      '[user]\n\tname = cordon-agent[bot]\n\temail = 123+cordon-agent[bot]@users.noreply.github.com\n[credential]\n\thelper = store\n',
    );
    const credVars = {
      AWS_SHARED_CREDENTIALS_FILE: join(job.home, '.aws/credentials'),
      AWS_CONFIG_FILE: join(job.home, '.aws/config'),
      GOOGLE_APPLICATION_CREDENTIALS: join(job.home, 'gcp.json'),
      DOCKER_CONFIG: join(job.home, '.docker'),
      KUBECONFIG: join(job.home, '.kube/config'),
      AZURE_CONFIG_DIR: join(job.home, '.azure'),
      CLOUDSDK_CONFIG: join(job.home, '.config/gcloud'),
    };
    Object.assign(job.env, credVars);
    // actions/checkout with persist-credentials: true.
    const TOKEN = 'ghs_checkouttoken0000000000000000000000';
    const header = `AUTHORIZATION: basic ${Buffer.from(`x-access-token:${TOKEN}`).toString('base64')}`;
    execFileSync('git', ['init', '-q', job.workspace]);
    execFileSync('git', [
      '-C',
      job.workspace,
      'config',
      '--local',
      'http.https://github.com/.extraheader',
      header,
    ]);
    const dump = join(job.root, 'dump.txt');
    const script = [
      `{`,
      `echo "HOME=$HOME"`,
      `env`,
      `for f in ${files.map((f) => `"$HOME/${f}"`).join(' ')}; do cat "$f" 2>/dev/null || echo "unreadable $f"; done`,
      `echo "name=$(git config --global --get user.name)"`,
      `echo "email=$(git config --global --get user.email)"`,
      `echo "helper=$(git config --global --get credential.helper)"`,
      `echo "safe=$(git config --global --get-all safe.directory)"`,
      `echo "header=$(git -C "$GITHUB_WORKSPACE" config --get-all http.https://github.com/.extraheader)"`,
      `cat "$GITHUB_WORKSPACE/.git/config"`,
      `} > ${dump} 2>&1`,
    ].join('\n');
    const run = await job.run('run', 'main', {
      inputs: { run: script, 'keep-env': 'KUBECONFIG' },
    });
    expect(run.code).toBe(0);
    const seen = readFileSync(dump, 'utf8');
    expect(seen).not.toContain(SECRET);
    expect(seen).not.toContain(TOKEN);
    expect(seen).not.toContain(header);
    expect(seen).not.toContain(`HOME=${job.home}\n`);
    expect(seen).toContain('name=cordon-agent[bot]');
    expect(seen).toContain('email=123+cordon-agent[bot]@users.noreply.github.com');
    expect(seen).toContain('helper=\n');
    expect(seen).toContain(`safe=${job.workspace}`);
    expect(seen).toContain('header=\n');
    for (const k of Object.keys(credVars)) {
      if (k === 'KUBECONFIG') expect(seen).toContain(`KUBECONFIG=${credVars.KUBECONFIG}`);
      else expect(seen).not.toContain(`${k}=`);
    }
    const started = events(job).find((e) => e.type === 'run.started');
    expect(started?.data.home).toBe('fresh');
    const withheld = started?.data.withheld as string[];
    for (const p of [
      '~/.aws',
      '~/.docker/config.json',
      '~/.git-credentials',
      '~/.netrc',
      '~/.npmrc',
      '~/.ssh',
      '~/.kube',
      '~/.config/gh',
      '~/.gitconfig',
    ])
      expect(withheld).toContain(p);
    for (const k of Object.keys(credVars).filter((k) => k !== 'KUBECONFIG'))
      expect(withheld).toContain(`env:${k}`);
    expect(withheld).not.toContain('env:KUBECONFIG');
    expect(withheld).toContain('.git/config:http.https://github.com/.extraheader');
    // The checkout token is back for later steps, and in no output.
    expect(
      execFileSync('git', ['-C', job.workspace, 'config', '--get', 'http.https://github.com/.extraheader'], {
        encoding: 'utf8',
      }).trim(),
    ).toBe(header);
    expect(events(job).find((e) => e.type === 'run.finished')?.data.checkoutTokenRestored).toBe(true);
    for (const text of [
      run.stdout
        .split('\n')
        .filter((l) => !l.startsWith('::add-mask::'))
        .join('\n'),
      run.stderr,
      readFileSync(ledgerFile(job), 'utf8'),
    ]) {
      expect(text).not.toContain(TOKEN);
      expect(text).not.toContain(SECRET);
    }
    // The fresh HOME (the agent's own user's, made for the step) is removed after the command.
    const home = /^HOME=(.*)$/m.exec(seen)?.[1] as string;
    expect(home.startsWith(`${DEFAULT_HOME_BASE}/cordon-agent-`)).toBe(true);
    expect(() => readdirSync(home)).toThrow();
  }, 60000);

  test('run failing after it made the cgroup and withheld the token leaves neither behind', async () => {
    const job = newJob();
    const before = ours();
    const header = `AUTHORIZATION: basic ${Buffer.from('x-access-token:ghs_lockedout000000000000000000000').toString('base64')}`;
    execFileSync('git', ['init', '-q', job.workspace]);
    execFileSync('git', [
      '-C',
      job.workspace,
      'config',
      '--local',
      'http.https://github.com/.extraheader',
      header,
    ]);
    // A FIFO stands in the ledger's place: run.started cannot be written and the step fails.
    // (A planted lock no longer does: it is taken over, test/e2e/ledger-lock.test.ts.)
    mkdirSync(join(job.runnerTemp, 'cordon'), { recursive: true });
    execFileSync('mkfifo', [ledgerFile(job)]);
    const marker = join(job.root, 'ran');
    const run = await job.run('run', 'main', { inputs: { run: `touch ${marker}` } });
    expect(run.code).not.toBe(0);
    expect(run.stdout + run.stderr).toContain('is a FIFO');
    expect(() => readFileSync(marker)).toThrow();
    expect(ours()).toEqual(before);
    expect(
      execFileSync('git', ['-C', job.workspace, 'config', '--get', 'http.https://github.com/.extraheader'], {
        encoding: 'utf8',
      }).trim(),
    ).toBe(header);
  }, 60000);

  test('home: keep gives the old behaviour', async () => {
    const job = newJob({ AWS_SHARED_CREDENTIALS_FILE: '/x/credentials' });
    writeFileSync(join(job.home, '.netrc'), 'machine example.com password kept-value-1234\n');
    const dump = join(job.root, 'dump.txt');
    const run = await job.run('run', 'main', {
      // home: keep is the runner user's HOME; the agent's own user always has a home of its own.
      inputs: {
        run: `{ echo "HOME=$HOME"; cat "$HOME/.netrc"; env; } > ${dump}`,
        home: 'keep',
        user: 'runner',
      },
    });
    expect(run.code).toBe(0);
    const seen = readFileSync(dump, 'utf8');
    expect(seen).toContain(`HOME=${job.home}`);
    expect(seen).toContain('kept-value-1234');
    expect(seen).toContain('AWS_SHARED_CREDENTIALS_FILE=/x/credentials');
    const started = events(job).find((e) => e.type === 'run.started');
    expect(started?.data.home).toBe('keep');
    expect(started?.data.withheld).toBeUndefined();
  }, 60000);
});
