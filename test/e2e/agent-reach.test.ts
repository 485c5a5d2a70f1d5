/**
 * What a process of the agent's own user (`user: agent`) can still reach on the machine,
 * outside the workspace: the world-writable directories every user shares (`/tmp`,
 * `/var/tmp`, `/dev/shm`, `/run/lock`) and SysV IPC, which no file mode closes. The agent
 * plants there what a later step, `run` itself among them, would open: a FIFO as the
 * `.git/HEAD` of the temporary directory `run` ran git from, links, files and a shared
 * memory segment that outlive its user. Whole-program runs of dist/run as root; needs
 * useradd, setpriv, mkfifo and ipcmk.
 */
import { afterAll, describe, expect, test } from '@jest/globals';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseLedgerText } from '../../src/ledger/ledger.js';
import { Job } from '../../src/devkit/run-action.js';
import { canMakeUsers } from '../harness/users.js';

const usable =
  canMakeUsers() && ['/usr/bin/setpriv', '/usr/bin/mkfifo', '/usr/bin/ipcmk'].every((f) => existsSync(f));
if (!usable && process.env.CI === 'true')
  throw new Error('agent-reach e2e: needs root, useradd, setpriv, mkfifo and ipcmk (CI=true)');
if (!usable) console.warn('agent-reach e2e skipped: needs root, useradd, setpriv, mkfifo and ipcmk');
const suite = usable ? describe : describe.skip;

const jobs: Job[] = [];
/** Paths in the shared directories this file makes or has the agent make, removed by name. */
const planted: string[] = [];
/** Agents' uids whose SysV IPC objects are removed at the end, whatever the test found. */
const agentUids: number[] = [];
/** Uids whose kernel keys (user, user-session and persistent keyrings) are dropped at the end. */
const keyUids: number[] = [];
/** /etc/cron.deny and /etc/at.deny as they were before the step, put back whatever the test found. */
const denyFiles = new Map<string, string | undefined>();
afterAll(() => {
  for (const [file, text] of denyFiles) {
    if (text === undefined) rmSync(file, { force: true });
    else writeFileSync(file, text);
  }
  for (const p of planted) rmSync(p, { recursive: true, force: true });
  for (const uid of agentUids) {
    for (const o of ipcOf(uid))
      spawnSync('ipcrm', [{ shm: '-m', msg: '-q', sem: '-s' }[o.kind] ?? '-m', o.id]);
  }
  for (const uid of keyUids) asUid(uid, DROP_KEYS);
  for (const j of jobs) rmSync(j.root, { recursive: true, force: true });
});

function newJob(env: Record<string, string> = {}): Job {
  const j = new Job({ env });
  jobs.push(j);
  // As on a runner: the job's folders are open to look into (RUNNER_TEMP is 0755 there).
  chmodSync(j.root, 0o755);
  return j;
}

