/**
 * The agent's kernel keys (keyrings(7)): a key its command adds to its user keyring, its
 * user-session keyring or its persistent keyring is kept by the kernel under its uid after
 * its last process ends and after its user is deleted (since Linux 5.3 a user's keyrings
 * live in the user namespace, not with the user's processes; a persistent keyring lasts
 * three days after its last use). The next agent given the same uid (one of 184) reads it
 * with a plain `keyctl(2)`: data carried from one step to a later one, past every file the
 * leftover sweep removes. Root cannot clear another uid's keyrings (key permissions bind
 * root too), so the clearing runs as the uid, once no process of it is left.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describeError } from '../platform/errors.js';
import type { PrivilegedExec } from './user.js';

/** keyctl(2)'s number by Node's `process.arch` (perl, the tool sure to be there, has no wrapper). */
export const KEYCTL_SYSCALL: Partial<Record<string, number>> = {
  x64: 250,
  arm64: 219,
  riscv64: 219,
  ia32: 288,
  arm: 311,
};

/**
 * As the uid: the serials of its user and user-session keyrings (looked up before either is
 * invalidated: a lookup of one fails once the other is gone) and its persistent keyring,
 * then what each holds is listed, and each is cleared and invalidated, so the kernel frees
 * them and every key only they held. Prints how many keys were linked in them (each once,
 * the three keyrings not counted: the user-session keyring links the user keyring).
 * Arguments: keyctl's syscall number.
 */
const DROP_KEYS = [
  'my $K = $ARGV[0]; my %keys;',
  'my @ids = map { syscall($K, 0, $_, 0) } (-4, -5);', // KEYCTL_GET_KEYRING_ID @u, @us (no create)
  'push @ids, syscall($K, 22, -1, -2);', // KEYCTL_GET_PERSISTENT, linked to this process only
  '@ids = grep { $_ > 0 } @ids;',
  'for my $id (@ids) {',
  '  my $b = "\\0" x 65536; my $l = syscall($K, 11, $id, $b, 65536);', // KEYCTL_READ: serials
  '  $keys{$_} = 1 for ($l > 0 ? unpack("l*", substr($b, 0, $l)) : ());',
  '}',
  'delete @keys{@ids};',
  'for my $id (@ids) {',
  '  syscall($K, 7, $id);', // KEYCTL_CLEAR
  '  syscall($K, 21, $id) == 0 or die "invalidate $id: $!\\n";', // KEYCTL_INVALIDATE
  '}',
  'print scalar(keys %keys), "\\n";',
].join('\n');

/**
 * Before the command: the agent joins a new session keyring of its own (its owner the
 * agent's uid, held by its processes only, freed with the last of them), then runs the
 * command. Else it would possess the session keyring it inherited: the runner's (systemd
 * gives a service one, which every step's processes inherit; sudo on Ubuntu keeps it), where
 * a key it adds is held for the runner's life and found by every later step's processes,
 * a later agent of any uid among them. Arguments: keyctl's syscall number, then the command.
 */
const OWN_SESSION = [
  // The workflow's PERL* variables, held under other names (ownSessionEnv), are the
  // command's again; perl itself ran without them.
  'delete $ENV{PERL_BADLANG};',
  'for my $k (grep { /^CORDON_HELD_PERL/ } keys %ENV) { $ENV{substr($k, 12)} = delete $ENV{$k} }',
  'my $K = shift;',
  // KEYCTL_JOIN_SESSION_KEYRING, no name. A kernel without keys (ENOSYS) or a seccomp filter
  // that refuses them (EPERM: Docker's default, so a runner in a container) gives the command
  // none to use either: it runs. Any other failure stops it.
  'if (syscall($K, 1, 0) < 0) { $!{ENOSYS} || $!{EPERM} or die "cordon: the agent\'s own session keyring: $!\\n" }',
  'exec { $ARGV[0] } @ARGV or die "cordon: $ARGV[0]: $!\\n";',
].join('\n');

const PERL = ['/usr/bin/perl', '/bin/perl'];

