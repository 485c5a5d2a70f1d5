/** What `run`'s three stages are given and hand each other. */
import type { Writable } from 'node:stream';
import type { FileCommandsTampered } from '../../ledger/events.js';
import type { Ledger } from '../../ledger/ledger.js';
import type { SealKey } from '../../ledger/seal.js';
import type { SecretRegistry } from '../../platform/mask.js';
import type { Env, Runner } from '../../platform/runner.js';
import type { FetchDeps } from '../../secrets/fetch.js';
import type { AgentEnd } from './agent-protocol.js';
import type { AgentSession } from './agent-session.js';
import type { RunBroker } from './broker.js';
import type { Containment } from './cgroup.js';
import type { ShellCommand } from './env.js';
import type { GitRestored } from './gitguard.js';
import type { FreshHome } from './home.js';
import type { CheckoutToken } from './checkout-token.js';
import type { OutputFile } from './identity.js';
import type { GitSnapshot } from './leaks-git.js';
import type { CommandEnd, CommandExit } from './spawn.js';

/** What every stage is given: the step's environment, the runner, the secrets registered so far. */
export interface RunDeps {
  env: Env;
  runner: Runner;
  registry: SecretRegistry;
  fetch?: typeof fetch;
  /** Where the command's output goes (the runner's log). */
  stdout?: Writable;
  stderr?: Writable;
  /** Between SIGTERM and SIGKILL on timeout (default 5000 ms). */
  killGraceMs?: number;
  /** Backoff overrides for secret fetches (tests). */
  fetchRetry?: FetchDeps['retry'];
}

/** What `prepare` readied: the command, its environment and what `execute` and `conclude` undo or check. */
export interface Prepared {
  workspace: string;
  cwd: string;
  broker: RunBroker | undefined;
  commandEnv: Record<string, string>;
  shell: ShellCommand;
  home: FreshHome | undefined;
  checkoutToken: CheckoutToken | undefined;
  containment: Containment;
  ledger: Ledger;
  /** The hash of every ledger line up to `run.started`, held while the command runs. */
  held: string[];
  /** The key this window is sealed with, taken off the disk before the command started. */
  sealKey: SealKey | undefined;
  /** The workspace's repositories and their objects before the command. */
  gitBefore: GitSnapshot;
  /** With `user: agent`: the launcher, the user made, the workspace lent. */
  agent: AgentSession | undefined;
  /** As the runner user: run's own hand-back file. */
  outputFile: OutputFile | undefined;
}

/** What `execute` saw of the command. */
export interface Executed {
  exit: CommandExit;
  /** Secrets found in the output behind escapes or invisible characters (names). */
  hiddenInOutput: string[];
  startedAt: number;
  durationMs: number;
  timedOut: boolean;
  processesKilled: number;
  end: CommandEnd;
  bytesScrubbed: number;
  checkoutTokenRestored: boolean | undefined;
  /** What the command wrote into the step's file commands (put back). */
  tampered: FileCommandsTampered | undefined;
  agentEnd: AgentEnd | undefined;
  /** What the command changed under `.git/` that makes git run programs (put back). */
  gitRestored: GitRestored | undefined;
  /** What the command handed back through `$CORDON_OUTPUT`. */
  outputs: Record<string, string>;
  outputError: string | undefined;
}
