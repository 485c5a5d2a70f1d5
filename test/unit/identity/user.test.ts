import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  AGENT_UID_MAX,
  AGENT_UID_MIN,
  asAgentArgv,
  createAgentUser,
  identityAvailable,
  privilegedExec,
  processesOf,
  sweepAndRemove,
  type AgentUser,
} from '../../../src/identity/user.js';
import { alive } from '../../harness/proc.js';
import { tempDir } from '../../harness/tmp.js';

const exec = privilegedExec('root');
const made: AgentUser[] = [];
let base: string;
let user: AgentUser;

const asAgent = (argv: string[]) => {
  const [cmd, ...args] = asAgentArgv(user, 'root', argv);
  return spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
};

const statusOf = (pid?: number) => {
  try {
    return readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return '';
  }
};

beforeAll(() => {
  base = tempDir('cordon-home-');
  user = createAgentUser(exec, base);
  made.push(user);
});

afterAll(() => {
  for (const u of made) sweepAndRemove(exec, u);
  rmSync(base, { recursive: true, force: true });
});

test('identityAvailable says root when running as root', () => {
  expect(identityAvailable()).toBe('root');
});

test('the agent user is named for Cordon, locked, in no group but its own, with a HOME it alone owns', () => {
  expect(user.name).toMatch(/^cordon-agent-[0-9a-f]{6}$/);
  // The agents' range, by which the fence tells an agent's sockets from the runner's.
  expect(user.uid).toBeGreaterThanOrEqual(AGENT_UID_MIN);
  expect(user.uid).toBeLessThanOrEqual(AGENT_UID_MAX);
  const shadow = readFileSync('/etc/shadow', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${user.name}:`));
  expect(shadow?.split(':')[1]).toMatch(/^[!*]/);
  expect(execFileSync('id', ['-G', user.name], { encoding: 'utf8' }).trim()).toBe(String(user.gid));
  const home = statSync(user.home);
  expect(home.uid).toBe(user.uid);
  expect(home.mode & 0o777).toBe(0o700);
  expect(readFileSync('/etc/passwd', 'utf8')).toContain(
    `${user.name}:x:${user.uid}:${user.gid}::${user.home}:/bin/bash`,
  );
});

test('the agent user has no sudo', () => {
  const rules = spawnSync('sudo', ['-n', '-l', '-U', user.name], { encoding: 'utf8' });
  expect(`${rules.stdout}${rules.stderr}`).toMatch(/not allowed to run sudo/);
  expect(asAgent(['sudo', '-n', 'true']).status).not.toBe(0);
});

test("a process of the agent cannot write a runner-owned file nor read another user's environ", async () => {
  const dir = tempDir('cordon-runner-');
  const file = join(dir, 'github_env');
  writeFileSync(file, 'A=1\n', { mode: 0o644 });
  // a non-root process, as the runner's own would be
  const other = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sleep', '30'], {
    stdio: 'ignore',
    env: { TOKEN_LIKE: 'x' },
  });
  try {
    for (let i = 0; i < 100 && !/^Uid:\s+65534/m.test(statusOf(other.pid)); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(statusOf(other.pid)).toMatch(/^Uid:\s+65534/m);
    expect(asAgent(['sh', '-c', `echo B=2 >> ${file}`]).status).not.toBe(0);
    expect(readFileSync(file, 'utf8')).toBe('A=1\n');
    for (const pid of [process.pid, other.pid]) {
      const r = asAgent(['cat', `/proc/${pid}/environ`]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/Permission denied/);
    }
  } finally {
    other.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sweepAndRemove kills a double-forked sleep of the uid, deletes user, group and HOME, and can run twice', async () => {
  const victim = createAgentUser(exec, base);
  made.push(victim);
  const [cmd, ...args] = asAgentArgv(victim, 'root', ['sh', '-c', '(setsid sleep 300 &) ; exit 0']);
  await new Promise((resolve) => spawn(cmd, args, { stdio: 'ignore' }).on('exit', resolve));
  let sleepers: number[] = [];
  for (let i = 0; i < 100 && sleepers.length === 0; i++) {
    sleepers = processesOf(victim.uid).map((p) => p.pid);
    await new Promise((r) => setTimeout(r, 20));
  }
  expect(sleepers.length).toBeGreaterThan(0);
  sweepAndRemove(exec, victim);
  expect(sleepers.filter(alive)).toEqual([]);
  expect(readFileSync('/etc/passwd', 'utf8')).not.toContain(`${victim.name}:`);
  expect(readFileSync('/etc/group', 'utf8')).not.toContain(`${victim.name}:`);
  expect(() => statSync(victim.home)).toThrow();
  expect(() => sweepAndRemove(exec, victim)).not.toThrow();
});

test('a home base createAgentUser made, 1755 (0755 and its mark), goes with the removal of the last agent in it', () => {
  const homes = join(tempDir('cordon-homes-'), 'base');
  const first = createAgentUser(exec, homes);
  made.push(first);
  expect((statSync(homes).mode & 0o7777).toString(8)).toBe('1755');
  const second = createAgentUser(exec, homes);
  made.push(second);
  // The second creation sets the base's owner and mode again: the mark stays.
  expect((statSync(homes).mode & 0o7777).toString(8)).toBe('1755');
  sweepAndRemove(exec, second);
  expect(statSync(homes).isDirectory()).toBe(true);
  sweepAndRemove(exec, first);
  expect(() => statSync(homes)).toThrow(/ENOENT/);
});

test("a home base whose maker is removed first stays while another's HOME is in it, then goes with that one; one that was there before stays", () => {
  const homes = join(tempDir('cordon-homes-'), 'base');
  const maker = createAgentUser(exec, homes);
  made.push(maker);
  const other = createAgentUser(exec, homes);
  made.push(other);
  sweepAndRemove(exec, maker);
  // Not empty: rmdir refuses it, and the HOME in it is untouched.
  expect(statSync(other.home).isDirectory()).toBe(true);
  sweepAndRemove(exec, other);
  expect(() => statSync(homes)).toThrow(/ENOENT/);
  // The run's shared base (made by tempDir, before any agent): 0755, no mark, kept.
  const kept = createAgentUser(exec, base);
  made.push(kept);
  expect((statSync(base).mode & 0o7777).toString(8)).toBe('755');
  sweepAndRemove(exec, kept);
  expect(statSync(base).isDirectory()).toBe(true);
});

const agentGroups = () =>
  readFileSync('/etc/group', 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('cordon-agent-'))
    .map((l) => l.split(':')[0]);

/**
 * Runs `fn` while `file` (/etc/passwd or /etc/group) is locked as shadow's tools lock it: a
 * `<file>.lock` naming a live process (this one), as another useradd or vipw holds it. The
 * tool that needs it fails (at once here; some shadow versions retry for up to 15 s). Whatever
 * agent group appears meanwhile is removed afterwards, however the test ends.
 */
function whileLocked(file: string, fn: () => void): void {
  const before = new Set(agentGroups());
  // 'wx': never over a lock someone else holds (the test then fails rather than removing it).
  writeFileSync(`${file}.lock`, String(process.pid), { flag: 'wx' });
  try {
    fn();
  } finally {
    rmSync(`${file}.lock`, { force: true });
    for (const g of agentGroups().filter((g) => !before.has(g)))
      spawnSync('groupdel', [g], { stdio: 'ignore' });
  }
}

test('a useradd that fails (the passwd file locked) takes back the group it added and the home base it made', () => {
  const parent = tempDir('cordon-homes-');
  const homes = join(parent, 'base');
  const before = agentGroups();
  whileLocked('/etc/passwd', () => {
    expect(() => createAgentUser(exec, homes)).toThrow(/`useradd` for cordon-agent-[0-9a-f]{6} failed/);
    expect(agentGroups()).toEqual(before);
    expect(() => statSync(homes)).toThrow(/ENOENT/);
  });
  expect(statSync(parent).isDirectory()).toBe(true);
});

test('a groupadd that fails (the group file locked) takes back the home base it made, and no group', () => {
  const homes = join(tempDir('cordon-homes-'), 'base');
  const before = agentGroups();
  whileLocked('/etc/group', () => {
    expect(() => createAgentUser(exec, homes)).toThrow(/`groupadd` for cordon-agent-[0-9a-f]{6} failed/);
    expect(() => statSync(homes)).toThrow(/ENOENT/);
  });
  expect(agentGroups()).toEqual(before);
});

test("a failed useradd leaves a home base that was there before, empty or holding another agent's HOME", () => {
  const empty = tempDir('cordon-homes-');
  whileLocked('/etc/passwd', () => {
    expect(() => createAgentUser(exec, empty)).toThrow(/`useradd` for cordon-agent-[0-9a-f]{6} failed/);
    // The suite's base, with the suite's agent's HOME in it.
    expect(() => createAgentUser(exec, base)).toThrow(/`useradd` for cordon-agent-[0-9a-f]{6} failed/);
  });
  expect(statSync(empty).isDirectory()).toBe(true);
  expect(statSync(user.home).uid).toBe(user.uid);
}, 120_000);

test('sweepAndRemove refuses a name Cordon did not make', () => {
  expect(() => sweepAndRemove(exec, { name: 'runner', home: '/home/runner' })).toThrow(
    /refusing to remove "runner"/,
  );
  expect(() => sweepAndRemove(exec, { name: 'cordon-agent-abcdef', home: '/home/runner' })).toThrow(
    /refusing/,
  );
});
