/**
 * `disable-sudo` and `disable-docker`: take away the two ways back to root that a runner
 * user has, then check as that user that they are gone.
 */
import {
  existsSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
  chmodSync,
  chownSync,
  rmSync,
} from 'node:fs';
import { join } from 'node:path';
import { CordonError } from '../platform/errors.js';
import { execSync, type Exec } from './firewall.js';

export interface LockdownBackup {
  sudoers: { path: string; content: string }[];
  groupsLeft: string[];
  docker?: { path: string; mode: number; gid: number };
  /** The sudoers drop-in that lets the runner user start the agent launcher, and nothing else. */
  launcher?: { dropIn: string };
}

const SUDO_GROUPS = ['sudo', 'admin', 'wheel'];

/**
 * The line's first word, the user or group (`%sudo`, `%#27`) a sudoers rule is for, as sudo
 * matches it: without case (sudo's `case_insensitive_user` and `_group` are on by default,
 * so `%SUDO` is the sudo group) and an id as its number (`%#027` is gid 27).
 */
function firstWord(line: string): string {
  const word = (line.trim().split(/\s+/)[0] ?? '').toLowerCase();
  const id = /^(%?#)0*(\d+)$/.exec(word);
  return id ? `${id[1]}${id[2]}` : word;
}

/**
 * The file's lines by statement: a line ending in `\` goes on in the next, so a rule is
 * removed with its continued lines, and a continued line (`    %sudo` in an alias's list) is
 * never taken for a rule. Either left sudoers a syntax error for the job.
 */
function statements(lines: string[]): string[][] {
  const out: string[][] = [];
  let continued = false;
  for (const l of lines) {
    if (continued) out[out.length - 1].push(l);
    else out.push([l]);
    // A comment runs to the end of its line, backslash and all.
    continued = l.endsWith('\\') && !l.trimStart().startsWith('#');
  }
  return out;
}

/** `%name` and `%#gid` for each group: how a sudoers rule names the group. */
function groupTokens(groups: string[], exec: Exec): string[] {
  const tokens: string[] = [];
  for (const g of groups) {
    tokens.push(`%${g}`);
    const gid = exec(['getent', 'group', g]).stdout.split(':')[2];
    if (gid && /^\d+$/.test(gid)) tokens.push(`%#${gid}`);
  }
  return tokens;
}

/**
 * Removes the user's sudoers lines and its membership of the sudo groups, with the rules
 * for those groups (processes already running keep the group), then checks what sudo still
 * gives the user, with the groups it is left and with those its running processes hold.
 */
export function disableSudo(
  user: string,
  backup: LockdownBackup,
  opts: { sudoers?: string; exec?: Exec } = {},
): void {
  const exec = opts.exec ?? execSync;
  const root = opts.sudoers ?? '/etc/sudoers';
  if (user === 'root') {
    throw new CordonError({
      what: 'egress: disable-sudo cannot apply to root',
      why: 'the step runs as root, so there is no sudo grant to take away',
      fix: 'run the job as an unprivileged user, or set `disable-sudo: false`',
      input: 'disable-sudo',
    });
  }
  const groups = exec(['id', '-nG', user]).stdout.trim().split(/\s+/);
  const leaving = SUDO_GROUPS.filter((g) => groups.includes(g));
  const uid = exec(['id', '-u', user]).stdout.trim();
  const words = new Set([
    user.toLowerCase(),
    ...(/^\d+$/.test(uid) ? [`#${uid}`] : []),
    ...groupTokens(leaving, exec).map((w) => w.toLowerCase()),
  ]);
  const files = [root];
  const dir = `${root}.d`;
  if (existsSync(dir)) for (const f of readdirSync(dir).sort()) files.push(join(dir, f));
  for (const path of files) {
    if (!existsSync(path) || !statSync(path).isFile()) continue;
    const content = readFileSync(path, 'utf8');
    const all = statements(content.split('\n'));
    const kept = all.filter((st) => !words.has(firstWord(st[0])));
    if (kept.length === all.length) continue;
    backup.sudoers.push({ path, content });
    writeFileSync(path, kept.flat().join('\n'));
  }
  // `gpasswd -d` changes /etc/group, not the groups of processes already running: the
  // runner's worker, which starts every later step, still holds them, and sudo matches
  // `%group` rules against the asking process's groups. So sudo is asked before the user
  // leaves them, while the group file still gives it what its processes hold; and as root,
  // whom no `listpw` setting asks for a password (`sudo -n -l` as the user says only "a
  // password is required" under `listpw=always`, over NOPASSWD rules too).
  const held = leaving.length > 0 ? sudoGrants(user, exec) : [];
  for (const g of leaving) {
    if (exec(['gpasswd', '-d', user, g]).code === 0) backup.groupsLeft.push(g);
  }
  const check = exec(['runuser', '-u', user, '--', 'sudo', '-n', 'true']);
  if (check.code === 0) {
    throw new CordonError({
      what: `egress: disable-sudo did not take effect: \`sudo -n true\` still succeeds as ${user}`,
      why: 'a sudoers rule this step does not recognise (a group or alias) still grants it',
      fix: 'remove that grant in the runner image, or set `disable-sudo: false` and do not rely on it',
      input: 'disable-sudo',
    });
  }
  // `sudo -n true` fails for a grant of one command (`%grp ALL=(ALL) NOPASSWD: /usr/bin/tee`),
  // which is root all the same: sudo's own list of what is left is the check.
  const left = sudoGrants(user, exec);
  if (left.length > 0) {
    throw new CordonError({
      what: `egress: disable-sudo did not take effect: sudo still lets ${user} run ${left.join('; ')}`,
      why: 'a sudoers rule this step does not recognise (a group the user is in, a User_Alias, a rule in an included file) still grants it, and a grant of one command such as tee or cp is root',
      fix: `remove that grant in the runner image (\`sudo -l -U ${user}\` lists it), or set \`disable-sudo: false\` and do not rely on it`,
      input: 'disable-sudo',
    });
  }
  // Both checks above read the group file as it is now: a grant left only to the groups the
  // user left is what the running processes still have.
  if (held.length > 0) {
    throw new CordonError({
      what: `egress: disable-sudo did not take effect: processes ${user} already runs keep the ${leaving.join(', ')} group, and sudo still lets them run ${held.join('; ')}`,
      why: 'leaving a group does not change the groups of running processes (the runner starts every later step from one), and a rule this step does not remove (an alias naming the group, a rule in an included file) still grants that group',
      fix: `remove that grant in the runner image, or set \`disable-sudo: false\` and do not rely on it`,
      input: 'disable-sudo',
    });
  }
}

/** Rules named in the error at most: enough to find them, a bounded message. */
const MAX_RULES = 20;

/**
 * What sudo still lets the user run, one entry a rule, as `sudo -l -U` (run as root) lists
 * it; none when sudo says the user may not run it, or there is no sudo. Anything else it
 * answers is taken as a grant: an unreadable answer must not pass as none.
 */
export function sudoGrants(user: string, exec: Exec = execSync): string[] {
  const r = exec(['env', 'LC_ALL=C', 'sudo', '-n', '-l', '-U', user]);
  if (r.code === 127) return [];
  const out = r.stdout.replace(/\r/g, '');
  if (r.code === 0 && /^User \S+ is not allowed to run sudo on /m.test(out)) return [];
  const lines = out.split('\n');
  const from = lines.findIndex((l) => /^User \S+ may run the following commands on /.test(l));
  const rules = from < 0 ? [] : lines.slice(from + 1, from + 1 + MAX_RULES).filter((l) => /^\s+\S/.test(l));
  if (r.code === 0 && rules.length > 0) return rules.map((l) => l.trim());
  return [
    `an unreadable rule list (\`sudo -l -U ${user}\` said: ${(r.stderr || r.stdout).trim().slice(0, 200)})`,
  ];
}

/** Takes the docker socket from the docker group (root only); checks the user can no longer open it. */
export function disableDocker(
  user: string,
  backup: LockdownBackup,
  opts: { socket?: string; exec?: Exec } = {},
): void {
  const exec = opts.exec ?? execSync;
  const socket = opts.socket ?? '/var/run/docker.sock';
  if (!existsSync(socket)) return;
  const st = statSync(socket);
  backup.docker = { path: socket, mode: st.mode & 0o7777, gid: st.gid };
  chownSync(socket, 0, 0);
  chmodSync(socket, 0o600);
  const check = exec(['runuser', '-u', user, '--', 'test', '-w', socket]);
  if (check.code === 0) {
    throw new CordonError({
      what: `egress: disable-docker did not take effect: ${user} can still write ${socket}`,
      why: 'the user owns the socket or runs as root',
      fix: 'run the job as an unprivileged user, or set `disable-docker: false`',
      input: 'disable-docker',
    });
  }
}

export function restoreLockdown(b: LockdownBackup, user: string, exec: Exec = execSync): void {
  if (b.launcher) rmSync(b.launcher.dropIn, { force: true });
  for (const s of b.sudoers) writeFileSync(s.path, s.content);
  for (const g of b.groupsLeft) exec(['gpasswd', '-a', user, g]);
  if (b.docker && existsSync(b.docker.path)) {
    chownSync(b.docker.path, 0, b.docker.gid);
    chmodSync(b.docker.path, b.docker.mode);
  }
}
