/**
 * `run`'s root side (dist/run/agent.js), started by `run` through `sudo -n` (or directly
 * when `run` is root) with one argument: the socket `run` listens on. It makes the agent's
 * own Unix user, lends it the workspace, starts the command as that user in a cgroup of its
 * own, relays the signals `run` asks for, and when the command ends kills every process of
 * the uid, reads the agent's hand-back file, gives the workspace back to the runner user
 * and removes the user. If `run` goes away first, all of it happens all the same.
 */
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describeError } from '../../platform/errors.js';
import { readAgentOutput } from '../../identity/output.js';
import {
  createAgentUser,
  privilegedExec,
  SAFE_PATH,
  sweepAndRemove,
  type AgentUser,
} from '../../identity/user.js';
import { lendWorkspace, type WorkspaceLoan } from '../../identity/workspace.js';
import { createCgroup } from './cgroup.js';
import { launchCommand, type CommandProcess } from './spawn.js';
import {
  encodeMessage,
  lineReader,
  OUTPUT_FILE,
  type AgentLaunchConfig,
  type LauncherMessage,
  type RunMessage,
} from './agent-protocol.js';

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'];

function send(c: net.Socket, m: LauncherMessage): void {
  if (!c.destroyed) c.write(encodeMessage(m));
}

const substitute = (s: string, home: string): string => s.split('{home}').join(home);

/** Writes `run`'s files into the agent's home, owned by the agent; never through a link. */
function placeFiles(user: AgentUser, files: AgentLaunchConfig['files']): void {
  for (const f of [...files, { path: OUTPUT_FILE, content: '', mode: 0o600 }]) {
    if (f.path.startsWith('/') || f.path.split('/').includes('..'))
      throw new Error(`a file path outside the agent's home: ${f.path}`);
    const path = join(user.home, f.path);
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    chownSync(dirname(path), user.uid, user.gid);
    writeFileSync(path, substitute(f.content, user.home), { mode: f.mode, flag: 'wx' });
    chownSync(path, user.uid, user.gid);
  }
}

/**
 * A file the agent made set-uid or set-gid through the mount is stored as the runner
 * user's: the mount's nosuid holds only while it is up. Every such bit on a file whose
 * inode changed since the loan is cleared (one walk of the tree; what did not change keeps
 * its mode).
 */
function clearSetId(dir: string, since: number): string[] {
  const r = spawnSync(
    'find',
    [
      dir,
      '-xdev',
      '-type',
      'f',
      '-newerct',
      `@${since}`,
      '(',
      '-perm',
      '-4000',
      '-o',
      '-perm',
      '-2000',
      ')',
      '-print0',
    ],
    { encoding: 'buffer', timeout: 60000, env: { PATH: SAFE_PATH } },
  );
  if (r.status !== 0) return [`set-uid files could not be looked for: ${r.stderr.toString().trim()}`];
  const found = r.stdout.toString('utf8').split('\0').filter(Boolean);
  for (const f of found) chmodSync(f, lstatSync(f).mode & 0o1777);
  return found.length ? [`set-uid/set-gid bits cleared on ${found.length} file(s) the agent made`] : [];
}

/**
 * The agent must be able to walk down to the workspace: a directory above it that others
 * cannot enter (a 0750 home on the way) gets o+x for the step, and its mode back after.
 */
function openAncestors(dir: string): () => string[] {
  const changed: { path: string; mode: number }[] = [];
  for (let p = dirname(resolve(dir)); ; p = dirname(p)) {
    const st = statSync(p);
    if (!(st.mode & 0o001)) {
      changed.push({ path: p, mode: st.mode & 0o7777 });
      chmodSync(p, (st.mode & 0o7777) | 0o001);
    }
    if (p === '/') break;
  }
  return () => {
    const problems: string[] = [];
    for (const c of changed.reverse()) {
      try {
        chmodSync(c.path, c.mode);
      } catch (e) {
        problems.push(`the mode of ${c.path} could not be put back: ${describeError(e)}`);
      }
    }
    return problems;
  };
}

