/**
 * What `run` and its root-side launcher (dist/run/agent.js) say to each other, on the
 * launcher's stdin and stdout: `run` starts it (root, through `sudo -n` or directly) with
 * no argument, hands it the command and its environment on the pipe (never on a command
 * line, never in a file), and it makes the agent's user, starts the command as it, relays
 * the command's output as `out` messages and reports back. The agent's user can reach
 * neither pipe nor read the launcher's memory or environment (another uid, and root's).
 */

/** The agent's hand-back file, in its home (`$CORDON_OUTPUT`). */
export const OUTPUT_FILE = '.cordon/output';

/** The command, as `run` prepared it, for the launcher to start as the agent's user. */
export interface AgentLaunchConfig {
  /** The command line; `{home}` stands for the agent's home directory, made by the launcher. */
  argv: string[];
  /** The command's environment; `{home}` in a value stands for the agent's home. */
  env: Record<string, string>;
  cwd: string;
  /** The checkout, lent to the agent while it runs and handed back to its owner after. */
  workspace: string;
  /** Files written into the agent's home before the command starts (its .gitconfig, the script). */
  files: { path: string; content: string; mode: number }[];
}

export type RunMessage =
  | { op: 'config'; config: AgentLaunchConfig }
  /** run has recorded `run.started` with the user's name: the command may start. */
  | { op: 'go' }
  /** run failed before the command started: undo the user and the loan, report, and end. */
  | { op: 'abort' }
  | { op: 'signal'; signal: 'SIGTERM' | 'SIGKILL' };

/** The user made, the workspace lent, the cgroup made: all but the command. */
export interface AgentReady {
  user: string;
  uid: number;
  gid: number;
  home: string;
  containment: 'cgroup' | 'process-group';
  containmentReason?: string;
  lendMs: number;
  strategy: 'idmap' | 'chown';
  fallbackReason?: string;
}

export interface AgentEnd {
  /** Processes of the command still alive when it ended (all killed). */
  alive: number;
  /** Processes still there after the kill and the sweep by uid (0 unless one would not die). */
  left: number;
  cgroupRemoved?: boolean;
  /** The agent's user and home are gone. */
  userRemoved: boolean;
  /** Milliseconds spent lending the workspace and handing it back. */
  lendMs: number;
  handBackMs: number;
  /** What the agent left in the shared temporary directories and SysV IPC, removed after the hand-back. */
  leftoversRemoved?: number;
  /** The schedulers installed here that the agent's user was denied while it existed. */
  schedulersDenied?: ('cron' | 'at')[];
  /** Its crontab and at jobs, removed from the spools before its user was deleted. */
  scheduledRemoved?: string[];
  /** How the workspace was lent: an idmapped mount, or chown -R there and back. */
  strategy?: 'idmap' | 'chown';
  /** Why the idmapped mount could not be used. */
  fallbackReason?: string;
  /** What the agent wrote to `$CORDON_OUTPUT`, read before its user was removed. */
  outputs?: Record<string, string>;
  /** Why `$CORDON_OUTPUT` could not be read (it names the line, never a value). */
  outputError?: string;
  /** Why the hand-back or the removal went wrong (never a value from the environment). */
  problems: string[];
}

export type LauncherMessage =
  | ({ op: 'ready' } & AgentReady)
  | { op: 'started'; pid: number }
  /** A chunk of the command's stdout (1) or stderr (2), base64. */
  | { op: 'out'; fd: 1 | 2; data: string }
  /** How many processes a signal `run` asked for reached. */
  | { op: 'signalled'; count: number }
  | { op: 'exited'; code: number | null; signal: NodeJS.Signals | null }
  | ({ op: 'ended' } & AgentEnd)
  | { op: 'error'; what: string; why?: string };

/** One JSON object a line, both ways. */
export function encodeMessage(m: RunMessage | LauncherMessage): string {
  return JSON.stringify(m) + '\n';
}

/** Splits a stream of lines into parsed messages; a line that is not JSON is reported, not thrown. */
export function lineReader<T>(
  onMessage: (m: T) => void,
  onBad: (reason: string) => void,
): (chunk: string) => void {
  let buf = '';
  return (chunk) => {
    buf += chunk;
    // Bounded: a peer that never sends a newline cannot grow this past 8 MiB.
    if (buf.length > 8 * 1024 * 1024) {
      onBad('a line longer than 8 MiB');
      buf = '';
      return;
    }
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (!line.trim()) continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        // Never the line itself: the config line carries the command's secrets.
        onBad(`a line of ${line.length} characters that is not JSON`);
        continue;
      }
      if (parsed && typeof parsed === 'object' && typeof (parsed as { op?: unknown }).op === 'string')
        onMessage(parsed as T);
      else onBad('a JSON line without an op');
    }
  };
}
