/**
 * With `disable-sudo`, the runner user loses sudo, and with it the way `run` starts its
 * root-side launcher (dist/run/agent.js) to give the agent a Unix user of its own. Here the
 * daemon, still root during setup, offers that one command back: it copies the launcher
 * to `<state dir>/launch/agent.mjs` (root's, in root-only-writable directories all the way
 * up: the runner user can edit dist/ in its checkout, and root must never run a file it can
 * write), uses a node binary no one but root can change (copying the running one when it is
 * not), and installs a sudoers drop-in allowing the runner user exactly
 * `<node> <agent.mjs>` with no argument, no password, no environment of its own. The
 * copies are made before disableSudo and the rule after it (it is checked against what sudo
 * is left), so root never reads a file the runner user could still replace once sudo is
 * gone. The launcher checks everything its caller sends (run/agent-config.ts, identity/pinned.ts).
 */
import {
  chmodSync,
  chownSync,
  copyFileSync,
  constants,
  existsSync,
  lstatSync,
  mkdirSync,
  realpathSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { execSync, type Exec } from '../fence/firewall.js';
import type { LockdownBackup } from '../fence/lockdown.js';
import { LAUNCH_COMMAND, LAUNCH_DIR, launcherDropIn, type LaunchCommand } from './protocol.js';

const USER_NAME = /^[A-Za-z_][A-Za-z0-9_-]{0,31}$/;

/** Why `path` could be changed by someone other than root, or undefined when it cannot. */
export function notRootOnly(path: string): string | undefined {
  for (let p = path; ; p = dirname(p)) {
    const st = lstatSync(p);
    if (st.isSymbolicLink()) return `${p} is a symbolic link`;
    if (st.uid !== 0) return `${p} belongs to uid ${st.uid}`;
    if (st.mode & 0o022) return `${p} is writable by group or others`;
    if (p === '/') return undefined;
  }
}

export interface CopyOptions {
  /** The daemon's state directory (root's). */
  dir: string;
  /** dist/run/agent.js next to the daemon's bundle. */
  agentJs: string;
  /** The node running the daemon. */
  node: string;
}

/**
 * Root's copies of the launcher and of the node that runs it; throws when they cannot be
 * made safe (the caller removes what was made). Made before the lockdown: until then the
 * runner user has root anyway, and from then on it could replace dist/ or its node between
 * disableSudo and the copy, and root would copy its code into root's own directory.
 */
export function copyLauncher(o: CopyOptions): LaunchCommand {
  const launch = join(o.dir, LAUNCH_DIR);
  mkdirSync(launch, { mode: 0o755 });
  chownSync(launch, 0, 0);
  chmodSync(launch, 0o755);
  const unsafe = notRootOnly(launch);
  if (unsafe) throw new Error(`the launcher's directory is not root's alone: ${unsafe}`);
  const program = join(launch, 'agent.mjs');
  copyFileSync(o.agentJs, program, constants.COPYFILE_EXCL);
  chmodSync(program, 0o644);
  const real = realpathSync(o.node);
  let node = real;
  if (notRootOnly(real)) {
    // The runner's own node (its tool cache, the runner's externals) is the runner user's.
    node = join(launch, 'node');
    copyFileSync(real, node, constants.COPYFILE_EXCL);
    chmodSync(node, 0o755);
  }
  const command: LaunchCommand = { node, program };
  writeFileSync(join(launch, LAUNCH_COMMAND), JSON.stringify(command), { mode: 0o644 });
  return command;
}

export interface AllowOptions {
  /** The runner user: the only one the rule names. */
  user: string;
  id: string;
  sudoersDir?: string;
  exec?: Exec;
}

/**
 * Installs the drop-in allowing the runner user root's copies (copyLauncher), once sudo is
 * otherwise gone; throws (having removed it) when the rule cannot be made safe.
 */
export function allowLauncher(o: AllowOptions, command: LaunchCommand, backup: LockdownBackup): void {
  const exec = o.exec ?? execSync;
  if (!USER_NAME.test(o.user))
    throw new Error(`the runner user name ${JSON.stringify(o.user)} cannot stand in a sudoers rule`);
  const { node, program } = command;
  const dropIn = launcherDropIn(o.id, o.sudoersDir);
  // sudo skips a name with a dot: the rule is checked by visudo before it has its real name.
  const pending = `${dropIn}.pending`;
  writeFileSync(
    pending,
    `# Cordon egress ${o.id}: the runner user may start the agent launcher as root, with no argument (docs/run.md)\n` +
      // A command's Defaults come last: whatever the image keeps (env_keep, !env_reset), node
      // as root gets sudo's bare environment and SUDO_UID only, never NODE_OPTIONS.
      `Defaults!${node} env_reset, !env_keep\n` +
      `${o.user} ALL=(root) NOPASSWD:NOSETENV: ${node} ${program}\n`,
    { mode: 0o440, flag: 'wx' },
  );
  const checked = exec(['visudo', '-c', '-q', '-f', pending]);
  if (checked.code !== 0) {
    rmSync(pending, { force: true });
    throw new Error(`visudo refused the launcher rule: ${(checked.stderr || checked.stdout).trim()}`);
  }
  renameSync(pending, dropIn);
  backup.launcher = { dropIn };
  const asUser = (argv: string[]) => exec(['runuser', '-u', o.user, '--', ...argv]).code;
  if (asUser(['sudo', '-n', 'true']) === 0)
    throw new Error(`\`sudo -n true\` succeeds as ${o.user} with the launcher rule in place`);
  if (asUser(['sudo', '-n', '-l', node, program]) !== 0)
    throw new Error(`sudo does not list the launcher for ${o.user} after the rule was installed`);
}

/** Removes root's copies (and the command file that names them). */
export function removeLauncherCopy(dir: string): void {
  rmSync(join(dir, LAUNCH_DIR), { recursive: true, force: true });
}

/**
 * The copies, or a line in the daemon's log saying why there are none (and nothing half made
 * left): the fence matters more than the agent's own user, and `run` says so when it falls back.
 */
export function tryCopyLauncher(o: CopyOptions, log: (line: string) => void): LaunchCommand | undefined {
  try {
    return copyLauncher(o);
  } catch (e) {
    removeLauncherCopy(o.dir);
    log(`run's launcher is not offered: ${e instanceof Error ? e.message : String(e)}`);
    return undefined;
  }
}

/**
 * The rule for the copies, or a line in the daemon's log saying why there is none. What was
 * half made is removed (the drop-in first: it must never outlive a failed check).
 */
export function tryAllowLauncher(
  o: AllowOptions & { dir: string },
  command: LaunchCommand,
  backup: LockdownBackup,
  log: (line: string) => void,
): void {
  try {
    allowLauncher(o, command, backup);
  } catch (e) {
    if (backup.launcher) rmSync(backup.launcher.dropIn, { force: true });
    backup.launcher = undefined;
    removeLauncherCopy(o.dir);
    log(`run's launcher is not offered: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** dist/run/agent.js, beside the daemon's own bundle (dist/egress/daemon.js), if it is there. */
export function bundledLauncher(daemonScript: string): string | undefined {
  const p = join(dirname(daemonScript), '..', 'run', 'agent.js');
  return existsSync(p) ? p : undefined;
}