function main(socketPath: string): void {
  const exec = privilegedExec('root');
  const setpriv = SETPRIV.find((p) => existsSync(p));
  const c = net.connect(socketPath);
  c.setEncoding('utf8');
  c.on('error', () => undefined);
  let user: AgentUser | undefined;
  let loan: WorkspaceLoan | undefined;
  let closeAncestors: (() => string[]) | undefined;
  let proc: CommandProcess | undefined;
  let lendMs = 0;
  let lentAt = 0;
  let workspace = '';
  let finishing: Promise<void> | undefined;

  // Kills what is left, reads the hand-back file, gives the workspace back, removes the
  // user: once, whichever way the command ended.
  const finish = (): Promise<void> =>
    (finishing ??= (async () => {
      const problems: string[] = [];
      const end = proc ? await proc.finish() : { alive: 0, left: 0 };
      let outputs: Record<string, string> | undefined;
      let outputError: string | undefined;
      let userRemoved = !user;
      if (user) {
        try {
          outputs = Object.fromEntries(readAgentOutput(join(user.home, OUTPUT_FILE)));
        } catch (e) {
          outputError = describeError(e);
        }
        try {
          sweepAndRemove(exec, user);
          userRemoved = true;
        } catch (e) {
          problems.push(describeError(e));
        }
      }
      const t = Date.now();
      if (loan) {
        try {
          loan.giveBack();
          problems.push(...clearSetId(workspace, lentAt));
        } catch (e) {
          problems.push(describeError(e));
        }
      }
      if (closeAncestors) problems.push(...closeAncestors());
      send(c, {
        op: 'ended',
        alive: end.alive,
        left: end.left,
        cgroupRemoved: end.cgroupRemoved,
        userRemoved,
        lendMs,
        handBackMs: Date.now() - t,
        strategy: loan?.strategy,
        fallbackReason: loan?.fallbackReason,
        outputs,
        outputError,
        problems,
      });
      c.end();
    })());

  let launch: (() => Promise<void>) | undefined;
  const prepare = (config: AgentLaunchConfig): void => {
    if (!setpriv) throw new Error('setpriv (util-linux) is not installed');
    const u = createAgentUser(exec);
    user = u;
    placeFiles(u, config.files);
    const t = Date.now();
    workspace = config.workspace;
    // Seconds, rounded down: find compares ctimes with it (a second early is harmless).
    lentAt = Math.floor(t / 1000);
    closeAncestors = openAncestors(config.workspace);
    const lent = lendWorkspace({
      exec,
      dir: config.workspace,
      agent: { uid: u.uid, gid: u.gid },
      strategy: 'auto',
    });
    loan = lent;
    lendMs = Date.now() - t;
    const containment = createCgroup({});
    send(c, {
      op: 'ready',
      user: u.name,
      uid: u.uid,
      gid: u.gid,
      home: u.home,
      containment: containment.kind,
      containmentReason: containment.reason,
      lendMs,
      strategy: lent.strategy,
      fallbackReason: lent.fallbackReason,
    });
    launch = async () => {
      // The shell starts as the agent (node sets groups, gid and uid before exec), so nothing
      // with the command's environment ever runs as root; setpriv then sets no_new_privs, so
      // no set-uid program (sudo, su, pkexec) can give the agent more than it has.
      const argv = [setpriv, '--no-new-privs', '--', ...config.argv.map((a) => substitute(a, u.home))];
      const env: Record<string, string> = {
        ...Object.fromEntries(Object.entries(config.env).map(([k, v]) => [k, substitute(v, u.home)])),
        HOME: u.home,
        USER: u.name,
        LOGNAME: u.name,
        CORDON_OUTPUT: join(u.home, OUTPUT_FILE),
      };
      const p = await launchCommand({
        argv,
        env,
        cwd: config.cwd,
        containment,
        user: { uid: u.uid, gid: u.gid },
      });
      proc = p;
      p.stdout.pipe(process.stdout);
      p.stderr.pipe(process.stderr);
      send(c, { op: 'started', pid: p.pid });
      const exit = await p.exited;
      send(c, { op: 'exited', code: exit.code, signal: exit.signal });
      await finish();
    };
  };

  const fail = (e: unknown): void => {
    send(c, { op: 'error', what: 'could not start the command as its own user', why: describeError(e) });
    void finish();
  };

  c.on(
    'data',
    lineReader<RunMessage>(
      (m) => {
        if (m.op === 'config' && !user && !finishing) {
          try {
            prepare(m.config);
          } catch (e) {
            fail(e);
          }
        } else if (m.op === 'abort' && !proc) {
          void finish();
        } else if (m.op === 'go' && launch && !proc && !finishing) {
          launch().catch(fail);
        } else if (m.op === 'signal' && proc && (m.signal === 'SIGTERM' || m.signal === 'SIGKILL')) {
          send(c, { op: 'signalled', count: proc.kill(m.signal) });
        }
      },
      (reason) => send(c, { op: 'error', what: 'an unreadable message from run', why: reason }),
    ),
  );
  // run went away (killed, or its step cancelled), or this process is told to end (sudo
  // relays the signals it gets): nothing of the agent's outlives it either way.
  const end = (): void => void finish().then(() => process.exit(0));
  c.on('close', end);
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, end);
}

if (process.getuid?.() !== 0) {
  process.stderr.write('cordon run: agent.js must run as root\n');
  process.exit(2);
}
const socketPath = process.argv[2];
if (!socketPath) {
  process.stderr.write('usage: agent.js <socket>\n');
  process.exit(2);
}
main(socketPath);