/**
 * The environment for inOwnSessionKeyring's argv: every PERL* variable held under another
 * name, which the perl step gives back to the command before it runs it, and that step's
 * locale warnings off. Else the workflow's own settings for its perl (`PERL5OPT=-MDevel::Cover`,
 * a `PERL5LIB` the agent cannot read, `PERL5DB`, an unsupported `LANG`) stop the agent's
 * command before it starts, or write to its stderr.
 */
export function ownSessionEnv(env: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) out[k.startsWith('PERL') ? `CORDON_HELD_${k}` : k] = v;
  out.PERL_BADLANG = '0';
  return out;
}

/**
 * The argv that runs `argv` in a session keyring of its own (see OWN_SESSION), or a reason
 * it cannot (no perl, keyctl's number unknown): then `argv` runs in the inherited one.
 */
export function inOwnSessionKeyring(
  argv: string[],
  deps: { arch?: string; exists?: (p: string) => boolean; keyctl?: number } = {},
): { argv: string[]; problem?: string } {
  const arch = deps.arch ?? process.arch;
  const nr = deps.keyctl ?? KEYCTL_SYSCALL[arch];
  const perl = PERL.find(deps.exists ?? existsSync);
  if (nr === undefined || !perl)
    return {
      argv,
      problem: `the agent's command ran in the session keyring it inherited (${perl ? `keyctl's system call number on ${arch} is not known` : 'perl is not installed'}): a key it added there may be found by later steps`,
    };
  return { argv: [perl, '-e', OWN_SESSION, '--', String(nr), ...argv] };
}

export interface KeysRemoved {
  /** Keys that were linked in the uid's keyrings, now unlinked and freed. */
  removed: number;
  /** Why a key of the uid's may still be there (never a key's content). */
  problems: string[];
}

/** The uid's line in /proc/key-users: there only while the uid owns a key. */
export function ownsKeys(uid: number, keyUsers = '/proc/key-users'): boolean {
  let text: string;
  try {
    text = readFileSync(keyUsers, 'utf8');
  } catch {
    return false; // A kernel without keys: nothing to leave.
  }
  return text.split('\n').some((l) => l.trim().startsWith(`${uid}:`));
}

export interface KeyDeps {
  arch?: string;
  keyUsers?: string;
  /** How long the kernel's key collector gets to free what was invalidated (default 5 s). */
  settleMs?: number;
}

/**
 * Unlinks and frees every key in `uid`'s user, user-session and persistent keyrings. Call
 * only once no process of `uid` is left (the clearing process runs as the uid: a process of
 * the agent's could trace it) and before its user is deleted (no new agent has the uid).
 * Does nothing, and runs nothing, when the uid owns no key.
 */
export function removeKeys(exec: PrivilegedExec, uid: number, gid: number, deps: KeyDeps = {}): KeysRemoved {
  const out: KeysRemoved = { removed: 0, problems: [] };
  const keyUsers = deps.keyUsers ?? '/proc/key-users';
  if (!ownsKeys(uid, keyUsers)) return out;
  const nr = KEYCTL_SYSCALL[deps.arch ?? process.arch];
  if (nr === undefined) {
    out.problems.push(
      `the agent's kernel keys were not removed: keyctl's system call number on ${deps.arch ?? process.arch} is not known`,
    );
    return out;
  }
  try {
    const printed = exec('setpriv', [
      `--reuid=${uid}`,
      `--regid=${gid}`,
      '--clear-groups',
      '--',
      'perl',
      '-e',
      DROP_KEYS,
      String(nr),
    ]);
    out.removed = Number(printed.trim()) || 0;
  } catch (e) {
    const stderr = (e as { stderr?: string }).stderr?.trim();
    out.problems.push(`the agent's kernel keys were not removed: ${stderr || describeError(e)}`);
    return out;
  }
  // Invalidated keys are freed by the kernel's collector, at once but not synchronously.
  const deadline = Date.now() + (deps.settleMs ?? 5000);
  while (ownsKeys(uid, keyUsers) && Date.now() < deadline)
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  if (ownsKeys(uid, keyUsers))
    out.problems.push(
      `the agent's uid ${uid} still owns kernel keys (held by a keyring other than its own); the next agent given the uid may read them`,
    );
  return out;
}
