/**
 * Hostile whole-program runs of dist/run for promises of docs/run.md that no other test
 * attacked: the checkout token as actions/checkout v6 persists it (a credentials file in
 * RUNNER_TEMP that .git/config includes), a secret handed back through $CORDON_OUTPUT, and
 * `run` itself killed while its agent runs. Each command tries, as the agent's own user or
 * as the user `run` runs as, and must fail. Needs root (the agent's user, the mount).
 */
import { afterAll, describe, expect, test } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { parseLedgerText } from '../../src/ledger/ledger.js';
import { Job, type StepResult } from '../../src/devkit/run-action.js';
import { AGENT_UID_MAX, AGENT_UID_MIN, DEFAULT_HOME_BASE } from '../../src/identity/user.js';
import { alive } from '../harness/proc.js';
import { canMakeUsers } from '../harness/users.js';

const usable = canMakeUsers();
if (!usable && process.env.CI === 'true')
  throw new Error('run-promises e2e: needs root and useradd (CI=true)');
if (!usable) console.warn('run-promises e2e skipped: needs root and useradd');
const suite = usable ? describe : describe.skip;

const jobs: Job[] = [];
afterAll(() => {
  for (const j of jobs) rmSync(j.root, { recursive: true, force: true });
});

function newJob(env: Record<string, string> = {}): Job {
  const j = new Job({ env });
  jobs.push(j);
  // As on a runner: the job's folders are open to look into (RUNNER_TEMP is 0755 there).
  chmodSync(j.root, 0o755);
  return j;
}

