/**
 * `run`'s side of `user: agent`: start the root-side launcher (dist/run/agent.js), hand it
 * the command on a socket only this user can reach, learn the user it made (for
 * `run.started`), then let it start the command and present that as the same
 * `CommandProcess` the rest of `run` uses. Signals and the end go through the launcher:
 * the runner user cannot signal the agent's processes, and does not need to.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { SAFE_PATH } from '../../identity/user.js';
import { CordonError } from '../../platform/errors.js';
import {
  encodeMessage,
  lineReader,
  type AgentEnd,
  type AgentLaunchConfig,
  type AgentReady,
  type LauncherMessage,
} from './agent-protocol.js';
import type { CommandEnd, CommandExit, CommandProcess } from './spawn.js';

export interface AgentLaunchDeps {
  via: 'root' | 'sudo';
  /** dist/run/agent.js (default: next to the running bundle). */
  program?: string;
  node?: string;
  /** Where run's private socket directory goes (under RUNNER_TEMP/cordon). */
  dir: string;
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

  constructor(
    private readonly child: ChildProcess,
    private readonly conn: net.Socket,
    private readonly timeoutMs: number,
  ) {
    conn.on(
      'data',
      lineReader<LauncherMessage>(
        (m) => this.onMessage(m),
        (reason) => this.fail(`an unreadable message from the launcher (${reason})`),
      ),
    );
    conn.on('error', () => undefined);
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

  private onMessage(m: LauncherMessage): void {
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
    this.conn.write(encodeMessage({ op: 'go' }));
    const m = await this.next();
    if (m.op !== 'started')
      throw failed(`the launcher said ${m.op} where it should have started the command`);
    const conn = this.conn;
    const ended = this.ended;
    return {
      pid: m.pid,
      stdout: this.child.stdout as Readable,
      stderr: this.child.stderr as Readable,
      exited: this.exited,
      kill(signal) {
        if (signal === 'SIGTERM' || signal === 'SIGKILL') conn.write(encodeMessage({ op: 'signal', signal }));
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
    this.conn.write(encodeMessage({ op: 'abort' }));
    return this.ended;
  }
}

/** Starts the launcher and waits until it has made the user and lent the workspace. */
export async function prepareAgent(config: AgentLaunchConfig, deps: AgentLaunchDeps): Promise<AgentSession> {
  const program = deps.program ?? join(dirname(process.argv[1] ?? '.'), 'agent.js');
  const node = deps.node ?? process.execPath;
  const timeoutMs = deps.timeoutMs ?? 30000;
  // mkdtemp makes the directory 0700: the agent's user cannot reach the socket inside.
  const dir = mkdtempSync(join(deps.dir, 'agent-'));
  const socketPath = join(dir, 's');
  const server = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, resolve);
    });
    const argv =
      deps.via === 'root' ? [node, program, socketPath] : ['sudo', '-n', '--', node, program, socketPath];
    // A group of its own (a signal to run's group does not reach it), and no environment of
    // run's: the launcher is root and starts processes as the agent's uid.
    const child = spawn(argv[0], argv.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      env: { PATH: SAFE_PATH, LC_ALL: 'C' },
    });
    const conn = await new Promise<net.Socket>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(failed(`the launcher did not connect within ${timeoutMs} ms`)),
        timeoutMs,
      );
      const errors: Buffer[] = [];
      child.stderr?.on('data', (d: Buffer) => errors.length < 16 && errors.push(d));
      child.once('error', (e) => reject(failed(e.message)));
      child.once('exit', (code) =>
        reject(failed(`the launcher ended with ${code}: ${Buffer.concat(errors).toString('utf8').trim()}`)),
      );
      // Only the first connection counts; only root (the launcher) can reach the directory.
      server.once('connection', (c) => {
        clearTimeout(timer);
        c.setEncoding('utf8');
        resolve(c);
      });
    });
    const session = new AgentSession(child, conn, timeoutMs);
    conn.write(encodeMessage({ op: 'config', config }));
    const m = await session.next();
    if (m.op !== 'ready') throw failed(`the launcher said ${m.op} where it should have made the user`);
    const { op: _op, ...ready } = m;
    void _op;
    session.ready = ready;
    return session;
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
