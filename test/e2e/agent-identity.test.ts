/**
 * `run` with `user: agent`, as on a GitHub-hosted runner: every step is a non-root
 * "runner" user with passwordless sudo (made here), and the agent's command tries, as a
 * hostile command would, everything the runner user could do to the steps after it and to
 * Cordon's own record. Each attempt must fail; the runner user gets the workspace back.
 * Then the same runner user without sudo: an explicit `user: agent` fails with the fix and
 * the default falls back to `runner`, saying so. Needs root and useradd; under CI their
 * absence fails loudly.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { parseLedgerText } from '../../src/ledger/ledger.js';
import { Job, REPO_ROOT, type StepResult } from '../../src/devkit/run-action.js';
import { alive } from '../harness/proc.js';
import { AGENT_UID_MAX, AGENT_UID_MIN } from '../../src/identity/user.js';
import { canMakeUsers, makeTestUser, type TestUser } from '../harness/users.js';

const usable = canMakeUsers() && existsSetpriv();
if (!usable && process.env.CI === 'true')
  throw new Error('agent-identity e2e: needs root, useradd, runuser and setpriv (CI=true)');
if (!usable) console.warn('agent-identity e2e skipped: needs root, useradd, runuser and setpriv');
const suite = usable ? describe : describe.skip;

function existsSetpriv(): boolean {
  return spawnSync('setpriv', ['--version'], { stdio: 'ignore' }).status === 0;
}

const RUNTIME_TOKEN = 'runtime-token-5b1e77c0d9';
const ID_REQUEST_TOKEN = 'id-request-token-a93f0e21';
const INPUT_SECRET = 'input-secret-value-c4d8e6';

const halves = (k: string, v: string): Record<string, string> => ({
  [`${k}A`]: v.slice(0, 8),
  [`${k}B`]: v.slice(8),
});

const events = (text: string): { type: string; action: string; data: Record<string, unknown> }[] =>
  parseLedgerText(text).flatMap((l) => (l.event ? [l.event] : []));

/** Every attack prints `<name> WON` or `<name> held`; the test wants `held` for each. */
const HOSTILE = String.raw`
try() { name=$1; shift; if ( "$@" ) >/dev/null 2>&1; then echo "$name WON"; else echo "$name held"; fi; }
try github-env sh -c 'echo LD_PRELOAD=/tmp/evil.so >> "$GITHUB_ENV"'
try github-env-bash sh -c 'echo BASH_ENV=/tmp/evil.sh >> "$GITHUB_ENV"'
try github-path sh -c 'echo /tmp/evil-bin >> "$GITHUB_PATH"'
try github-output sh -c 'echo forged=1 >> "$GITHUB_OUTPUT"'
try github-state sh -c 'echo ledger-head=0 >> "$GITHUB_STATE"'
try step-summary sh -c 'echo "## Record intact (forged)" >> "$GITHUB_STEP_SUMMARY"'
try file-command-dir sh -c 'touch "$(dirname "$GITHUB_ENV")/set_env_99"'
try ledger-append sh -c 'echo "{}" >> "$RUNNER_TEMP/cordon/ledger.jsonl"'
try runner-temp sh -c 'touch "$RUNNER_TEMP/planted"'
try action-files sh -c 'echo "console.log(1)" > "$ACTION_COPY/dist/start/post.js"'
try earlier-credentials sh -c 'cat "$RUNNER_TEMP/cordon/aws/credentials"'
try sudo sudo -n true
try docker-group sh -c 'id -Gn | tr " " "\n" | grep -qx docker'
# The parent's environment and memory: every process on the machine, searched for the runner's tokens.
# The needles are given in halves: whole, they stand only in a file of the agent's own.
printf '%s%s\n%s%s\n%s%s\n' "$N1A" "$N1B" "$N2A" "$N2B" "$N3A" "$N3B" > "$HOME/needles"
found=""
for p in /proc/[0-9]*; do
  for f in environ cmdline; do
    if grep -qa -f "$HOME/needles" "$p/$f" 2>/dev/null; then found="$found $p/$f"; fi
  done
done
if [ -n "$found" ]; then echo "proc-read WON:$found"; else echo "proc-read held"; fi
runpid=$(pgrep -u "$RUNNER_NAME" -f 'dist/run/main.js' | head -1)
echo "run pid $runpid"
try proc-maps sh -c "test -n \"$runpid\" && cat /proc/$runpid/maps"
# Opening run's memory at all takes ptrace access (the open checks it, before any read).
try proc-mem sh -c "test -n \"$runpid\" && exec 3< /proc/$runpid/mem"
[ -n "$NO_KILL" ] || try kill-run kill -9 "$runpid"
# Work in the workspace as if it owned it.
cp /bin/true suid-tool && chmod 6755 suid-tool && echo "suid made"
echo agent-wrote > made-by-agent.txt && mkdir -p agent-dir/deep && echo x > agent-dir/deep/f && echo "workspace ok"
echo "edited" >> tracked.txt && echo "edit ok"
# A commit that looks signed, then programs for whoever runs git here next (the runner user, with sudo).
tree=$(git write-tree) && parent=$(git rev-parse HEAD)
printf 'tree %s\nparent %s\nauthor A <a@example.com> 1700000000 +0000\ncommitter A <a@example.com> 1700000000 +0000\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n forged\n -----END PGP SIGNATURE-----\n\nsigned-looking\n' "$tree" "$parent" > "$HOME/commit"
signed=$(git hash-object -t commit -w "$HOME/commit") && git update-ref refs/heads/signed "$signed" && echo "signed $signed"
printf '#!/bin/sh\necho "$0" >> "%s/git-program-ran"\n' "$PWD" > evil.sh && chmod 755 evil.sh
git config core.fsmonitor "$PWD/evil.sh" && git config gpg.program "$PWD/evil.sh" && git config log.showSignature true && cp evil.sh .git/hooks/post-checkout && echo "git-config set"
# Hand results back the one way there is.
echo "answer=42" >> "$CORDON_OUTPUT"
setsid nohup sleep 600 >/dev/null 2>&1 &
echo "sleeper $!"
echo "whoami $(id -un) $(id -u) groups $(id -G)"
echo "home $HOME"
`;

