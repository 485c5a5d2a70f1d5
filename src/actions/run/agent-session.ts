/**
 * `run`'s side of `user: agent`: start the root-side launcher (dist/run/agent.js), hand it
 * the command on its stdin (a pipe only this process holds), learn the user it made (for
 * `run.started`), then let it start the command and present that as the same
 * `CommandProcess` the rest of `run` uses. Signals and the end go through the launcher:
 * the runner user cannot signal the agent's processes, and does not need to.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { SAFE_PATH } from '../../identity/user.js';
import { CordonError } from '../../platform/errors.js';
import {
  encodeMessage,
  lineReader,
  type AgentEnd,
  type AgentLaunchConfig,
  type AgentReady,
  type LauncherMessage,
  type RunMessage,
} from './agent-protocol.js';
import type { CommandEnd, CommandExit, CommandProcess } from './spawn.js';

export interface AgentLaunchDeps {
  /** `launcher`: sudo allows this user the egress daemon's root-owned copy of the launcher only. */
  via: 'root' | 'sudo' | 'launcher';
  /** dist/run/agent.js (default: next to the running bundle), or the daemon's copy. */
  program?: string;
  node?: string;
  /** How long the launcher may take to make the user and to start the command (default 30 s each). */
  timeoutMs?: number;
}

const failed = (why: string): CordonError =>
  new CordonError({
    what: 'run: the command could not be started as its own user',
    why,
    fix: 'check that this runner has passwordless sudo, useradd and setpriv; or set user: runner',
    input: 'user',
  });

/** One launcher: made by `prepareAgent`, then `start` (or `abort`) once. */
export class AgentSession {
  private exitedResolve: (e: CommandExit) => void = () => undefined;
  private readonly exited = new Promise<CommandExit>((r) => (this.exitedResolve = r));
  private endedResolve: (e: AgentEnd) => void = () => undefined;
  /** The launcher's account of the end: processes killed, user removed, workspace back, outputs. */
  readonly ended = new Promise<AgentEnd>((r) => (this.endedResolve = r));
  private waiting: { resolve: (m: LauncherMessage) => void; reject: (e: Error) => void } | undefined;
  ready!: AgentReady;
  /** Processes reached by the signals run asked for (on timeout). */
  signalled = 0;
  /** The command's stdout and stderr, as the launcher relays them. */
  private readonly out = [new PassThrough(), new PassThrough()];

  constructor(
    private readonly child: ChildProcess,
    private readonly timeoutMs: number,
  ) {
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('end', () => this.out.forEach((o) => o.end()));
    child.stdin!.on('error', () => undefined);
    child.stdout!.on(
      'data',
      lineReader<LauncherMessage>(
        (m) => this.onMessage(m),
        (reason) => this.fail(`an unreadable message from the launcher (${reason})`),
      ),
    );
    child.once('exit', (code, signal) => {
      // The launcher is gone: whatever it did not report did not happen.
      this.exitedResolve({ code: null, signal: null });
      this.endedResolve({
        alive: 0,
        left: 0,
        userRemoved: false,
        lendMs: 0,
        handBackMs: 0,
        problems: [`the launcher ended (${code ?? signal}) before it reported the end`],
      });
      this.fail(`the launcher ended with ${code ?? signal}`);
    });
  }

  /** One message to the launcher, on its stdin. */
  send(m: RunMessage): void {
    if (!this.child.stdin!.destroyed) this.child.stdin!.write(encodeMessage(m));
  }

  private onMessage(m: LauncherMessage): void {
    if (m.op === 'out') {
      if (m.fd === 1 || m.fd === 2) this.out[m.fd - 1].write(Buffer.from(String(m.data), 'base64'));
      return;
    }
    if (m.op === 'signalled') {
      this.signalled += m.count;
      return;
    }
    if (m.op === 'exited') return this.exitedResolve({ code: m.code, signal: m.signal });
    if (m.op === 'ended') {
      const { op: _op, ...end } = m;
      void _op;
      return this.endedResolve(end);
    }
    if (m.op === 'error') return this.fail(`${m.what}${m.why ? `: ${m.why}` : ''}`);
    const w = this.waiting;
    this.waiting = undefined;
    w?.resolve(m);
  }

  private fail(why: string): void {
    const w = this.waiting;
    this.waiting = undefined;
    w?.reject(failed(why));
  }

  /** The next of `ready`/`started`, within the time allowed. */
  next(): Promise<LauncherMessage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => this.fail(`no answer from the launcher within ${this.timeoutMs} ms`),
        this.timeoutMs,
      );
      this.waiting = {
        resolve: (m) => (clearTimeout(timer), resolve(m)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      };
    });
  }

  /** Starts the command as the agent's user. */
  async start(): Promise<CommandProcess> {
    this.send({ op: 'go' });
    const m = await this.next();
    if (m.op !== 'started')
      throw failed(`the launcher said ${m.op} where it should have started the command`);
    const ended = this.ended;
    return {
      pid: m.pid,
      stdout: this.out[0] as Readable,
      stderr: this.out[1] as Readable,
      exited: this.exited,
      kill: (signal) => {
        if (signal === 'SIGTERM' || signal === 'SIGKILL') this.send({ op: 'signal', signal });
        return 0;
      },
      async finish(): Promise<CommandEnd> {
        const e = await ended;
        return { alive: e.alive, left: e.left, cgroupRemoved: e.cgroupRemoved };
      },
    };
  }

  /** run failed before the command started: the launcher undoes the user and the loan. */
  async abort(): Promise<AgentEnd> {
    this.send({ op: 'abort' });
    return this.ended;
  }
}

/** Starts the launcher and waits until it has made the user and lent the workspace. */
export async function prepareAgent(config: AgentLaunchConfig, deps: AgentLaunchDeps): Promise<AgentSession> {
  const program = deps.program ?? join(dirname(process.argv[1] ?? '.'), 'agent.js');
  const node = deps.node ?? process.execPath;
  const timeoutMs = deps.timeoutMs ?? 30000;
  // No argument but the program: sudo's rule for the launcher (`launcher`) names exactly
  // this command line, and the command itself travels on stdin.
  const argv = deps.via === 'root' ? [node, program] : ['sudo', '-n', '--', node, program];
  // A group of its own (a signal to run's group does not reach it), and no environment of
  // run's: the launcher is root and starts processes as the agent's uid.
  const child = spawn(argv[0], argv.slice(1), {
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
    env: { PATH: SAFE_PATH, LC_ALL: 'C' },
  });
  const errors: Buffer[] = [];
  child.stderr?.on('data', (d: Buffer) => errors.length < 16 && errors.push(d));
  const early = new Promise<never>((_, reject) => {
    child.once('error', (e) => reject(failed(e.message)));
    child.once('exit', (code) =>
      reject(failed(`the launcher ended with ${code}: ${Buffer.concat(errors).toString('utf8').trim()}`)),
    );
  });
  early.catch(() => undefined);
  const session = new AgentSession(child, timeoutMs);
  session.send({ op: 'config', config });
  const m = await Promise.race([session.next(), early]);
  if (m.op !== 'ready') throw failed(`the launcher said ${m.op} where it should have made the user`);
  const { op: _op, ...ready } = m;
  void _op;
  session.ready = ready;
  return session;
}
