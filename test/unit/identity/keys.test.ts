/**
 * removeKeys: the kernel keys a uid left in its user, user-session and persistent keyrings
 * are unlinked and freed, as that uid, and no one else's. Adds real keys as uids no user
 * holds; needs root, perl and an x64 or arm64 kernel with keys. The pure checks (no key, an
 * unknown architecture, a failing clear) run anywhere.
 */
import { afterAll, describe, expect, test } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  KEYCTL_SYSCALL,
  inOwnSessionKeyring,
  ownSessionEnv,
  ownsKeys,
  removeKeys,
} from '../../../src/identity/keys.js';
import { privilegedExec, type PrivilegedExec } from '../../../src/identity/user.js';
import { tempDir } from '../../harness/tmp.js';

/** add_key(2) by architecture, for planting only. */
const ADD_KEY: Partial<Record<string, number>> = { x64: 248, arm64: 217 };
const usable =
  process.getuid?.() === 0 &&
  ADD_KEY[process.arch] !== undefined &&
  existsSync('/proc/key-users') &&
  existsSync('/usr/bin/perl') &&
  existsSync('/usr/bin/setpriv');
const real = usable ? describe : describe.skip;

/** Uids no user holds, outside the agents' range: the agent's, and someone else's. */
const AGENT = 60997;
const OTHER = 60996;

function asUid(uid: number, script: string): string {
  return execFileSync(
    'setpriv',
    [
      `--reuid=${uid}`,
      `--regid=${uid}`,
      '--clear-groups',
      'perl',
      '-e',
      `my ($K, $A) = @ARGV; my ($t, $v) = ("user", "left-behind"); ${script}`,
      String(KEYCTL_SYSCALL[process.arch]),
      String(ADD_KEY[process.arch]),
    ],
    { encoding: 'utf8' },
  );
}

/** A key in the uid's user keyring, one in its user-session keyring and one in its persistent keyring. */
const PLANT = `
my ($a, $b, $c) = ("k-user", "k-session", "k-persistent");
syscall($A, $t, $a, $v, length($v), -4) > 0 or die "user: $!";
syscall($A, $t, $b, $v, length($v), -5) > 0 or die "session: $!";
my $p = syscall($K, 22, -1, -2); $p > 0 or die "persistent: $!";
syscall($A, $t, $c, $v, length($v), $p) > 0 or die "in persistent: $!";`;
/** What a later process of the uid finds of them (-1 each when nothing). */
const FIND = `
my ($a, $b, $c) = ("k-user", "k-session", "k-persistent");
my $p = syscall($K, 22, -1, -2);
print join(" ", syscall($K, 10, -4, $t, $a, 0), syscall($K, 10, -5, $t, $b, 0), syscall($K, 10, $p, $t, $c, 0)), "\\n";`;
const DROP = `
my @ids = map { syscall($K, 0, $_, 0) } (-4, -5); push @ids, syscall($K, 22, -1, -2);
for my $id (grep { $_ > 0 } @ids) { syscall($K, 7, $id); syscall($K, 21, $id); }`;

afterAll(() => {
  if (usable) for (const uid of [AGENT, OTHER]) asUid(uid, DROP);
});

real('removeKeys, with real keys', () => {
  test("a uid's keys in its user, user-session and persistent keyrings are freed: a later process of the uid finds none", () => {
    asUid(AGENT, PLANT);
    expect(ownsKeys(AGENT)).toBe(true);
    const r = removeKeys(privilegedExec('root'), AGENT, AGENT);
    expect(r).toEqual({ removed: 3, problems: [] });
    expect(ownsKeys(AGENT)).toBe(false);
    // As the next agent given the uid would look.
    expect(asUid(AGENT, FIND).trim()).toBe('-1 -1 -1');
  });

  test("someone else's keys stay: the clearing runs as the uid, and touches its own keyrings only", () => {
    asUid(AGENT, PLANT);
    asUid(OTHER, PLANT);
    expect(removeKeys(privilegedExec('root'), AGENT, AGENT).removed).toBe(3);
    expect(ownsKeys(OTHER)).toBe(true);
    expect(asUid(OTHER, FIND).trim()).toMatch(/^[1-9]\d* [1-9]\d* [1-9]\d*$/);
    asUid(OTHER, DROP);
  });
});