suite('run as its own Unix user, steps as a runner user with passwordless sudo', () => {
  let runnerUser: TestUser;
  let job: Job;
  let runStep: StepResult;
  let actionCopy: string;
  let hostileEnv: Record<string, string>;
  let start: StepResult;
  const before = new Set<string>();

  beforeAll(async () => {
    runnerUser = makeTestUser('crun', { sudo: true });
    job = new Job();
    chmodSync(job.root, 0o755);
    // The actions' files, where a runner keeps them: the runner user's.
    actionCopy = join(job.root, '_actions', 'cordon');
    mkdirSync(join(actionCopy, 'dist', 'start'), { recursive: true });
    cpSync(join(REPO_ROOT, 'dist', 'start', 'post.js'), join(actionCopy, 'dist', 'start', 'post.js'));
    // An earlier step's credentials, as actions/aws writes them.
    mkdirSync(join(job.runnerTemp, 'cordon', 'aws'), { recursive: true, mode: 0o700 });
    writeFileSync(join(job.runnerTemp, 'cordon', 'aws', 'credentials'), 'aws_secret_access_key = earlier\n', {
      mode: 0o600,
    });
    execFileSync('git', ['init', '-q', '-b', 'main', job.workspace]);
    writeFileSync(join(job.workspace, 'tracked.txt'), 'one\n');
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
    job.env.GITHUB_SHA = execFileSync('git', ['-C', job.workspace, 'rev-parse', 'HEAD'], {
      encoding: 'utf8',
    }).trim();
    for (const l of readFileSync('/etc/passwd', 'utf8').split('\n')) before.add(l.split(':')[0]);
    const wrap = runnerUser.wrap(job.root);
    start = await job.run('start', 'main', { wrap });
    expect(start.code).toBe(0);
    hostileEnv = {
      ACTIONS_RUNTIME_TOKEN: RUNTIME_TOKEN,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: ID_REQUEST_TOKEN,
      ACTIONS_ID_TOKEN_REQUEST_URL: 'http://127.0.0.1:9/token',
      // Every input is in run's environment, as the runner sets them (a key among them; run
      // refuses an input it does not declare, so the key rides in one it does).
      'INPUT_SECRETS-JSON': JSON.stringify({ DEPLOY_KEY: INPUT_SECRET }),
      // What the agent greps for, in halves.
      ...halves('N1', RUNTIME_TOKEN),
      ...halves('N2', ID_REQUEST_TOKEN),
      ...halves('N3', INPUT_SECRET),
      RUNNER_NAME: runnerUser.name,
      ACTION_COPY: actionCopy,
    };
    runStep = await job.run('run', 'main', {
      inputs: { run: HOSTILE },
      env: hostileEnv,
      wrap,
      timeoutMs: 60000,
    });
  }, 120000);

  afterAll(() => {
    runnerUser?.remove();
  });

  test('the command ran as a user made for this step: no sudo, no supplementary groups, a home of its own', () => {
    const who = /whoami (\S+) (\d+) groups ([\d ]+)/.exec(runStep.stdout);
    expect(who?.[1]).toMatch(/^cordon-agent-/);
    expect(Number(who?.[2])).not.toBe(runnerUser.uid);
    expect(who?.[3].trim().split(' ')).toHaveLength(1);
    expect(runStep.stdout).toContain('sudo held');
    expect(runStep.stdout).toContain('docker-group held');
  });

  test('the attacks found their targets (run\'s pid among them), so "held" means held', () => {
    expect(runStep.stdout).toMatch(/^run pid \d+$/m);
  });

  test.each([
    'github-env',
    'github-env-bash',
    'github-path',
    'github-output',
    'github-state',
    'step-summary',
    'file-command-dir',
    'ledger-append',
    'runner-temp',
    'action-files',
    'earlier-credentials',
    'proc-read',
    'proc-maps',
    'proc-mem',
    'kill-run',
  ])('the agent cannot: %s', (attack) => {
    expect(runStep.stdout).toContain(`${attack} held`);
    expect(runStep.stdout).not.toContain(`${attack} WON`);
  });

  test('nothing reached the steps after it: no variable, PATH entry or forged summary; run ended normally', () => {
    expect(runStep.code).toBe(0);
    expect(runStep.env).toEqual({});
    expect(runStep.path).toEqual([]);
    expect(runStep.summary).not.toContain('forged');
    expect(runStep.outputs.forged).toBeUndefined();
  });

  test("the agent's hand-back file became the step's output", () => {
    expect(runStep.outputs.answer).toBe('42');
  });

  test('the workspace is the runner user\'s again, the agent\'s files included; git works without "dubious ownership"', () => {
    expect(runStep.stdout).toContain('workspace ok');
    expect(runStep.stdout).toContain('edit ok');
    const owners = (dir: string): number[] =>
      readdirSync(dir, { withFileTypes: true, recursive: true }).map(
        (e) => statSync(join(e.parentPath, e.name)).uid,
      );
    expect(new Set(owners(job.workspace))).toEqual(new Set([runnerUser.uid]));
    expect(statSync(join(job.workspace, 'agent-dir', 'deep', 'f')).uid).toBe(runnerUser.uid);
    // A set-uid file the agent made through the mount would be the runner's: its bits are cleared.
    expect(runStep.stdout).toContain('suid made');
    expect(statSync(join(job.workspace, 'suid-tool')).mode & 0o6000).toBe(0);
    expect(readFileSync('/proc/mounts', 'utf8')).not.toContain(job.workspace);
    const st = spawnSync(
      'runuser',
      ['-u', runnerUser.name, '--', 'git', '-C', job.workspace, 'status', '--porcelain'],
      {
        encoding: 'utf8',
      },
    );
    expect(st.stderr).not.toMatch(/dubious/);
    expect(st.stdout).toContain('made-by-agent.txt');
  });

  test('no process of the agent outlives the step, and its user is gone', () => {
    const sleeper = Number(/sleeper (\d+)/.exec(runStep.stdout)?.[1]);
    expect(sleeper).toBeGreaterThan(1);
    expect(alive(sleeper)).toBe(false);
    const agent = /whoami (\S+)/.exec(runStep.stdout)?.[1] ?? '';
    const users = readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .map((l) => l.split(':')[0]);
    expect(users).not.toContain(agent);
    expect(users.filter((u) => !before.has(u))).toEqual([]);
  });

  test('the summary says who the agent was: its own Unix user, made for the step and removed at its end', async () => {
    const post = await job.run('start', 'post', { state: start.state, wrap: runnerUser.wrap(job.root) });
    const agent = /whoami (\S+) (\d+)/.exec(runStep.stdout);
    const row = post.summary
      .split('\n')
      .find((l) => l.includes('Unix user') && l.includes(agent?.[1] ?? '?'));
    expect(row).toContain(`uid ${agent?.[2]}, made for this step (via sudo), removed at its end`);
  });

  test('a signal to the launcher mid-command still ends it all: processes, mount, user', async () => {
    const launcher = new RegExp(
      `^${process.execPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} .*dist/run/agent\\.js`,
    );
    const pending = job.run('run', 'main', {
      inputs: { run: 'echo waiting; sleep 30' },
      wrap: runnerUser.wrap(job.root),
      timeoutMs: 60000,
    });
    let pid = 0;
    for (let i = 0; i < 200 && !pid; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const found = spawnSync('pgrep', ['-f', launcher.source], { encoding: 'utf8' }).stdout.trim();
      const users = readFileSync('/etc/passwd', 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('cordon-agent-'));
      if (found && users.length && readFileSync('/proc/mounts', 'utf8').includes(job.workspace))
        pid = Number(found.split('\n')[0]);
    }
    expect(pid).toBeGreaterThan(1);
    process.kill(pid, 'SIGTERM');
    const r = await pending;
    expect(r.code).not.toBe(0);
    expect(readFileSync('/etc/passwd', 'utf8')).not.toMatch(/^cordon-agent-/m);
    expect(readFileSync('/proc/mounts', 'utf8')).not.toContain(job.workspace);
    // Zombies hold nothing (this machine's pid 1 does not reap them): live processes only.
    const live = spawnSync('ps', ['-eo', 'uid=,stat='], { encoding: 'utf8' })
      .stdout.split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter(
        ([uid, stat]) =>
          Number(uid) >= AGENT_UID_MIN && Number(uid) <= AGENT_UID_MAX && !stat?.startsWith('Z'),
      );
    expect(live).toEqual([]);
  }, 60000);

  test("git programs the agent wrote into .git ran in no later git (start's post, the runner's git status): put back and named", () => {
    expect(runStep.stdout).toContain('git-config set');
    expect(existsSync(join(job.workspace, 'git-program-ran'))).toBe(false);
    expect(readFileSync(join(job.workspace, '.git', 'config'), 'utf8')).not.toContain('evil.sh');
    expect(existsSync(join(job.workspace, '.git', 'hooks', 'post-checkout'))).toBe(false);
    const finished = events(readFileSync(join(job.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8')).find(
      (e) => e.type === 'run.finished',
    )?.data;
    expect(finished?.gitRestored).toEqual(['.git/config', '.git/hooks/post-checkout']);
    const signed = /signed ([0-9a-f]{40})/.exec(runStep.stdout)?.[1] ?? '?';
    const observed = events(readFileSync(join(job.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8')).find(
      (e) => e.type === 'commits.observed',
    )?.data as { commits: { sha: string; signature: string }[] } | undefined;
    expect(observed?.commits).toEqual([
      expect.objectContaining({ sha: signed, signature: 'signed, not verified by Cordon' }),
    ]);
  });

  test('a submodule config the agent left including a FIFO does not hold the next run step', async () => {
    // A submodule's config is not put back (T43): the agent leaves one whose include.path
    // names a FIFO no one writes to, for the next step's search for the checkout token.
    const plant = [
      'mkdir -p .git/modules/evil',
      'mkfifo .git/modules/evil/pipe',
      'printf "[include]\\n\\tpath = %s\\n" "$PWD/.git/modules/evil/pipe" > .git/modules/evil/config',
      'echo planted',
    ].join(' && ');
    const a = await job.run('run', 'main', {
      inputs: { run: plant },
      wrap: runnerUser.wrap(job.root),
      timeoutMs: 60000,
    });
    expect(a.stdout).toContain('planted');
    expect(statSync(join(job.workspace, '.git', 'modules', 'evil', 'pipe')).isFIFO()).toBe(true);
    const b = await job.run('run', 'main', {
      inputs: { run: 'echo second step ran' },
      wrap: runnerUser.wrap(job.root),
      timeoutMs: 30000,
    });
    expect(b.stdout).toContain('second step ran');
    expect(b.code).toBe(0);
  }, 120000);

  test('the control: the same command as the runner user (user: runner) wins each of these; run puts the file commands back', async () => {
    const r = await job.run('run', 'main', {
      inputs: { run: HOSTILE, user: 'runner' },
      env: { ...hostileEnv, NO_KILL: '1' },
      wrap: runnerUser.wrap(job.root),
      timeoutMs: 60000,
    });
    for (const attack of [
      'github-env',
      'github-path',
      'step-summary',
      'ledger-append',
      'action-files',
      'earlier-credentials',
      'proc-read',
      'proc-maps',
    ])
      expect(r.stdout).toContain(`${attack} WON`);
    expect(r.env).toEqual({});
    expect(r.path).toEqual([]);
    expect(r.summary).not.toContain('forged');
  });

  test('run.started names the user, its uid and the mode; no token or secret reached a log, the ledger or the summary', () => {
    const ledger = readFileSync(join(job.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8');
    const started = events(ledger).find((e) => e.type === 'run.started')?.data;
    const agent = /whoami (\S+) (\d+)/.exec(runStep.stdout);
    expect(started).toMatchObject({ user: { mode: 'agent', name: agent?.[1], uid: Number(agent?.[2]) } });
    for (const v of [RUNTIME_TOKEN, ID_REQUEST_TOKEN, INPUT_SECRET]) {
      expect(ledger).not.toContain(v);
      expect(runStep.summary).not.toContain(v);
    }
    for (const v of [RUNTIME_TOKEN, ID_REQUEST_TOKEN, INPUT_SECRET]) expect(runStep.stdout).not.toContain(v);
  });
});

suite('run without sudo: user: agent fails with the fix, the default falls back to runner', () => {
  let plain: TestUser;
  let job: Job;
  beforeAll(() => {
    plain = makeTestUser('cnos', { sudo: false });
    job = new Job();
    chmodSync(job.root, 0o755);
  });
  afterAll(() => plain?.remove());

  test('an explicit user: agent fails and names the fix; the command never runs', async () => {
    const r = await job.run('run', 'main', {
      inputs: { run: 'echo ran > ran.txt', user: 'agent' },
      wrap: plain.wrap(job.root),
    });
    expect(r.code).not.toBe(0);
    const err = r.commands.find((c) => c.command === 'error')?.message ?? '';
    expect(err).toMatch(/user/);
    expect(err).toMatch(/sudo/);
    expect(err).toMatch(/user: runner/);
    expect(() => statSync(join(job.workspace, 'ran.txt'))).toThrow();
  });

  test('the default runs as the runner user and says so in the log and the ledger', async () => {
    const r = await job.run('run', 'main', { inputs: { run: 'id -un' }, wrap: plain.wrap(job.root) });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(plain.name);
    expect(r.commands.some((c) => c.command === 'warning' && /runner user/.test(c.message))).toBe(true);
    const started = events(readFileSync(join(job.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8')).find(
      (e) => e.type === 'run.started',
    )?.data;
    expect(started).toMatchObject({ user: { mode: 'runner', fallback: true } });
  });

  test('as the runner user, file commands the command wrote are put back and named as tampering', async () => {
    const r = await job.run('run', 'main', {
      inputs: {
        run: 'echo LD_PRELOAD=/tmp/x.so >> "$GITHUB_ENV"; echo /tmp/evil >> "$GITHUB_PATH"; echo "forged" >> "$GITHUB_STEP_SUMMARY"',
        user: 'runner',
      },
      wrap: plain.wrap(job.root),
    });
    expect(r.env).toEqual({});
    expect(r.path).toEqual([]);
    expect(r.summary).not.toContain('forged');
    const ev = events(readFileSync(join(job.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8'));
    const finished = ev.filter((e) => e.type === 'run.finished').pop()?.data;
    expect(finished?.fileCommandsTampered).toMatchObject({
      env: ['LD_PRELOAD'],
      path: ['/tmp/evil'],
      summary: true,
    });
    expect(r.commands.some((c) => c.command === 'error' || c.command === 'warning')).toBe(true);
  });
});