function events(job: Job): { type: string; data: Record<string, unknown> }[] {
  const text = readFileSync(join(job.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8');
  return parseLedgerText(text).flatMap((l) => (l.event ? [l.event] : []));
}

/** The log as the runner shows it (mask commands are consumed), errors, outputs, ledger. */
function everything(job: Job, r: StepResult): string {
  return [
    r.stdout
      .split('\n')
      .filter((l) => !l.startsWith('::add-mask::'))
      .join('\n'),
    r.stderr,
    JSON.stringify(r.outputs),
    JSON.stringify(r.env),
    r.summary,
    readFileSync(join(job.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8'),
  ].join('\n');
}

suite('run: promises attacked by the command', () => {
  // actions/checkout v6 (persist-credentials: true): the header in a file of its own under
  // RUNNER_TEMP, 0644, and .git/config only names it with includeIf.gitdir.
  test.each(['agent', 'runner'])(
    'user: %s: the checkout token in the credentials file checkout v6 includes is out of reach, and put back',
    async (user) => {
      const job = newJob();
      const TOKEN = 'ghs_checkoutv6token000000000000000000000';
      const header = `AUTHORIZATION: basic ${Buffer.from(`x-access-token:${TOKEN}`).toString('base64')}`;
      const creds = join(job.runnerTemp, 'git-credentials-3f2a9c1e-7b4d-4e8f-9a0b-c1d2e3f4a5b6.config');
      writeFileSync(creds, `[http "https://github.com/"]\n\textraheader = ${header}\n`, { mode: 0o644 });
      const credsBefore = readFileSync(creds, 'utf8');
      execFileSync('git', ['init', '-q', job.workspace]);
      const gitDir = join(job.workspace, '.git');
      execFileSync('git', ['-C', job.workspace, 'config', `includeIf.gitdir:${gitDir}.path`, creds]);
      execFileSync('git', [
        '-C',
        job.workspace,
        'config',
        `includeIf.gitdir:${gitDir}/worktrees/*.path`,
        creds,
      ]);
      const dump = join(job.root, `dump-${user}.txt`);
      writeFileSync(dump, '', { mode: 0o666 });
      chmodSync(dump, 0o666);
      // Every way a command finds it: git's own view, the file by its well-known name, any file there.
      const script = [
        `set +e`,
        `{`,
        `git -C "$GITHUB_WORKSPACE" config --get-all http.https://github.com/.extraheader`,
        `cat "$RUNNER_TEMP"/git-credentials-*.config`,
        `grep -rah extraheader "$RUNNER_TEMP" "$GITHUB_WORKSPACE/.git"`,
        `} >> ${dump} 2>&1`,
        `true`,
      ].join('\n');
      const r = await job.run('run', 'main', { inputs: { run: script, user } });
      expect(r.code).toBe(0);
      const seen = readFileSync(dump, 'utf8');
      const b64 = Buffer.from(`x-access-token:${TOKEN}`).toString('base64');
      expect(seen).not.toContain(TOKEN);
      expect(seen).not.toContain(b64);
      // Put back as it was: the file byte for byte and mode, and git sees the header again.
      expect(readFileSync(creds, 'utf8')).toBe(credsBefore);
      expect(statSync(creds).mode & 0o777).toBe(0o644);
      expect(
        execFileSync(
          'git',
          ['-C', job.workspace, 'config', '--get', 'http.https://github.com/.extraheader'],
          {
            encoding: 'utf8',
          },
        ).trim(),
      ).toBe(header);
      const finished = events(job).find((e) => e.type === 'run.finished');
      expect(finished?.data.checkoutTokenRestored).toBe(true);
      const started = events(job).find((e) => e.type === 'run.started');
      expect(JSON.stringify(started?.data.withheld)).toContain('extraheader');
      const all = everything(job, r);
      expect(all).not.toContain(TOKEN);
      expect(all).not.toContain(b64);
    },
    60000,
  );

  // $CORDON_OUTPUT is the agent's one way to hand results back; run publishes them as step
  // outputs, which nothing masks by name. Each form of the secret, and run's own output name.
  const HANDED_SECRET = 'handback-secret-value-4e91c0';
  test.each([
    ['the value', 'echo "token=$API_KEY"'],
    ['its base64', 'echo "token=$(printf %s "$API_KEY" | base64 -w0)"'],
    ['its hex', 'echo "token=$(printf %s "$API_KEY" | xxd -p | tr -d "\\n")"'],
    ['its URL encoding', `echo "token=$(node -e 'console.log(encodeURIComponent(process.env.API_KEY))')"`],
    ['one line of a heredoc block', 'printf "note<<EOF\\nfirst\\nk: %s\\nEOF\\n" "$API_KEY"'],
    ["run's own exit-code", 'echo "exit-code=0"'],
  ])(
    'user: agent hands back %s through CORDON_OUTPUT: refused, nothing published',
    async (_what, write) => {
      const job = newJob({ SOURCE_VALUE: HANDED_SECRET });
      const r = await job.run('run', 'main', {
        inputs: {
          run: `echo "harmless=1" >> "$CORDON_OUTPUT"\n{ ${write}; } >> "$CORDON_OUTPUT"\necho written`,
          secrets: 'API_KEY=env:SOURCE_VALUE',
          user: 'agent',
        },
      });
      expect(r.stdout).toContain('written');
      expect(r.code).not.toBe(0);
      const err = r.commands.find((c) => c.command === 'error')?.message ?? '';
      expect(err).toMatch(/handed back an output named "exit-code"|output "(token|note)" holds a secret/);
      // None of what it handed back was published, the harmless entry included.
      expect(r.outputs.token).toBeUndefined();
      expect(r.outputs.note).toBeUndefined();
      expect(r.outputs.harmless).toBeUndefined();
      const all = everything(job, r);
      for (const form of [
        HANDED_SECRET,
        Buffer.from(HANDED_SECRET).toString('base64'),
        Buffer.from(HANDED_SECRET).toString('hex'),
      ])
        expect(all).not.toContain(form);
    },
    60000,
  );

  test('user: agent makes CORDON_OUTPUT a link to /etc/shadow: root does not read it for the step outputs', async () => {
    const job = newJob();
    const r = await job.run('run', 'main', {
      inputs: {
        run: 'rm -f "$CORDON_OUTPUT"; ln -s /etc/shadow "$CORDON_OUTPUT" && echo linked',
        user: 'agent',
      },
    });
    expect(r.stdout).toContain('linked');
    expect(r.code).not.toBe(0);
    expect(
      Object.keys(r.outputs).filter(
        (k) => !['exit-code', 'duration-ms', 'bytes-scrubbed', 'leaks'].includes(k),
      ),
    ).toEqual([]);
    expect(everything(job, r)).not.toMatch(/^root:/m);
  }, 60000);

  // The same read one folder up: `$CORDON_OUTPUT` is `.cordon/output` in the agent's home,
  // and the agent owns `.cordon`. Swapped for a link to a folder of root's that holds a file
  // of that name, root would read root's file and publish it as the step's outputs.
  test("user: agent swaps its .cordon folder for a link to a folder of root's: root does not read root's file there", async () => {
    const job = newJob();
    const ROOT_ONLY = 'root-only-value-7c2f19';
    const rootDir = join(job.root, 'roots-folder');
    mkdirSync(rootDir, { mode: 0o755 });
    writeFileSync(join(rootDir, 'output'), `secret=${ROOT_ONLY}\n`, { mode: 0o600 });
    const r = await job.run('run', 'main', {
      inputs: {
        run: `d=$(dirname "$CORDON_OUTPUT"); mv "$d" "$d.moved" && ln -s ${rootDir} "$d" && echo swapped`,
        user: 'agent',
      },
    });
    expect(r.stdout).toContain('swapped');
    expect(r.code).not.toBe(0);
    expect(r.commands.find((c) => c.command === 'error')?.message).toMatch(
      /belongs to uid 0, not to the agent/,
    );
    expect(r.outputs.secret).toBeUndefined();
    expect(everything(job, r)).not.toContain(ROOT_ONLY);
    expect(readFileSync(join(rootDir, 'output'), 'utf8')).toBe(`secret=${ROOT_ONLY}\n`);
  }, 60000);

  // "If run itself dies, the launcher does the same": the end as after a normal exit.
  test('run killed mid-command (SIGKILL): the launcher kills the agent, gives the workspace back, removes the user', async () => {
    const job = newJob();
    const who = join(job.root, 'who.txt');
    writeFileSync(who, '', { mode: 0o666 });
    chmodSync(who, 0o666);
    const pending = job.run('run', 'main', {
      inputs: {
        run: `setsid nohup sleep 300 >/dev/null 2>&1 &\necho "$(id -un) $(id -u) $!" > ${who}\nsleep 300`,
        user: 'agent',
      },
      timeoutMs: 60000,
    });
    let agent: string[] = [];
    for (let i = 0; i < 300 && agent.length < 3; i++) {
      await new Promise((r) => setTimeout(r, 50));
      agent = readFileSync(who, 'utf8').trim().split(' ').filter(Boolean);
    }
    const [name, uid, sleeper] = agent;
    expect(name).toMatch(/^cordon-agent-/);
    const run = spawnSync('pgrep', ['-P', String(process.pid), '-f', 'dist/run/main.js'], {
      encoding: 'utf8',
    })
      .stdout.trim()
      .split('\n')
      .map(Number)
      .filter((p) => p > 1);
    expect(run).toHaveLength(1);
    // What the kill must end was there: the sleeper that left the group, the loaned workspace.
    expect(alive(Number(sleeper))).toBe(true);
    expect(readFileSync('/proc/mounts', 'utf8')).toContain(job.workspace);
    process.kill(run[0], 'SIGKILL');
    const r = await pending;
    expect(r.code).not.toBe(0);
    // The launcher's end is bounded (kill, then `kill -1` as the uid for at most 5 s, userdel).
    const live = (): string[] =>
      spawnSync('ps', ['-eo', 'pid=,uid=,stat='], { encoding: 'utf8' })
        .stdout.split('\n')
        .map((l) => l.trim().split(/\s+/))
        .filter(([, u, stat]) => u === uid && !stat?.startsWith('Z'))
        .map(([p]) => p);
    // The base goes too once the last agent's home is out of it (if that agent made it).
    const homes = (): string[] => (existsSync(DEFAULT_HOME_BASE) ? readdirSync(DEFAULT_HOME_BASE) : []);
    const gone = (): boolean =>
      !readFileSync('/etc/passwd', 'utf8')
        .split('\n')
        .some((l) => l.startsWith(`${name}:`)) &&
      !readFileSync('/proc/mounts', 'utf8').includes(job.workspace) &&
      // The home goes after userdel: waiting for the user alone raced with it.
      !homes().includes(name) &&
      live().length === 0;
    for (let i = 0; i < 200 && !gone(); i++) await new Promise((res) => setTimeout(res, 100));
    expect(live()).toEqual([]);
    expect(alive(Number(sleeper))).toBe(false);
    expect(readFileSync('/proc/mounts', 'utf8')).not.toContain(job.workspace);
    expect(
      readFileSync('/etc/passwd', 'utf8')
        .split('\n')
        .some((l) => l.startsWith(`${name}:`)),
    ).toBe(false);
    expect(homes().includes(name)).toBe(false);
    expect(Number(uid)).toBeGreaterThanOrEqual(AGENT_UID_MIN);
    expect(Number(uid)).toBeLessThanOrEqual(AGENT_UID_MAX);
  }, 90000);

  // "the command and its environment reach it on its stdin ..., never on a command line or in
  // a file": while the command runs, every process's cmdline and every file of the job and of
  // the agents' homes are searched for the values it was given.
  test('user: agent: the secrets given to the command are on no command line and in no file while it runs', async () => {
    const VALUE = 'delivered-secret-value-8c2d71';
    const job = newJob({ SOURCE_VALUE: VALUE });
    const mark = join(job.root, 'running');
    writeFileSync(mark, '', { mode: 0o666 });
    chmodSync(mark, 0o666);
    const pending = job.run('run', 'main', {
      inputs: {
        run: `echo "$(id -un)" > ${mark}\nsleep 3`,
        secrets: 'API_KEY=env:SOURCE_VALUE',
        user: 'agent',
      },
    });
    let name = '';
    for (let i = 0; i < 300 && !name; i++) {
      await new Promise((r) => setTimeout(r, 50));
      name = readFileSync(mark, 'utf8').trim();
    }
    expect(name).toMatch(/^cordon-agent-/);
    const cmdlines = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .flatMap((d) => {
        try {
          return [readFileSync(`/proc/${d}/cmdline`, 'utf8')];
        } catch {
          return [];
        }
      });
    expect(cmdlines.length).toBeGreaterThan(5);
    // The control: the command has the value, in its own environment.
    const own = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .filter((d) => {
        try {
          const uid = statSync(`/proc/${d}`).uid;
          return (
            uid >= AGENT_UID_MIN &&
            uid <= AGENT_UID_MAX &&
            readFileSync(`/proc/${d}/environ`, 'utf8').includes(VALUE)
          );
        } catch {
          return false;
        }
      });
    expect(own.length).toBeGreaterThan(0);
    expect(cmdlines.filter((c) => c.includes(VALUE))).toEqual([]);
    // As root, so every file: the job's (RUNNER_TEMP, the workspace, HOME) and the agent's home.
    const files = spawnSync('grep', ['-rlF', VALUE, job.root, join(DEFAULT_HOME_BASE, name)], {
      encoding: 'utf8',
    });
    expect(files.stdout).toBe('');
    expect(files.status).toBe(1);
    const r = await pending;
    expect(r.code).toBe(0);
    expect(everything(job, r)).not.toContain(VALUE);
  }, 60000);

  // "timeout-minutes: kill every process the command started (SIGTERM, then SIGKILL after 5 s)".
  test('user: agent: a command that ignores SIGTERM, and a child that left its session, do not outlive the timeout', async () => {
    const job = newJob();
    const pids = join(job.root, 'pids');
    writeFileSync(pids, '', { mode: 0o666 });
    chmodSync(pids, 0o666);
    const r = await job.run('run', 'main', {
      inputs: {
        run: `trap '' TERM\nsetsid sh -c 'trap "" TERM; exec sleep 300' >/dev/null 2>&1 &\necho "$$ $!" > ${pids}\nwhile :; do sleep 1; done`,
        user: 'agent',
        'timeout-minutes': '0.02',
      },
      timeoutMs: 45000,
    });
    expect(r.code).not.toBe(0);
    expect(r.commands.find((c) => c.command === 'error')?.message).toContain('timed out');
    const [shell, child] = readFileSync(pids, 'utf8').trim().split(' ').map(Number);
    expect(shell).toBeGreaterThan(1);
    expect(child).toBeGreaterThan(1);
    expect(alive(shell)).toBe(false);
    expect(alive(child)).toBe(false);
    const finished = events(job).find((e) => e.type === 'run.finished')?.data;
    expect(finished?.timedOut).toBe(true);
  }, 60000);

  // "every file under the workspace whose content or metadata changed since it started is
  // read": the workspace's own .git/ too, whose objects are read through git but whose other
  // files (a reflog message, a file dropped there) an upload of the workspace carries.
  test('user: agent hides a secret in .git/ outside the objects (a file, a reflog message, the description): found', async () => {
    const VALUE = 'git-dir-hidden-secret-3b7e52';
    const job = newJob({ SOURCE_VALUE: VALUE });
    execFileSync('git', ['init', '-q', '-b', 'main', job.workspace]);
    writeFileSync(join(job.workspace, 'a.txt'), 'a\n');
    execFileSync('git', ['-C', job.workspace, 'add', '.']);
    execFileSync('git', [
      '-C',
      job.workspace,
      '-c',
      'user.name=t',
      '-c',
      'user.email=t@e',
      'commit',
      '-qm',
      'one',
    ]);
    const r = await job.run('run', 'main', {
      inputs: {
        run: [
          'printf "x=%s\\n" "$API_KEY" > .git/stash-notes',
          'git update-ref -m "moved $API_KEY" refs/heads/side HEAD',
          'printf "%s\\n" "$API_KEY" > .git/description',
          'echo hidden',
        ].join('\n'),
        secrets: 'API_KEY=env:SOURCE_VALUE',
        user: 'agent',
      },
    });
    expect(r.stdout).toContain('hidden');
    expect(r.code).not.toBe(0);
    const errors = r.commands.filter((c) => c.command === 'error').map((c) => c.message);
    for (const where of ['.git/stash-notes:1', '.git/logs/refs/heads/side:1', '.git/description:1'])
      expect(errors).toContain(`run: secret API_KEY was written to ${where}`);
    expect(everything(job, r)).not.toContain(VALUE);
  }, 60000);

  // "Set-uid files: the mount is `nosuid`": the option itself, on the mount the agent's command
  // finds its workspace on (its own /proc/self/mountinfo), beside what the hand-back clears.
  test('user: agent: the workspace the command works in is a nosuid, nodev mount while it runs', async () => {
    const job = newJob();
    const r = await job.run('run', 'main', {
      inputs: {
        run: `awk -v d="$(pwd -P)" '$5 == d { print "mount", $6 }' /proc/self/mountinfo\necho "cwd $(pwd -P)"\nid -u`,
        user: 'agent',
      },
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`cwd ${job.workspace}`);
    const uid = Number(/^(\d+)$/m.exec(r.stdout)?.[1]);
    expect(uid).toBeGreaterThanOrEqual(AGENT_UID_MIN);
    // The loan is an idmapped mount here (the fallback, chown, has no mount: see the ledger).
    const lent = events(job).find((e) => e.type === 'run.started');
    expect((lent?.data.user as { workspace?: string } | undefined)?.workspace).toBe('idmap');
    const options = /^mount (\S+)$/m.exec(r.stdout)?.[1]?.split(',') ?? [];
    expect(options).toEqual(expect.arrayContaining(['nosuid', 'nodev']));
    // Gone once the step ended.
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(` ${job.workspace} `);
  }, 60000);

  // "no_new_privs (no set-uid program gives it more)": a set-uid-root program the agent finds.
  test('user: agent runs a set-uid-root program: it stays the agent (no_new_privs)', async () => {
    const job = newJob();
    const suid = join(job.root, 'suid-id');
    copyFileSync('/usr/bin/id', suid);
    chmodSync(suid, 0o4755);
    // The control: for another unprivileged user without no_new_privs it is root.
    const control = spawnSync('runuser', ['-u', 'nobody', '--', suid, '-u'], { encoding: 'utf8' });
    expect(control.stdout.trim()).toBe('0');
    const r = await job.run('run', 'main', {
      inputs: {
        run: `echo "euid $(${suid} -u) uid $(id -u)"\ngrep NoNewPrivs /proc/self/status`,
        user: 'agent',
      },
    });
    expect(r.code).toBe(0);
    const m = /^euid (\d+) uid (\d+)$/m.exec(r.stdout);
    expect(m?.[2]).toBeDefined();
    expect(Number(m?.[2])).toBeGreaterThanOrEqual(AGENT_UID_MIN);
    expect(m?.[1]).toBe(m?.[2]);
    expect(r.stdout).toMatch(/^NoNewPrivs:\s+1$/m);
  }, 60000);

  // The same promise against file capabilities, which images carry (ping's cap_net_raw, a
  // backup tool's cap_dac_read_search): a program that has them gives the agent none.
  test('user: agent runs a program with file capabilities: it gains none of them (no_new_privs)', async () => {
    const job = newJob();
    const capCat = join(job.root, 'cap-cat');
    copyFileSync('/bin/cat', capCat);
    chmodSync(capCat, 0o755);
    execFileSync('setcap', ['cap_dac_read_search+ep', capCat]);
    // The control: for another unprivileged user without no_new_privs it reads /etc/shadow.
    const control = spawnSync('runuser', ['-u', 'nobody', '--', capCat, '/etc/shadow'], { encoding: 'utf8' });
    expect(control.stdout).toMatch(/^root:/m);
    const r = await job.run('run', 'main', {
      inputs: {
        run: [
          `if ${capCat} /etc/shadow >/dev/null 2>&1; then echo "shadow WON"; else echo "shadow held"; fi`,
          `sh -c 'grep -E "^(CapPrm|CapEff|CapAmb|NoNewPrivs):" /proc/self/status'`,
          `${capCat} /proc/self/status | grep -E "^(CapPrm|CapEff):" | sed "s/^/cat-with-caps /"`,
          'echo "uid $(id -u)"',
        ].join('\n'),
        user: 'agent',
      },
    });
    expect(r.code).toBe(0);
    expect(Number(/^uid (\d+)$/m.exec(r.stdout)?.[1])).toBeGreaterThanOrEqual(AGENT_UID_MIN);
    expect(r.stdout).toContain('shadow held');
    expect(r.stdout).not.toContain('shadow WON');
    expect(r.stdout).toMatch(/^NoNewPrivs:\s+1$/m);
    for (const set of ['CapPrm', 'CapEff', 'CapAmb'])
      expect(r.stdout).toMatch(new RegExp(`^${set}:\\s+0+$`, 'm'));
    // The capable program itself runs with none: the kernel took its file capabilities away.
    expect(r.stdout).toMatch(/^cat-with-caps CapPrm:\s+0+$/m);
    expect(r.stdout).toMatch(/^cat-with-caps CapEff:\s+0+$/m);
  }, 60000);

  // actions/checkout v4 and v5 with `submodules: true` write the same header into each
  // submodule's config, under .git/modules, which the agent's lent workspace holds.
  test("user: agent: the checkout token checkout wrote into a submodule's config is out of reach, and put back", async () => {
    const job = newJob();
    const TOKEN = 'ghs_submoduletoken0000000000000000000000';
    const header = `AUTHORIZATION: basic ${Buffer.from(`x-access-token:${TOKEN}`).toString('base64')}`;
    const origin = join(job.root, 'origin');
    const git = (cwd: string, ...args: string[]): string =>
      execFileSync(
        'git',
        ['-C', cwd, '-c', 'user.name=t', '-c', 'user.email=t@e', '-c', 'protocol.file.allow=always', ...args],
        { encoding: 'utf8' },
      );
    execFileSync('git', ['init', '-q', '-b', 'main', origin]);
    writeFileSync(join(origin, 'lib.txt'), 'lib\n');
    git(origin, 'add', '.');
    git(origin, 'commit', '-qm', 'lib');
    execFileSync('git', ['init', '-q', '-b', 'main', job.workspace]);
    git(job.workspace, 'submodule', 'add', '-q', origin, 'lib');
    git(job.workspace, 'commit', '-qm', 'with lib');
    for (const dir of [job.workspace, join(job.workspace, 'lib')])
      git(dir, 'config', '--local', 'http.https://github.com/.extraheader', header);
    const subConfig = join(job.workspace, '.git', 'modules', 'lib', 'config');
    expect(readFileSync(subConfig, 'utf8')).toContain(header);
    const dump = join(job.root, 'dump.txt');
    writeFileSync(dump, '', { mode: 0o666 });
    chmodSync(dump, 0o666);
    const r = await job.run('run', 'main', {
      inputs: {
        run: `set +e\n{ cat .git/modules/*/config; git -C lib config --get-all http.https://github.com/.extraheader; } >> ${dump} 2>&1\ntrue`,
        user: 'agent',
      },
    });
    expect(r.code).toBe(0);
    const seen = readFileSync(dump, 'utf8');
    expect(seen).toContain('[core]');
    expect(seen).not.toContain(TOKEN);
    expect(seen).not.toContain(Buffer.from(`x-access-token:${TOKEN}`).toString('base64'));
    expect(
      git(join(job.workspace, 'lib'), 'config', '--get', 'http.https://github.com/.extraheader').trim(),
    ).toBe(header);
    expect(events(job).find((e) => e.type === 'run.finished')?.data.checkoutTokenRestored).toBe(true);
    expect(everything(job, r)).not.toContain(TOKEN);
  }, 60000);
  // The put-back of that token, attacked: the agent moves the submodule's folder away and
  // leaves a link to another folder with a `config` in its place. `run` is root here, and
  // git writes through a link: the token would land in whatever folder the agent chose.
  test("user: agent swaps a submodule's .git/modules folder for a link: the token is put back through no link, and the step says so", async () => {
    const job = newJob();
    const TOKEN = 'ghs_swappedmoduletoken00000000000000000';
    const basic = Buffer.from(`x-access-token:${TOKEN}`).toString('base64');
    const header = `AUTHORIZATION: basic ${basic}`;
    const origin = join(job.root, 'origin');
    const git = (cwd: string, ...args: string[]): string =>
      execFileSync(
        'git',
        ['-C', cwd, '-c', 'user.name=t', '-c', 'user.email=t@e', '-c', 'protocol.file.allow=always', ...args],
        { encoding: 'utf8' },
      );
    execFileSync('git', ['init', '-q', '-b', 'main', origin]);
    writeFileSync(join(origin, 'lib.txt'), 'lib\n');
    git(origin, 'add', '.');
    git(origin, 'commit', '-qm', 'lib');
    execFileSync('git', ['init', '-q', '-b', 'main', job.workspace]);
    git(job.workspace, 'submodule', 'add', '-q', origin, 'lib');
    git(job.workspace, 'commit', '-qm', 'with lib');
    for (const dir of [job.workspace, join(job.workspace, 'lib')])
      git(dir, 'config', '--local', 'http.https://github.com/.extraheader', header);
    // A folder outside the workspace, open to every user, with a config of its own: the
    // place the agent wants the token written (the runner user's, as the submodule's is).
    const elsewhere = join(job.root, 'elsewhere');
    mkdirSync(elsewhere, { mode: 0o755 });
    writeFileSync(join(elsewhere, 'config'), '[core]\n\tbare = false\n', { mode: 0o644 });
    const r = await job.run('run', 'main', {
      inputs: {
        run: `mv .git/modules/lib .git/modules/lib.moved && ln -s ${elsewhere} .git/modules/lib && echo swapped`,
        user: 'agent',
      },
    });
    expect(r.stdout).toContain('swapped');
    expect(lstatSync(join(job.workspace, '.git', 'modules', 'lib')).isSymbolicLink()).toBe(true);
    expect(readFileSync(join(elsewhere, 'config'), 'utf8')).toBe('[core]\n\tbare = false\n');
    expect(readFileSync(join(job.workspace, '.git', 'modules', 'lib.moved', 'config'), 'utf8')).not.toContain(
      basic,
    );
    // What was not swapped is put back as before: the workspace's own .git/config.
    expect(git(job.workspace, 'config', '--get', 'http.https://github.com/.extraheader').trim()).toBe(header);
    expect(events(job).find((e) => e.type === 'run.finished')?.data.checkoutTokenRestored).toBe(false);
    expect(
      r.commands.some(
        (c) => c.command === 'warning' && /checkout token could not be put back/.test(c.message),
      ),
    ).toBe(true);
    expect(everything(job, r)).not.toContain(TOKEN);
    expect(everything(job, r)).not.toContain(basic);
  }, 60000);

  // The agent owns the workspace while it runs: it makes a second name for .git/config's
  // file. Handed back, that file is the runner user's again and its bytes are what run left;
  // the token written back into the file in place would be in the second name too, for the
  // next agent given the workspace (or an artifact) to read.
  test('user: agent hard-links .git/config into the workspace: the token goes back into .git/config only', async () => {
    const job = newJob();
    const TOKEN = 'ghs_hardlinkedconfigtoken000000000000000';
    const basic = Buffer.from(`x-access-token:${TOKEN}`).toString('base64');
    const header = `AUTHORIZATION: basic ${basic}`;
    execFileSync('git', ['init', '-q', job.workspace]);
    execFileSync('git', ['-C', job.workspace, 'config', 'http.https://github.com/.extraheader', header]);
    const r = await job.run('run', 'main', {
      inputs: { run: 'ln .git/config notes.txt && echo linked', user: 'agent' },
    });
    expect(r.stdout).toContain('linked');
    // Before the fix the token was in notes.txt after the step (the leak scan, run after the
    // put-back, then failed the step for it; with leak-scan: warn it stayed there).
    expect(readFileSync(join(job.workspace, 'notes.txt'), 'utf8')).not.toContain(basic);
    expect(r.code).toBe(0);
    expect(
      execFileSync('git', ['-C', job.workspace, 'config', '--get', 'http.https://github.com/.extraheader'], {
        encoding: 'utf8',
      }).trim(),
    ).toBe(header);
    expect(statSync(join(job.workspace, '.git', 'config')).nlink).toBe(1);
    expect(events(job).find((e) => e.type === 'run.finished')?.data.checkoutTokenRestored).toBe(true);
  }, 60000);

  // The agent's command starts through perl (its own session keyring): the workflow's
  // settings for its own perl must neither stop that step nor be lost to the command.
  test("user: agent: the workflow's PERL5OPT, PERL5LIB and an unsupported locale reach the command, which runs", async () => {
    const job = newJob({
      PERL5OPT: '-MNo::Such::Module',
      PERL5LIB: '/nonexistent/lib',
      LC_ALL: 'xx_XX.UTF-8',
    });
    const r = await job.run('run', 'main', {
      inputs: { run: 'echo "opt=$PERL5OPT lib=$PERL5LIB held=${CORDON_HELD_PERL5OPT-none}"', user: 'agent' },
    });
    expect(r.stdout).toContain('opt=-MNo::Such::Module lib=/nonexistent/lib held=none');
    expect(r.stdout + r.stderr).not.toMatch(/Can't locate|locale failed/);
    expect(r.code).toBe(0);
  }, 60000);
});