real('the command in a session keyring of its own', () => {
  /**
   * In a fresh session keyring (as systemd gives the runner's service, inherited by every
   * step): `first` runs, then `then`; what `then` prints.
   */
  function inSession(first: string[], then: string[]): string {
    return execFileSync(
      'perl',
      [
        '-e',
        'my $K = shift; syscall($K, 1, 0) > 0 or die "join: $!"; my $n = shift; system(splice(@ARGV, 0, $n)) == 0 or die "first: $?"; exec @ARGV',
        String(KEYCTL_SYSCALL[process.arch]),
        String(first.length),
        ...first,
        ...then,
      ],
      { encoding: 'utf8' },
    );
  }
  const as = (uid: number, argv: string[]): string[] => [
    'setpriv',
    `--reuid=${uid}`,
    `--regid=${uid}`,
    '--clear-groups',
    ...argv,
  ];
  const perl = (script: string): string[] => [
    '/usr/bin/perl',
    '-e',
    `my ($K, $A) = @ARGV; my ($t, $v, $d) = ("user", "left-behind", "k-inherited"); ${script}`,
    String(KEYCTL_SYSCALL[process.arch]),
    String(ADD_KEY[process.arch]),
  ];
  const plant = perl('syscall($A, $t, $d, $v, length($v), -3) > 0 or die "add: $!";');
  const find = perl('print syscall($K, 10, -3, $t, $d, 0), "\\n";');

  test('hostile: a key the command adds to its session keyring is not found by a later process of another uid in the one it inherited', () => {
    // The attack as it was: the agent's key, in the inherited keyring, found by someone else.
    expect(inSession(as(AGENT, plant), as(OTHER, find)).trim()).toMatch(/^[1-9]\d*$/);
    const own = inOwnSessionKeyring(plant);
    expect(own.problem).toBeUndefined();
    expect(inSession(as(AGENT, own.argv), as(OTHER, find)).trim()).toBe('-1');
    // Its own keyring went with its process: the uid owns nothing.
    let owns = ownsKeys(AGENT);
    for (let i = 0; i < 100 && owns; i++) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
      owns = ownsKeys(AGENT);
    }
    expect(owns).toBe(false);
  });
});

describe('inOwnSessionKeyring, where the kernel refuses keys', () => {
  test('a kernel without keys or a filter that refuses them (a runner in a container) still runs the command; another failure stops it', () => {
    if (!existsSync('/usr/bin/perl')) return;
    // A system call number no kernel has: ENOSYS, as a kernel without keys answers.
    const none = inOwnSessionKeyring(['/bin/echo', 'ran'], { keyctl: 4095 });
    expect(none.problem).toBeUndefined();
    expect(execFileSync(none.argv[0], none.argv.slice(1), { encoding: 'utf8' })).toBe('ran\n');
    // A call that fails for another reason stops it: pipe2's number, called as (1, 0), is EFAULT.
    const other = inOwnSessionKeyring(['/bin/echo', 'ran'], { keyctl: process.arch === 'x64' ? 293 : 59 });
    const r = spawnSync(other.argv[0], other.argv.slice(1), { encoding: 'utf8' });
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain("cordon: the agent's own session keyring:");
  });
});

