/**
 * git as Cordon runs it once an agent has had the workspace: the agent could write the
 * repository's `.git/config`, and every setting there that names a program (fsmonitor, hooks,
 * signature verifiers, pager, external diff, ssh) would run as the step that runs git, with
 * its environment. The command line's `-c` settings are read after the repository's, so
 * they win; the environment is built here, never taken from the step (it holds saved state).
 * Filters and textconv drivers cannot be switched off by `-c` (their names are the agent's):
 * callers run no command that checks files out or adds them, and diff with
 * `--no-ext-diff --no-textconv`.
 */
import { execFileSync } from 'node:child_process';

/** Settings that name a program or a transport, each set to nothing that runs. */
export const NEUTRAL_GIT_CONFIG: readonly string[] = [
  // Empty would read as "no fsmonitor" too; `false` says it.
  'core.fsmonitor=false',
  // Hooks are looked up as /dev/null/<name>: never found.
  'core.hooksPath=/dev/null',
  // `gpg.program` and `gpg.openpgp.program` set the same program: the last one read wins.
  'gpg.program=/bin/false',
  'gpg.openpgp.program=/bin/false',
  'gpg.ssh.program=/bin/false',
  'gpg.x509.program=/bin/false',
  'log.showSignature=false',
  'core.pager=cat',
  // An empty diff.external makes git try to run "": /bin/false fails the diff instead.
  'diff.external=/bin/false',
  'core.sshCommand=/bin/false',
  // No transport at all: a lazy fetch from a promisor remote would run credential helpers.
  'protocol.allow=never',
  'credential.helper=',
  // Replace refs would show another commit's author in place of the real one.
  'core.useReplaceRefs=false',
  'i18n.logOutputEncoding=UTF-8',
];

export interface GitOptions {
  cwd: string;
  /**
   * The real HOME, for the few reads of the runner's own global configuration (before any
   * agent ran, or of a file named with `--file`); by default there is none.
   */
  home?: string;
  timeoutMs?: number;
  maxBuffer?: number;
  /**
   * The global configuration file to read and write instead of `$HOME/.gitconfig` (what the
   * step's `GIT_CONFIG_GLOBAL` names, for the one write Cordon makes there).
   */
  globalConfig?: string;
  /** Written to git's stdin (`cat-file --batch`). */
  input?: string;
  /**
   * Trust this repository whoever owns it: with no global configuration, the
   * `safe.directory` that actions/checkout sets in a container job is not read. Safe here
   * because nothing its configuration names runs.
   */
  safeDirectory?: string;
  /**
   * Variables added to git's environment (publish's `GIT_CONFIG_COUNT`/`KEY_n`/`VALUE_n`:
   * a setting that holds a token goes there, never on a command line, which every local
   * user reads in /proc).
   */
  extraEnv?: Record<string, string>;
}

/** The whole environment git gets: no variable of the step reaches it. */
export function gitEnv(home?: string, globalConfig?: string): Record<string, string> {
  const env: Record<string, string> = {
    PATH: process.env.PATH || '/usr/bin:/bin',
    HOME: home ?? '/nonexistent',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_TERMINAL_PROMPT: '0',
    GIT_NO_REPLACE_OBJECTS: '1',
    // `.git/info/grafts` would give any commit the parents the agent wrote there.
    GIT_GRAFT_FILE: '/dev/null',
    GIT_NO_LAZY_FETCH: '1',
    GIT_OPTIONAL_LOCKS: '0',
    GIT_ATTR_NOSYSTEM: '1',
    LC_ALL: 'C',
  };
  if (globalConfig) env.GIT_CONFIG_GLOBAL = globalConfig;
  else if (home === undefined) env.GIT_CONFIG_GLOBAL = '/dev/null';
  return env;
}

/** The argv for git with the neutral settings in front of `args`. */
export function gitArgs(args: string[], safeDirectory?: string): string[] {
  const trust = safeDirectory ? ['-c', `safe.directory=${safeDirectory}`] : [];
  return ['--no-pager', ...NEUTRAL_GIT_CONFIG.flatMap((c) => ['-c', c]), ...trust, ...args];
}

/** Runs git hardened; its stdout as bytes. Throws (with git's stderr) when git fails. */
export function gitBytes(args: string[], opts: GitOptions): Buffer {
  return execFileSync('git', gitArgs(args, opts.safeDirectory), {
    cwd: opts.cwd,
    env: { ...gitEnv(opts.home, opts.globalConfig), ...opts.extraEnv },
    input: opts.input,
    maxBuffer: opts.maxBuffer ?? 64 * 1024 * 1024,
    timeout: opts.timeoutMs ?? 60_000,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

/** Runs git hardened; its stdout as UTF-8. Throws when git fails. */
export function git(args: string[], opts: GitOptions): string {
  return gitBytes(args, opts).toString('utf8');
}
