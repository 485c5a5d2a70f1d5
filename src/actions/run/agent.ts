/**
 * `run`'s root side (dist/run/agent.js), started by `run` through `sudo -n` (or directly
 * when `run` is root) with no argument at all: it talks to `run` on its stdin and stdout
 * (agent-protocol.ts), so sudo's rule for it can name the exact command line and the
 * caller chooses no path root opens. It makes the agent's
 * own Unix user, lends it the workspace, starts the command as that user in a cgroup of its
 * own, relays the signals `run` asks for, and when the command ends kills every process of
 * the uid, reads the agent's hand-back file, gives the workspace back to the runner user
 * and removes the user. If `run` goes away first, all of it happens all the same.
 */
import {
  chownSync,
  closeSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { describeError } from '../../platform/errors.js';
import { readAgentOutput } from '../../identity/output.js';
import { createAgentUser, privilegedExec, sweepAndRemove, type AgentUser } from '../../identity/user.js';
import { clearSetId, openAncestors, pinWorkspace, unpin, type PinnedDir } from '../../identity/pinned.js';
import { lendWorkspace, type WorkspaceLoan } from '../../identity/workspace.js';
import { removeLeftovers } from '../../identity/leftovers.js';
import { inOwnSessionKeyring, ownSessionEnv, removeKeys } from '../../identity/keys.js';
import { denySchedulers, removeScheduled, type SchedulerDenial } from '../../identity/schedulers.js';
import { callerUid, parseLaunchConfig } from './agent-config.js';
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

/** To `run`, on stdout: false when the pipe is full (the command's output then waits). */
function send(m: LauncherMessage): boolean {
  return process.stdout.destroyed ? true : process.stdout.write(encodeMessage(m));
}

/** The command's output, relayed as messages; a full pipe to `run` holds the command back. */
function relay(from: NodeJS.ReadableStream, fd: 1 | 2): Promise<void> {
  return new Promise((resolve) => {
    from.on('data', (d: Buffer) => {
      if (!send({ op: 'out', fd, data: d.toString('base64') })) {
        from.pause();
        process.stdout.once('drain', () => from.resume());
      }
    });
    from.once('end', resolve);
    from.once('error', () => resolve());
  });
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

/** O_CLOEXEC in /proc/<pid>/fdinfo's octal `flags`. */
const O_CLOEXEC = 0o2000000;

/**
 * Closes every descriptor this process inherited beyond stdio, as sudo does for the launcher
 * it starts: started directly (when run is root), it would otherwise pass whatever its caller
 * left open (a file or socket of root's) on to the agent's command. Node's own descriptors
 * are close-on-exec and stay.
 */
function closeInherited(): void {
  for (const name of readdirSync('/proc/self/fd')) {
    const fd = Number(name);
    if (fd < 3) continue;
    try {
      const flags = /^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1];
      if (flags !== undefined && (parseInt(flags, 8) & O_CLOEXEC) === 0) closeSync(fd);
    } catch {
      // The descriptor of the listing itself, closed already.
    }
  }
}

function main(): void {
  closeInherited();
  const exec = privilegedExec('root');
  const setpriv = SETPRIV.find((p) => existsSync(p));
  process.stdin.setEncoding('utf8');
  process.stdout.on('error', () => undefined);
  let user: AgentUser | undefined;
  let denial: SchedulerDenial | undefined;
  let loan: WorkspaceLoan | undefined;
  let closeAncestors: (() => string[]) | undefined;
  let proc: CommandProcess | undefined;
  let lendMs = 0;
  let lentAt = 0;
  let pinned: PinnedDir | undefined;
  const caller = callerUid(process.env, process.getuid?.() ?? -1);
  let finishing: Promise<void> | undefined;
  /** What went short of the plan at launch, for `ended`'s problems. */
  const launchProblems: string[] = [];
  let outputDone: Promise<void> | undefined;

  // Kills what is left, reads the hand-back file, gives the workspace back, removes the
  // user: once, whichever way the command ended.
  const finish = (): Promise<void> =>
    (finishing ??= (async () => {
      const problems: string[] = [...launchProblems];
      const end = proc ? await proc.finish() : { alive: 0, left: 0 };
      // All the command wrote goes out before `ended`: its pipes close once its last
      // process is killed (bounded, for one that would not die).
      if (outputDone) await Promise.race([outputDone, new Promise((r) => setTimeout(r, 2000))]);
      let outputs: Record<string, string> | undefined;
      let outputError: string | undefined;
      let userRemoved = !user;
      let handBackMs = 0;
      let leftoversRemoved: number | undefined;
      let scheduledRemoved: string[] | undefined;
      let handedBack = false;
      const handBack = (): boolean => {
        if (handedBack) return false;
        handedBack = true;
        const t = Date.now();
        try {
          loan?.giveBack();
          if (loan && pinned) problems.push(...clearSetId(pinned, lentAt));
          return true;
        } catch (e) {
          problems.push(describeError(e));
          return false;
        } finally {
          handBackMs = Date.now() - t;
        }
      };
      if (user) {
        const agent = user;
        try {
          outputs = Object.fromEntries(readAgentOutput(join(agent.home, OUTPUT_FILE), undefined, agent.uid));
        } catch (e) {
          outputError = describeError(e);
        }
        try {
          sweepAndRemove(exec, agent, {
            // No process of the agent's is left, and its uid is still its own (no new agent
            // can be given it): the workspace goes back, then what it left where all write
            // (only after the hand-back: until then the workspace's files may show as its).
            whileReserved: () => {
              // Its crontab and at jobs: atd would run a job for its uid after the step.
              try {
                const jobs = removeScheduled(agent);
                scheduledRemoved = jobs.removed;
                problems.push(...jobs.problems);
              } catch (e) {
                problems.push(`the agent's cron and at jobs: ${describeError(e)}`);
              }
              // Its kernel keys: the kernel keeps them under its uid for the next agent given it.
              // Last: what it left (a shared memory segment's file) holds its credentials, and
              // with them its own session keyring, until it is removed.
              const keys = (): void => {
                try {
                  const k = removeKeys(exec, agent.uid, agent.gid);
                  if (k.removed) leftoversRemoved = (leftoversRemoved ?? 0) + k.removed;
                  problems.push(...k.problems);
                } catch (e) {
                  problems.push(`the agent's kernel keys: ${describeError(e)}`);
                }
              };
              if (!handBack()) return keys();
              try {
                const left = removeLeftovers(exec, agent.uid);
                leftoversRemoved = left.removed;
                problems.push(...left.problems);
              } catch (e) {
                problems.push(`what the agent left in the shared directories: ${describeError(e)}`);
              }
              keys();
            },
          });
          userRemoved = true;
        } catch (e) {
          problems.push(describeError(e));
        }
        // Its name leaves the deny files once the user is gone; a user still there stays denied.
        if (denial && userRemoved) problems.push(...denial.undo());
        else if (denial?.denied.length)
          problems.push(
            `${agent.name} stays denied cron and at (deny files unchanged) while its user exists`,
          );
      }
      handBack();
      if (closeAncestors) problems.push(...closeAncestors());
      if (pinned) unpin(pinned);
      send({
        op: 'ended',
        alive: end.alive,
        left: end.left,
        cgroupRemoved: end.cgroupRemoved,
        userRemoved,
        lendMs,
        handBackMs,
        leftoversRemoved,
        schedulersDenied: denial?.denied,
        scheduledRemoved,
        strategy: loan?.strategy,
        fallbackReason: loan?.fallbackReason,
        outputs,
        outputError,
        problems,
      });
      // Nothing is left to do: ended once everything sent has reached run (run sees the
      // launcher's stdout end, and with it the command's output).
      if (process.stdout.writableLength === 0) process.exit(0);
      process.stdout.once('drain', () => process.exit(0));
    })());

  let launch: (() => Promise<void>) | undefined;
  const prepare = (raw: unknown): void => {
    if (!setpriv) throw new Error('setpriv (util-linux) is not installed');
    // The caller may be any process of the runner user (see agent-config.ts): nothing is
    // made before its config is checked and its workspace pinned.
    const config = parseLaunchConfig(raw);
    const ws = pinWorkspace(config.workspace, caller);
    pinned = ws;
    const u = createAgentUser(exec);
    user = u;
    // Before anything runs as it; on failure nothing was changed, and finish removes the user.
    denial = denySchedulers(u.name);
    placeFiles(u, config.files);
    const t = Date.now();
    // Seconds, rounded down: find compares ctimes with it (a second early is harmless).
    lentAt = Math.floor(t / 1000);
    closeAncestors = openAncestors(ws, caller);
    const lent = lendWorkspace({
      dir: ws,
      agent: { uid: u.uid, gid: u.gid },
      strategy: 'auto',
    });
    loan = lent;
    lendMs = Date.now() - t;
    const containment = createCgroup({});
    send({
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
      // no set-uid program (sudo, su, pkexec) can give the agent more than it has. The
      // working directory is entered by the agent's own shell: root never follows a path
      // of the caller's there.
      // In a session keyring of its own (keys.ts): not the one this launcher inherited.
      const own = inOwnSessionKeyring([
        '/bin/sh',
        '-c',
        'cd -- "$0" || exit 125; exec "$@"',
        substitute(config.cwd, u.home),
        ...config.argv.map((a) => substitute(a, u.home)),
      ]);
      if (own.problem) launchProblems.push(own.problem);
      const argv = [setpriv, '--no-new-privs', '--', ...own.argv];
      const env: Record<string, string> = {
        ...Object.fromEntries(Object.entries(config.env).map(([k, v]) => [k, substitute(v, u.home)])),
        HOME: u.home,
        USER: u.name,
        LOGNAME: u.name,
        CORDON_OUTPUT: join(u.home, OUTPUT_FILE),
      };
      const p = await launchCommand({
        argv,
        env: own.problem ? env : ownSessionEnv(env),
        cwd: u.home,
        containment,
        user: { uid: u.uid, gid: u.gid },
      });
      proc = p;
      outputDone = Promise.all([relay(p.stdout, 1), relay(p.stderr, 2)]).then(() => undefined);
      send({ op: 'started', pid: p.pid });
      const exit = await p.exited;
      send({ op: 'exited', code: exit.code, signal: exit.signal });
      await finish();
    };
  };

  const fail = (e: unknown): void => {
    send({ op: 'error', what: 'could not start the command as its own user', why: describeError(e) });
    void finish();
  };

  process.stdin.on(
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
          send({ op: 'signalled', count: proc.kill(m.signal) });
        }
      },
      (reason) => send({ op: 'error', what: 'an unreadable message from run', why: reason }),
    ),
  );
  // run went away (killed, or its step cancelled), or this process is told to end (sudo
  // relays the signals it gets): nothing of the agent's outlives it either way.
  const end = (): void => void finish();
  process.stdin.on('end', end);
  process.stdin.on('error', end);
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, end);
}

if (process.getuid?.() !== 0) {
  process.stderr.write('cordon run: agent.js must run as root\n');
  process.exit(2);
}
if (process.argv.length > 2) {
  process.stderr.write('usage: agent.js (no arguments: run sends the command on stdin)\n');
  process.exit(2);
}
main();