describe("inOwnSessionKeyring, with the workflow's perl settings", () => {
  test('PERL5OPT, PERL5LIB, PERL5DB and an unsupported locale reach the command as they were and do not stop it or write to its stderr', () => {
    if (!existsSync('/usr/bin/perl')) return;
    const env = {
      PATH: '/usr/bin:/bin',
      PERL5OPT: '-MNo::Such::Module',
      PERL5LIB: '/nonexistent/lib',
      PERL5DB: 'BEGIN { die "debugger" }',
      LC_ALL: 'xx_XX.UTF-8',
    };
    const own = inOwnSessionKeyring(['/usr/bin/env']);
    // As the workflow's env was handed to perl: the command did not start.
    const plain = spawnSync(own.argv[0], own.argv.slice(1), { env, encoding: 'utf8' });
    expect(plain.status).not.toBe(0);
    const r = spawnSync(own.argv[0], own.argv.slice(1), { env: ownSessionEnv(env), encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.split('\n').filter(Boolean).sort()).toEqual(
      Object.entries(env)
        .map(([k, v]) => `${k}=${v}`)
        .sort(),
    );
  });
});

describe('inOwnSessionKeyring, what the command gets', () => {
  test('its argv word for word (spaces, quotes, newlines, empty words, a leading dash), its exit status and the signal that killed it', () => {
    if (!existsSync('/usr/bin/perl')) return;
    const words = ['a b', '', 'x\ny', `q'"\\`, '-e', '--', 'é'];
    const own = inOwnSessionKeyring(['/usr/bin/printf', '[%s]\n', ...words]);
    const r = spawnSync(own.argv[0], own.argv.slice(1), { encoding: 'utf8' });
    expect(r.stdout).toBe(words.map((w) => `[${w}]\n`).join(''));
    const exit = inOwnSessionKeyring(['/bin/sh', '-c', 'exit 200']);
    expect(spawnSync(exit.argv[0], exit.argv.slice(1)).status).toBe(200);
    const killed = inOwnSessionKeyring(['/bin/sh', '-c', 'kill -TERM $$']);
    const k = spawnSync(killed.argv[0], killed.argv.slice(1));
    expect([k.status, k.signal]).toEqual([null, 'SIGTERM']);
    const input = inOwnSessionKeyring(['/bin/cat']);
    expect(spawnSync(input.argv[0], input.argv.slice(1), { input: 'stdin\n', encoding: 'utf8' }).stdout).toBe(
      'stdin\n',
    );
  });
});

describe('inOwnSessionKeyring, without the means', () => {
  test('the command runs as given, and why is said, without perl or a known keyctl number', () => {
    const argv = ['/bin/sh', '-c', 'true'];
    expect(inOwnSessionKeyring(argv, { arch: 'x64', exists: () => false })).toEqual({
      argv,
      problem:
        "the agent's command ran in the session keyring it inherited (perl is not installed): a key it added there may be found by later steps",
    });
    expect(inOwnSessionKeyring(argv, { arch: 'mips', exists: () => true }).problem).toContain(
      "keyctl's system call number on mips is not known",
    );
    const own = inOwnSessionKeyring(argv, { arch: 'arm64', exists: (p) => p === '/bin/perl' });
    expect(own.argv.slice(0, 2)).toEqual(['/bin/perl', '-e']);
    expect(own.argv.slice(3)).toEqual(['--', '219', ...argv]);
  });
});

describe('removeKeys, without keys to remove', () => {
  const keyUsers = (text: string): string => {
    const f = join(tempDir('key-users-'), 'key-users');
    writeFileSync(f, text);
    return f;
  };
  const line = (uid: number): string =>
    `    0:     9 9/9 9/1000000 90/25000000\n${uid}:     2 2/2 2/200 30/20000\n`;
  const calls: string[][] = [];
  const recording: PrivilegedExec = (cmd, args) => {
    calls.push([cmd, ...args]);
    return '2\n';
  };

  test('a uid that owns no key: nothing runs, nothing is reported', () => {
    calls.length = 0;
    expect(removeKeys(recording, 61001, 61001, { keyUsers: keyUsers(line(61002)) })).toEqual({
      removed: 0,
      problems: [],
    });
    expect(calls).toEqual([]);
  });

  test('a kernel without keys (no /proc/key-users): nothing runs', () => {
    calls.length = 0;
    expect(removeKeys(recording, 61001, 61001, { keyUsers: '/nonexistent/key-users' }).problems).toEqual([]);
    expect(calls).toEqual([]);
  });

  test('keys on an architecture whose keyctl number is not known: named as not removed, nothing run', () => {
    calls.length = 0;
    const r = removeKeys(recording, 61001, 61001, {
      keyUsers: keyUsers(line(61001)),
      arch: 'mips',
      settleMs: 0,
    });
    expect(r.removed).toBe(0);
    expect(r.problems).toEqual([
      "the agent's kernel keys were not removed: keyctl's system call number on mips is not known",
    ]);
    expect(calls).toEqual([]);
  });

  test('the clearing runs as the uid and its group, groups cleared, through perl; keys still owned after it are named', () => {
    calls.length = 0;
    const r = removeKeys(recording, 61001, 61005, {
      keyUsers: keyUsers(line(61001)),
      arch: 'x64',
      settleMs: 0,
    });
    expect(calls).toHaveLength(1);
    expect(calls[0].slice(0, 7)).toEqual([
      'setpriv',
      '--reuid=61001',
      '--regid=61005',
      '--clear-groups',
      '--',
      'perl',
      '-e',
    ]);
    expect(calls[0].at(-1)).toBe('250');
    expect(r.removed).toBe(2);
    expect(r.problems).toEqual([
      "the agent's uid 61001 still owns kernel keys (held by a keyring other than its own); the next agent given the uid may read them",
    ]);
  });

  test("a clearing that fails (perl missing) is named, with the tool's words", () => {
    const failing: PrivilegedExec = () => {
      throw Object.assign(new Error('Command failed'), {
        stderr: 'setpriv: failed to execute perl: No such file or directory\n',
      });
    };
    const r = removeKeys(failing, 61001, 61001, {
      keyUsers: keyUsers(line(61001)),
      arch: 'x64',
      settleMs: 0,
    });
    expect(r).toEqual({
      removed: 0,
      problems: [
        "the agent's kernel keys were not removed: setpriv: failed to execute perl: No such file or directory",
      ],
    });
  });
});