function finished(job: Job): Record<string, unknown> | undefined {
  const text = readFileSync(join(job.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8');
  return parseLedgerText(text)
    .flatMap((l) => (l.event ? [l.event] : []))
    .filter((e) => e.type === 'run.finished')
    .pop()?.data;
}

const exists = (p: string): boolean => {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
};

/** SysV IPC objects (shared memory, queues, semaphores) whose owner is `uid`: kind and id. */
function ipcOf(uid: number): { kind: string; id: string }[] {
  const found: { kind: string; id: string }[] = [];
  for (const kind of ['shm', 'msg', 'sem']) {
    const [head, ...rows] = readFileSync(`/proc/sysvipc/${kind}`, 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.trim().split(/\s+/));
    for (const r of rows) if (Number(r[head.indexOf('uid')]) === uid) found.push({ kind, id: r[1] });
  }
  return found;
}

/** keyctl(2) and add_key(2) by architecture (perl has no wrapper for either). */
const KEY_SYSCALLS: Partial<Record<string, { keyctl: number; addKey: number }>> = {
  x64: { keyctl: 250, addKey: 248 },
  arm64: { keyctl: 219, addKey: 217 },
};
const keySyscalls = KEY_SYSCALLS[process.arch];
const keysUsable = Boolean(keySyscalls) && existsSync('/proc/key-users') && existsSync('/usr/bin/perl');
/** Perl, as `uid`: `$K` is keyctl's number, `$A` add_key's; prints what the script prints. */
function asUid(uid: number, script: string): string {
  return execFileSync(
    'setpriv',
    [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'perl', '-e', script, ...keyArgs()],
    { encoding: 'utf8' },
  );
}
const keyArgs = (): string[] => [String(keySyscalls?.keyctl), String(keySyscalls?.addKey)];
const PERL_KEYS = 'my ($K, $A) = @ARGV; my ($t, $v) = ("user", "left-by-agent");';
/** Adds a key to the uid's user keyring and one to its persistent keyring; prints their serials. */
const PLANT_KEYS = `${PERL_KEYS}
my ($du, $dp) = ("cordon-planted-u", "cordon-planted-p");
print "user-key ", syscall($A, $t, $du, $v, length($v), -4), "\n";
my $p = syscall($K, 22, -1, -2);
print "persistent-key ", ($p > 0 ? syscall($A, $t, $dp, $v, length($v), $p) : -1), "\n";`;
/** What a later process of the uid finds: the serial of each planted key, or -1. */
const FIND_KEYS = `${PERL_KEYS}
my ($du, $dp) = ("cordon-planted-u", "cordon-planted-p");
print "user-key ", syscall($K, 10, -4, $t, $du, 0), "\n";
my $p = syscall($K, 22, -1, -2);
print "persistent-key ", ($p > 0 ? syscall($K, 10, $p, $t, $dp, 0) : -1), "\n";`;
/** Clears and invalidates the uid's user, user-session and persistent keyrings. */
const DROP_KEYS = `${PERL_KEYS}
my @ids = map { syscall($K, 0, $_, 0) } (-4, -5);
push @ids, syscall($K, 22, -1, -2);
for my $id (grep { $_ > 0 } @ids) { syscall($K, 7, $id); syscall($K, 21, $id); }`;
/** The uid's line in /proc/key-users (keys it owns), if it owns any. */
const keyUser = (uid: number): string | undefined =>
  readFileSync('/proc/key-users', 'utf8')
    .split('\n')
    .find((l) => l.trim().startsWith(`${uid}:`));

suite("the agent's own user: what it leaves where everyone writes", () => {
  // Planted by the agent, or before the step by someone else (nobody), whose files the
  // launcher's cleanup leaves alone: run's git must not wait on it either way.
  test.each(['the agent', 'another user before the step'])(
    "a FIFO planted by %s as .git/HEAD in run's temporary directory: the checkout token still goes back",
    async (who) => {
      const job = newJob();
      // The step's TMPDIR, standing for /tmp: world-writable, sticky.
      const tmp = join(job.root, 'tmp');
      mkdirSync(tmp);
      chmodSync(tmp, 0o1777);
      const TOKEN = 'ghs_fifoplanttoken0000000000000000000000';
      const header = `AUTHORIZATION: basic ${Buffer.from(`x-access-token:${TOKEN}`).toString('base64')}`;
      execFileSync('git', ['init', '-q', job.workspace]);
      execFileSync('git', ['-C', job.workspace, 'config', 'http.https://github.com/.extraheader', header]);
      // git looks for a repository from its working directory up, and reads HEAD before it
      // checks who owns it: a FIFO there holds every git started in that directory.
      const plant = [
        `mkdir -p "${tmp}/.git/objects" "${tmp}/.git/refs"`,
        `mkfifo "${tmp}/.git/HEAD"`,
        `test -p "${tmp}/.git/HEAD" && echo planted`,
      ].join('\n');
      if (who !== 'the agent')
        execFileSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'sh', '-c', plant]);
      const r = await job.run('run', 'main', {
        inputs: { run: who === 'the agent' ? plant : 'true', user: 'agent' },
        env: { TMPDIR: tmp },
        timeoutMs: 60000,
      });
      if (who === 'the agent') expect(r.stdout).toContain('planted');
      else expect(lstatSync(join(tmp, '.git', 'HEAD')).isFIFO()).toBe(true);
      expect(r.code).toBe(0);
      expect(finished(job)?.checkoutTokenRestored).toBe(true);
      expect(
        execFileSync(
          'git',
          ['-C', job.workspace, 'config', '--get', 'http.https://github.com/.extraheader'],
          {
            encoding: 'utf8',
          },
        ).trim(),
      ).toBe(header);
      expect(r.commands.some((c) => /checkout token/.test(c.message ?? ''))).toBe(false);
    },
    90000,
  );

  test("hostile: an earlier step's file-command files and step script in RUNNER_TEMP are closed to the agent while it runs; the mode is back after", async () => {
    const job = newJob();
    // What the runner leaves in RUNNER_TEMP for the job: each step's file-command files (an
    // earlier step exported a secret through GITHUB_ENV; the runner keeps the file until the
    // job ends) and a `run:` step's script, with the secret its expression put in it.
    const SECRET = 'exported-secret-value-7c1f0a';
    const files = join(job.runnerTemp, '_runner_file_commands');
    mkdirSync(files, { recursive: true });
    writeFileSync(join(files, 'set_env_earlier'), `DEPLOY_TOKEN<<EOF\n${SECRET}\nEOF\n`, { mode: 0o644 });
    writeFileSync(join(job.runnerTemp, 'earlier-step.sh'), `curl -H "token: ${SECRET}" x\n`, { mode: 0o644 });
    chmodSync(job.runnerTemp, 0o755);
    chmodSync(files, 0o755);
    const r = await job.run('run', 'main', {
      inputs: {
        run: [
          `if cat "$RUNNER_TEMP"/_runner_file_commands/set_env_* 2>/dev/null | grep -q .; then echo "file-commands WON"; else echo "file-commands held"; fi`,
          `if cat "$RUNNER_TEMP"/*.sh 2>/dev/null | grep -q .; then echo "step-script WON"; else echo "step-script held"; fi`,
          `if ls "$RUNNER_TEMP" >/dev/null 2>&1; then echo "list WON"; else echo "list held"; fi`,
          `if ls "$RUNNER_TEMP/cordon" >/dev/null 2>&1; then echo "cordon-dir WON"; else echo "cordon-dir held"; fi`,
        ].join('\n'),
        user: 'agent',
      },
      timeoutMs: 60000,
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^run: the command runs as cordon-agent-/m);
    for (const a of ['file-commands', 'step-script', 'list', 'cordon-dir'])
      expect(r.stdout).toContain(`${a} held`);
    expect(r.stdout).not.toMatch(/WON/);
    expect(r.stdout).not.toContain(SECRET);
    // Open to others again for the steps after it, as it was.
    expect(statSync(job.runnerTemp).mode & 0o7777).toBe(0o755);
    // Cordon's own directory in it is private whoever made it first.
    expect(statSync(join(job.runnerTemp, 'cordon')).mode & 0o077).toBe(0);
  }, 90000);

  test("a descriptor run inherited open on a file of root's does not reach the agent's command", async () => {
    const job = newJob();
    const secret = join(job.root, 'roots-only');
    writeFileSync(secret, 'inherited-descriptor-content-5d21\n', { mode: 0o600 });
    // A step process started with one more descriptor open than stdio (not close-on-exec),
    // as a parent that leaks one would start it; run as root starts the launcher directly.
    const r = await job.run('run', 'main', {
      inputs: {
        run: [
          `ls -l /proc/$$/fd`,
          `if cat <&200 >/dev/null 2>&1; then echo "inherited-fd WON"; else echo "inherited-fd held"; fi`,
          `if ls -l /proc/$$/fd | grep -q roots-only; then echo "fd-list WON"; else echo "fd-list held"; fi`,
        ].join('\n'),
        user: 'agent',
      },
      wrap: ['/bin/bash', '-c', 'exec 200<"$0"; exec "$@"', secret],
      timeoutMs: 60000,
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^run: the command runs as cordon-agent-/m);
    expect(r.stdout).toContain('inherited-fd held');
    expect(r.stdout).toContain('fd-list held');
    expect(r.stdout).not.toContain('inherited-descriptor-content-5d21');
  }, 90000);

  test("files, a FIFO, a link and a shared memory segment the agent leaves in /tmp, /var/tmp, /dev/shm and /run/lock are gone after the step; no one else's is touched; a program it leaves in someone else's folder loses its set-id bits", async () => {
    const job = newJob();
    const tag = `cordon-left-${process.pid}-${randomBytes(3).toString('hex')}`;
    const shared = join('/tmp', `${tag}-shared`);
    const keep = join('/tmp', `${tag}-keep`);
    planted.push(
      ...['/tmp', '/var/tmp', '/dev/shm', '/run/lock'].flatMap((d) => [
        join(d, tag),
        join(d, `${tag}-dir`),
        join(d, `${tag}-fifo`),
        join(d, `${tag}-link`),
      ]),
      shared,
      keep,
    );
    // Someone else's: a root file, and a world-writable folder of root's holding one.
    writeFileSync(keep, 'root keeps this\n');
    mkdirSync(shared);
    chmodSync(shared, 0o1777);
    writeFileSync(join(shared, 'roots'), 'root keeps this too\n');
    const script = [
      `for d in /tmp /var/tmp /dev/shm /run/lock; do`,
      `  echo plant > "$d/${tag}"`,
      `  mkdir -p "$d/${tag}-dir/deep" && echo x > "$d/${tag}-dir/deep/f"`,
      `  mkfifo "$d/${tag}-fifo"`,
      // A link a later step writing that name would follow.
      `  ln -s /etc/passwd "$d/${tag}-link"`,
      `done`,
      `echo x > "${shared}/agents"`,
      // A program a later step may run from there: set-uid and set-gid to the agent's ids.
      `cp /bin/true "${shared}/setid" && chmod 6755 "${shared}/setid"`,
      `ipcmk -M 4096 && ipcmk -Q && ipcmk -S 1`,
      `echo "uid $(id -u)"`,
    ].join('\n');
    const r = await job.run('run', 'main', { inputs: { run: script, user: 'agent' }, timeoutMs: 60000 });
    const uid = Number(/^uid (\d+)$/m.exec(r.stdout)?.[1]);
    expect(uid).toBeGreaterThan(0);
    agentUids.push(uid);
    expect(r.code).toBe(0);
    const left = planted.filter((p) => p !== shared && p !== keep && exists(p));
    expect(left).toEqual([]);
    // Inside a folder someone else made and opened to all, the agent's file is that folder's
    // owner's business (a scratch folder a later step reads): left, but with no set-id bit.
    expect(readFileSync(join(shared, 'agents'), 'utf8')).toBe('x\n');
    expect(statSync(join(shared, 'setid')).mode & 0o7777).toBe(0o755);
    expect(ipcOf(uid)).toEqual([]);
    // Only the agent's: root's file, folder and the file in it stay as they were.
    expect(readFileSync(keep, 'utf8')).toBe('root keeps this\n');
    expect(readFileSync(join(shared, 'roots'), 'utf8')).toBe('root keeps this too\n');
    expect(lstatSync(shared).mode & 0o7777).toBe(0o1777);
    const user = finished(job)?.agentUser as { leftoversRemoved?: number; problems?: string[] } | undefined;
    // 4 directories x (file, dir, deep dir, deep file, FIFO, link) + 3 IPC objects.
    expect(user?.leftoversRemoved).toBe(4 * 6 + 3);
    expect(user?.problems).toBeUndefined();
    expect(spawnSync('id', ['-u', String(uid)]).status).not.toBe(0);
  }, 90000);

  test('hostile: a POSIX message queue the agent opens is gone after the step, also where /dev/mqueue is not mounted', async () => {
    if (!existsSync('/usr/bin/python3')) {
      if (process.env.CI === 'true') throw new Error('agent-reach e2e: needs /usr/bin/python3 (CI=true)');
      console.warn('mqueue test skipped: needs /usr/bin/python3');
      return;
    }
    const job = newJob();
    const name = `cordon-mq-${process.pid}-${randomBytes(3).toString('hex')}`;
    // The launcher's own mqueue mount (where /dev/mqueue has none) is never seen from this
    // mount namespace (a peer of the runner's): looked for every 2 ms while the step runs.
    const mqMounts = (): string[] =>
      readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .map((l) => l.split(' ')[4] ?? '')
        .filter((m) => m.startsWith('/run/cordon-mqueue-'));
    const seen = new Set<string>();
    const watch = setInterval(() => mqMounts().forEach((m) => seen.add(m)), 2);
    // mq_open(3) through libc: the queue lives in the kernel's mqueue file system whether or
    // not it is mounted anywhere, and keeps its messages after its last process is gone.
    const r = await job
      .run('run', 'main', {
        inputs: {
          run: [
            `echo "uid $(id -u)"`,
            `/usr/bin/python3 -c 'import ctypes, ctypes.util, os; c = ctypes.CDLL(ctypes.util.find_library("rt") or ctypes.util.find_library("c")); fd = c.mq_open(b"/${name}", os.O_CREAT | os.O_RDWR, 0o644, None); print("mq", fd, c.mq_send(fd, b"left-for-later", 14, 0))'`,
          ].join('\n'),
          user: 'agent',
        },
        timeoutMs: 60000,
      })
      .finally(() => clearInterval(watch));
    const uid = Number(/^uid (\d+)$/m.exec(r.stdout)?.[1]);
    expect(uid).toBeGreaterThan(0);
    agentUids.push(uid);
    expect(r.code).toBe(0);
    // No mqueue mount of the launcher's was seen, and none (nor its directory) is left.
    expect([...seen]).toEqual([]);
    expect(mqMounts()).toEqual([]);
    expect(readdirSync('/run').filter((e) => e.startsWith('cordon-mqueue-'))).toEqual([]);
    // Made, with a message in it.
    expect(r.stdout).toMatch(/^mq \d+ 0$/m);
    // Root looks through an mqueue mount of its own (the same queues, whatever is mounted where).
    const look = join(job.root, 'mq');
    mkdirSync(look);
    execFileSync('mount', ['-t', 'mqueue', 'cordon-test-mq', look]);
    let left: string[];
    try {
      left = readdirSync(look).filter((e) => e === name);
      for (const e of left) rmSync(join(look, e), { force: true });
    } finally {
      execFileSync('umount', [look]);
    }
    expect(left).toEqual([]);
    const user = finished(job)?.agentUser as { problems?: string[] } | undefined;
    expect(user?.problems).toBeUndefined();
  }, 90000);

  test('the agent registers a crontab line and an at job: both are refused during the step, no spool entry of its uid is left, and the deny files are back as they were', async () => {
    const crontab = '/usr/bin/crontab';
    const at = '/usr/bin/at';
    if (!existsSync(crontab) || !existsSync(at)) {
      if (process.env.CI === 'true')
        throw new Error('agent-reach e2e: needs cron and at installed (CI=true)');
      console.warn('cron/at test skipped: cron and at are not installed (npm test installs them)');
      return;
    }
    const job = newJob();
    const tag = `${process.pid}-${randomBytes(3).toString('hex')}`;
    planted.push(`/tmp/cordon-cron-x-${tag}`, `/tmp/cordon-at-y-${tag}`);
    const state = (f: string): string | undefined => {
      if (!existsSync(f)) return undefined;
      const st = statSync(f);
      return `${st.mode.toString(8)} ${st.uid}:${st.gid} ${JSON.stringify(readFileSync(f, 'utf8'))}`;
    };
    const before = new Map(['/etc/cron.deny', '/etc/at.deny'].map((f) => [f, state(f)]));
    for (const f of before.keys()) denyFiles.set(f, existsSync(f) ? readFileSync(f, 'utf8') : undefined);
    const script = [
      `echo "uid $(id -u)"`,
      `if echo '* * * * * touch /tmp/cordon-cron-x-${tag}' | crontab -; then echo "crontab WON"; else echo "crontab held"; fi`,
      `if crontab -l >/dev/null 2>&1; then echo "crontab -l WON"; fi`,
      `if echo 'touch /tmp/cordon-at-y-${tag}' | at now + 1 minute; then echo "at WON"; else echo "at held"; fi`,
      `if echo 'touch /tmp/cordon-at-y-${tag}' | batch; then echo "batch WON"; else echo "batch held"; fi`,
    ].join('\n');
    const r = await job.run('run', 'main', { inputs: { run: script, user: 'agent' }, timeoutMs: 60000 });
    const uid = Number(/^uid (\d+)$/m.exec(r.stdout)?.[1]);
    expect(uid).toBeGreaterThan(0);
    agentUids.push(uid);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(/WON/);
    expect(r.stdout).toContain('crontab held');
    expect(r.stdout).toContain('at held');
    expect(r.stdout).toContain('batch held');
    // Refused by the deny file, before crontab tries its spool.
    expect(r.stderr).toMatch(/not allowed to use this program \(crontab\)/);
    const user = finished(job)?.agentUser as
      | { name: string; schedulersDenied?: string[]; scheduledRemoved?: string[]; problems?: string[] }
      | undefined;
    expect(user?.schedulersDenied).toEqual(['cron', 'at']);
    expect(user?.scheduledRemoved).toBeUndefined();
    expect(user?.problems).toBeUndefined();
    // Nothing of its uid in any spool, nor a crontab by its name.
    const spoolOf = (dir: string): string[] =>
      existsSync(dir)
        ? readdirSync(dir).filter((e) => e === user?.name || lstatSync(join(dir, e)).uid === uid)
        : [];
    for (const dir of ['/var/spool/cron/crontabs', '/var/spool/cron/atjobs', '/var/spool/cron/atspool'])
      expect(spoolOf(dir)).toEqual([]);
    // The deny files as they were (content, mode, owner; absent if they were absent).
    for (const [f, was] of before) expect(state(f)).toBe(was);
    // And the user is gone.
    expect(spawnSync('id', ['-u', String(uid)]).status).not.toBe(0);
    expect(readFileSync('/etc/group', 'utf8')).not.toContain(`${user?.name}:`);
  }, 90000);

  test('hostile: with neither /etc/at.allow nor /etc/at.deny (at is root only), no deny file is made for the agent: another user (the runner, say) still cannot queue an at job while the agent runs', async () => {
    if (!existsSync('/usr/bin/at') || existsSync('/etc/at.allow')) {
      if (process.env.CI === 'true')
        throw new Error('agent-reach e2e: needs at installed, no /etc/at.allow (CI=true)');
      console.warn('at-without-deny test skipped: at is not installed, or /etc/at.allow exists');
      return;
    }
    const deny = '/etc/at.deny';
    const saved = existsSync(deny) ? { text: readFileSync(deny), st: statSync(deny) } : undefined;
    if (!denyFiles.has(deny)) denyFiles.set(deny, saved?.text.toString('utf8'));
    const job = newJob();
    const who = join(job.root, 'who.txt');
    const go = join(job.root, 'go');
    writeFileSync(who, '', { mode: 0o666 });
    chmodSync(who, 0o666);
    /** The at jobs of `nobody`, as root sees the queue. */
    const nobodysJobs = (): string[] =>
      execFileSync('atq', { encoding: 'utf8' })
        .split('\n')
        .filter((l) => /\snobody$/.test(l.trim()))
        .map((l) => l.split('\t')[0]);
    let other: { status: number | null; stderr: string } | undefined;
    let denyDuring: boolean | undefined;
    let denyAfter: boolean | undefined;
    try {
      rmSync(deny, { force: true });
      const pending = job.run('run', 'main', {
        inputs: {
          run: [
            `if echo true | at now + 30 minutes; then echo "at WON"; else echo "at held"; fi`,
            `echo "$(id -u)" > ${who}`,
            `for i in $(seq 300); do test -e ${go} && break; sleep 0.1; done`,
          ].join('\n'),
          user: 'agent',
        },
        timeoutMs: 60000,
      });
      let uid = '';
      for (let i = 0; i < 300 && !uid; i++) {
        await new Promise((r) => setTimeout(r, 50));
        uid = readFileSync(who, 'utf8').trim();
      }
      try {
        expect(uid).toMatch(/^\d+$/);
        agentUids.push(Number(uid));
        denyDuring = existsSync(deny);
        // Another user than the agent's, while the agent runs (nobody stands for the runner user).
        other = spawnSync(
          'setpriv',
          ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'at', 'now + 30 minutes'],
          {
            input: 'true\n',
            encoding: 'utf8',
          },
        );
      } finally {
        writeFileSync(go, '');
      }
      const r = await pending;
      denyAfter = existsSync(deny);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('at held');
      expect(r.stdout).not.toMatch(/WON/);
      expect(finished(job)?.agentUser).toMatchObject({ schedulersDenied: ['cron', 'at'] });
    } finally {
      for (const j of nobodysJobs()) execFileSync('atrm', [j]);
      if (saved) {
        writeFileSync(deny, saved.text);
        chmodSync(deny, saved.st.mode & 0o7777);
        execFileSync('chown', [`${saved.st.uid}:${saved.st.gid}`, deny]);
      }
    }
    expect(denyDuring).toBe(false);
    expect(other?.status).not.toBe(0);
    expect(other?.stderr).toMatch(/permission to use at/);
    expect(denyAfter).toBe(false);
  }, 90000);

  test("a crontab and an at job of the agent's that got into the spools anyway (root put them there mid-step) are removed before its user is, and named in run.finished", async () => {
    if (!existsSync('/usr/bin/crontab') || !existsSync('/var/spool/cron/atjobs')) {
      if (process.env.CI === 'true')
        throw new Error('agent-reach e2e: needs cron and at installed (CI=true)');
      console.warn('cron/at spool test skipped: cron and at are not installed (npm test installs them)');
      return;
    }
    const job = newJob();
    const who = join(job.root, 'who.txt');
    const go = join(job.root, 'go');
    writeFileSync(who, '', { mode: 0o666 });
    chmodSync(who, 0o666);
    const pending = job.run('run', 'main', {
      inputs: {
        // Says who it is, then waits (bounded) for the test to have planted its jobs.
        run: `echo "$(id -un) $(id -u)" > ${who}\nfor i in $(seq 300); do test -e ${go} && break; sleep 0.1; done`,
        user: 'agent',
      },
      timeoutMs: 60000,
    });
    let agent: string[] = [];
    for (let i = 0; i < 300 && agent.length < 2; i++) {
      await new Promise((r) => setTimeout(r, 50));
      agent = readFileSync(who, 'utf8').trim().split(' ').filter(Boolean);
    }
    const [name, uidText] = agent;
    const uid = Number(uidText);
    expect(name).toMatch(/^cordon-agent-/);
    agentUids.push(uid);
    // As a scheduler without these guards would have let it: its crontab (as `crontab`
    // writes it: its own, group crontab, 0600; root's `crontab -u` honours cron.deny too),
    // and an at job its uid owns.
    const crontab = join('/var/spool/cron/crontabs', name);
    const atJob = join('/var/spool/cron/atjobs', `a${randomBytes(6).toString('hex')}`);
    planted.push(crontab, atJob);
    try {
      writeFileSync(crontab, `* * * * * touch /tmp/cordon-cron-x-${uid}\n`, { mode: 0o600 });
      execFileSync('chown', [`${uid}:crontab`, crontab]);
      writeFileSync(atJob, `#!/bin/sh\ntouch /tmp/cordon-at-y-${uid}\n`, { mode: 0o700 });
      execFileSync('chown', [`${uid}:daemon`, atJob]);
    } finally {
      // The command ends whatever happened here.
      writeFileSync(go, '');
    }
    const r = await pending;
    expect(r.code).toBe(0);
    expect(existsSync(crontab)).toBe(false);
    expect(existsSync(atJob)).toBe(false);
    const user = finished(job)?.agentUser as { scheduledRemoved?: string[]; problems?: string[] } | undefined;
    expect(user?.scheduledRemoved?.sort()).toEqual([atJob, crontab].sort());
    expect(user?.problems).toBeUndefined();
    expect(spawnSync('id', ['-u', String(uid)]).status).not.toBe(0);
  }, 90000);

  test('keys the agent leaves in its kernel keyrings (its user keyring, its persistent keyring) are gone after the step: a later process given its uid finds none', async () => {
    if (!keysUsable) {
      if (process.env.CI === 'true')
        throw new Error('agent-reach e2e: needs kernel keys, perl and an x64 or arm64 machine (CI=true)');
      console.warn('keyring test skipped: needs kernel keys (/proc/key-users), perl, x64 or arm64');
      return;
    }
    const job = newJob();
    // The agent's own: what it can always do, with no tool beyond perl (keyctl(2) directly).
    const r = await job.run('run', 'main', {
      inputs: { run: `echo "uid $(id -u)"\nperl -e '${PLANT_KEYS}' ${keyArgs().join(' ')}`, user: 'agent' },
      timeoutMs: 60000,
    });
    const uid = Number(/^uid (\d+)$/m.exec(r.stdout)?.[1]);
    expect(uid).toBeGreaterThan(0);
    keyUids.push(uid);
    expect(r.code).toBe(0);
    // Planted: both add_key calls gave a serial.
    expect(r.stdout).toMatch(/^user-key [1-9]\d*$/m);
    expect(r.stdout).toMatch(/^persistent-key [1-9]\d*$/m);
    // The uid owns no key once its user is gone (the kernel frees an invalidated key at once,
    // but its collector runs on its own: five seconds at most).
    let left = keyUser(uid);
    for (let i = 0; i < 100 && left; i++) {
      await new Promise((res) => setTimeout(res, 50));
      left = keyUser(uid);
    }
    // The next agent given this uid (one in 184 per step; on a long-lived runner, in time,
    // every one) looks: nothing of the earlier agent's.
    const found = asUid(uid, FIND_KEYS);
    const user = finished(job)?.agentUser as { leftoversRemoved?: number; problems?: string[] } | undefined;
    expect({ left, found, removed: user?.leftoversRemoved, problems: user?.problems }).toEqual({
      left: undefined,
      found: 'user-key -1\npersistent-key -1\n',
      removed: 2,
      problems: undefined,
    });
  }, 90000);

  test("hostile: a key the agent adds to the session keyring it was started in is not there for a later step's agent", async () => {
    if (!keysUsable) {
      if (process.env.CI === 'true')
        throw new Error('agent-reach e2e: needs kernel keys, perl and an x64 or arm64 machine (CI=true)');
      console.warn('keyring test skipped: needs kernel keys (/proc/key-users), perl, x64 or arm64');
      return;
    }
    // The runner's session keyring, as systemd gives a service (KeyringMode=private): held by
    // the runner for its life, inherited by every step's processes (sudo on Ubuntu keeps it).
    // Here each step joins it by name (its owner may search it: a test's stand-in for inheriting).
    const name = `cordon-ses-${process.pid}`;
    const holder = spawn(
      'perl',
      [
        '-e',
        '$| = 1; my $id = syscall($ARGV[0], 1, $ARGV[1]); $id > 0 or die "join: $!"; syscall($ARGV[0], 5, $id, 0x3f3f0000) == 0 or die "setperm: $!"; print "held\\n"; sleep 120',
        keyArgs()[0],
        name,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the keyring holder did not start in 10 s')), 10000);
        holder.stdout!.once('data', () => {
          clearTimeout(timer);
          resolve();
        });
      });
      const wrap = [
        'perl',
        '-e',
        'my ($k, $n) = splice(@ARGV, 0, 2); syscall($k, 1, $n) > 0 or die "join: $!"; exec @ARGV or die',
        keyArgs()[0],
        name,
      ];
      const plant = `perl -e '${PERL_KEYS} my $d = "cordon-planted-s"; print "session-key ", syscall($A, $t, $d, $v, length($v), -3), "\\n"' ${keyArgs().join(' ')}`;
      const find = `perl -e '${PERL_KEYS} my $d = "cordon-planted-s"; my $k = syscall($K, 10, -3, $t, $d, 0); my $b = "\\0" x 64; my $l = $k > 0 ? syscall($K, 11, $k, $b, 64) : -1; print "found ", ($l > 0 ? substr($b, 0, $l) : "none"), "\\n"' ${keyArgs().join(' ')}`;
      const first = newJob();
      const r1 = await first.run('run', 'main', {
        inputs: { run: `echo "uid $(id -u)"\n${plant}`, user: 'agent' },
        wrap,
        timeoutMs: 60000,
      });
      const uid = Number(/^uid (\d+)$/m.exec(r1.stdout)?.[1]);
      if (uid > 0) keyUids.push(uid);
      expect(r1.code).toBe(0);
      expect(r1.stdout).toMatch(/^session-key [1-9]\d*$/m);
      // A later step's agent, started in the same keyring, looks for it.
      const r2 = await newJob().run('run', 'main', {
        inputs: { run: find, user: 'agent' },
        wrap,
        timeoutMs: 60000,
      });
      expect(r2.code).toBe(0);
      const user = finished(first)?.agentUser as { problems?: string[] } | undefined;
      expect({ found: /^found .*$/m.exec(r2.stdout)?.[0], problems: user?.problems }).toEqual({
        found: 'found none',
        problems: undefined,
      });
    } finally {
      holder.kill('SIGKILL');
    }
  }, 150000);
});
