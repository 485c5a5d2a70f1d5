/**
 * Who `run`'s command runs as, and what that changes around it: which user (`user:`), the
 * command as the launcher gets it when the agent has its own user (its script, its
 * .gitconfig and the broker's helpers copied into its home), and the agent's hand-back file
 * (`$CORDON_OUTPUT`), whose entries become the step's outputs after checks.
 */
import { randomUUID } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { readAgentOutput } from '../../identity/output.js';
import { identityAvailable, type IdentityMode } from '../../identity/user.js';
import type { FileCommandsTampered, RunFinished, RunUser } from '../../ledger/events.js';
import type { AgentEnd, AgentReady } from './agent-protocol.js';
import { launchCommandPath, type LaunchCommand } from '../../rootd/protocol.js';
import { prepareAgent, type AgentSession } from './agent-session.js';
import { CordonError } from '../../platform/errors.js';
import type { SecretRegistry } from '../../platform/mask.js';
import type { Runner } from '../../platform/runner.js';
import type { AgentLaunchConfig } from './agent-protocol.js';
import type { RunBroker } from './broker.js';
import type { ShellCommand } from './env.js';
import type { FreshHome } from './home.js';
import type { UserMode } from './inputs.js';

/** Outputs `run` sets itself: the agent cannot hand back one of these names. */
export const RUN_OUTPUTS = ['exit-code', 'duration-ms', 'bytes-scrubbed', 'leaks'];

export interface UserChoice {
  mode: 'agent' | 'runner';
  via?: 'root' | 'sudo' | 'launcher';
  /** With `launcher`: the command line sudo allows (the egress daemon's copy). */
  launcher?: LaunchCommand;
  fallback?: boolean;
  reason?: string;
}

/**
 * The launcher the egress daemon offers after `disable-sudo` (rootd/launcher.ts), when sudo
 * lists it for this user; the file only says where it is, sudo decides.
 */
export function offeredLauncher(runnerTemp: string | undefined): LaunchCommand | undefined {
  if (!runnerTemp) return undefined;
  const file = launchCommandPath(runnerTemp);
  if (!existsSync(file)) return undefined;
  let c: Partial<LaunchCommand>;
  try {
    c = JSON.parse(readFileSync(file, 'utf8')) as Partial<LaunchCommand>;
  } catch {
    return undefined;
  }
  if (typeof c.node !== 'string' || typeof c.program !== 'string') return undefined;
  const listed = spawnSync('sudo', ['-n', '-l', c.node, c.program], { stdio: 'ignore', timeout: 5000 });
  return listed.status === 0 ? { node: c.node, program: c.program } : undefined;
}

/**
 * `agent` where root, passwordless sudo, or the egress daemon's launcher (after
 * `disable-sudo`) is there; `auto` falls back to the runner user, saying why.
 */
export function chooseUser(
  asked: UserMode,
  runnerTemp: string | undefined,
  available: () => IdentityMode = identityAvailable,
  launcher: (runnerTemp: string | undefined) => LaunchCommand | undefined = offeredLauncher,
): UserChoice {
  if (asked === 'runner') return { mode: 'runner' };
  const via = available();
  if (via !== 'none') return { mode: 'agent', via };
  const offered = launcher(runnerTemp);
  if (offered) return { mode: 'agent', via: 'launcher', launcher: offered };
  const reason =
    "this step has neither root nor passwordless sudo, and no egress daemon offers run's launcher, so no other user can be made";
  if (asked === 'agent') {
    throw new CordonError({
      what: 'run: user: agent, but the command cannot be given a user of its own',
      why: reason,
      fix: 'run on a runner with passwordless sudo (GitHub-hosted runners have it), or set user: runner',
      input: 'user',
    });
  }
  return { mode: 'runner', fallback: true, reason };
}

/** The ledger's account of the choice, before the user exists (the launcher adds name and uid). */
export function runUser(choice: UserChoice): RunUser {
  return { mode: choice.mode, via: choice.via, fallback: choice.fallback, reason: choice.reason };
}

const SCRIPT_DIR = '.cordon';
const BIN_DIR = '.cordon/bin';
const BROKER_GITCONFIG = '.cordon/gitconfig';

/**
 * The command for the launcher. Files the runner user keeps in its own 0700 directories
 * (the script, the fresh HOME's .gitconfig, the broker's `gh` wrapper and git config) are
 * copied into the agent's home, and the command line and environment point there
 * (`{home}` is the agent's home, filled in by the launcher).
 */
export function agentLaunchConfig(p: {
  shell: ShellCommand;
  env: Record<string, string>;
  cwd: string;
  workspace: string;
  home: FreshHome | undefined;
  broker: RunBroker | undefined;
}): AgentLaunchConfig {
  const files: AgentLaunchConfig['files'] = [];
  const script = `${SCRIPT_DIR}/${basename(p.shell.scriptPath)}`;
  files.push({ path: script, content: readFileSync(p.shell.scriptPath, 'utf8'), mode: 0o500 });
  const argv = p.shell.argv.map((a) => a.split(p.shell.scriptPath).join(`{home}/${script}`));
  const env = { ...p.env };
  delete env.HOME;
  if (p.home)
    files.push({
      path: '.gitconfig',
      content: readFileSync(join(p.home.path, '.gitconfig'), 'utf8'),
      mode: 0o600,
    });
  if (p.broker) {
    const bin = p.broker.started.binDir;
    for (const name of readdirSync(bin))
      files.push({ path: `${BIN_DIR}/${name}`, content: readFileSync(join(bin, name), 'utf8'), mode: 0o500 });
    if (env.PATH)
      env.PATH = env.PATH.split(':')
        .map((d) => (d === bin ? `{home}/${BIN_DIR}` : d))
        .join(':');
    const gitConfig = p.broker.started.gitConfigPath;
    if (gitConfig && env.GIT_CONFIG_GLOBAL === gitConfig) {
      // It includes the command's own .gitconfig by path: the agent's, in its home.
      const text = readFileSync(gitConfig, 'utf8').replace(/^\tpath = .*$/m, `\tpath = "{home}/.gitconfig"`);
      files.push({ path: BROKER_GITCONFIG, content: text, mode: 0o600 });
      env.GIT_CONFIG_GLOBAL = `{home}/${BROKER_GITCONFIG}`;
    }
  }
  return { argv, env, cwd: p.cwd, workspace: p.workspace, files };
}

export type OutputFile = ReturnType<typeof runnerOutputFile>;

/**
 * Before `run.started`: with the agent's own user, the launcher makes the user, lends it
 * the workspace and makes its cgroup; as the runner user, run makes the hand-back file.
 */
export async function startIdentity(
  user: UserChoice,
  p: Parameters<typeof agentLaunchConfig>[0] & { dir: string },
): Promise<{ agent?: AgentSession; outputFile?: OutputFile }> {
  if (user.mode === 'agent')
    return {
      agent: await prepareAgent(agentLaunchConfig(p), {
        via: user.via ?? 'sudo',
        node: user.launcher?.node,
        program: user.launcher?.program,
      }),
    };
  const outputFile = runnerOutputFile(p.dir);
  p.env.CORDON_OUTPUT = outputFile.path;
  return { outputFile };
}

/** The user the launcher made, for `run.started`. */
export function agentUser(r: AgentReady): Partial<RunUser> {
  return { name: r.user, uid: r.uid, workspace: r.strategy };
}

/** After the command: the launcher's account of the end and what the command handed back. */
export async function handedBack(
  agent: AgentSession | undefined,
  outputFile: OutputFile | undefined,
): Promise<{ agentEnd?: AgentEnd; outputs: Record<string, string>; outputError?: string }> {
  if (agent) {
    const agentEnd = await agent.ended;
    return { agentEnd, outputs: agentEnd.outputs ?? {}, outputError: agentEnd.outputError };
  }
  try {
    return { outputs: outputFile?.read() ?? {} };
  } catch (e) {
    return { outputs: {}, outputError: e instanceof Error ? e.message : String(e) };
  }
}

/** The restore's findings when there are any. */
export function anyTampering(t: FileCommandsTampered): FileCommandsTampered | undefined {
  const found = t.env.length || t.output.length || t.state.length || t.path.length || t.summary;
  return found || t.rewritten.length ? t : undefined;
}

/** As the runner user, the hand-back file is one of run's own, in its private directory. */
function runnerOutputFile(dir: string): {
  path: string;
  read(): Record<string, string>;
  remove(): void;
} {
  const path = join(dir, `output-${randomUUID()}`);
  writeFileSync(path, '', { mode: 0o600 });
  return {
    path,
    read: () => Object.fromEntries(readAgentOutput(path)),
    remove: () => rmSync(path, { force: true }),
  };
}

/**
 * Sets what the command handed back as the step's outputs. Refused, with an error naming
 * the output: one of run's own names, and a value holding a secret (outputs are not masked
 * by name: a later step could print or upload it); and a name holding one, with an error
 * that does not name it.
 */
function publishOutputs(outputs: Record<string, string>, registry: SecretRegistry, runner: Runner): string[] {
  const names = Object.keys(outputs);
  for (const name of names) {
    // An output's name is shown wherever its value is used, and nothing masks it: a secret
    // there is refused as in a value, and the error cannot say which name it was.
    if (registry.size && registry.scrub(name) !== name) {
      throw new CordonError({
        what: 'run: the name of an output the command handed back through CORDON_OUTPUT holds a secret (or one of its encoded forms)',
        why: 'output names are shown in the workflow and to later steps, and nothing masks them',
        fix: 'name outputs for what they hold, never with a value',
      });
    }
    if (RUN_OUTPUTS.includes(name)) {
      throw new CordonError({
        what: `run: the command handed back an output named "${name}" through CORDON_OUTPUT`,
        why: `run sets ${RUN_OUTPUTS.join(', ')} itself`,
        fix: 'give the output another name',
      });
    }
    const value = outputs[name];
    if (registry.size && registry.scrub(value) !== value) {
      throw new CordonError({
        what: `run: the command's output "${name}" holds a secret (or one of its encoded forms)`,
        why: 'step outputs are not secrets to the runner: later steps and the job log can show them',
        fix: 'hand back a reference to the value, never the value',
      });
    }
  }
  for (const name of names) runner.setOutput(name, outputs[name]);
  return names;
}

interface AfterCommand {
  agentEnd: AgentEnd | undefined;
  /** The agent's user name, with `user: agent`. */
  user: string | undefined;
  registry: SecretRegistry;
  runner: Runner;
}

/** What the command wrote into the file commands (all put back), and what went wrong after the agent's user. */
export function reportIdentity(a: AfterCommand & { tampered: FileCommandsTampered | undefined }): void {
  const t = a.tampered;
  if (t) {
    const what = [
      ...t.env.map((n) => `GITHUB_ENV ${n}`),
      ...t.path.map((n) => `GITHUB_PATH ${n}`),
      ...t.output.map((n) => `GITHUB_OUTPUT ${n}`),
      ...t.state.map((n) => `GITHUB_STATE ${n}`),
      ...(t.summary ? ['the job summary'] : []),
      ...t.rewritten.map((f) => `${f} (rewritten)`),
    ];
    a.runner.error(
      `run: the command wrote to the step's file commands; all of it was put back: ${a.registry.scrub(what.join(', '))}`,
      { title: 'Agent tried to change later steps' },
    );
  }
  if (a.agentEnd?.problems.length)
    a.runner.warning(`run: after the agent's user: ${a.registry.scrub(a.agentEnd.problems.join('; '))}`);
}

/** Fails the step when the agent's user outlived it or its outputs are bad; otherwise publishes them. */
export function endIdentity(
  a: AfterCommand & { outputs: Record<string, string>; outputError: string | undefined },
): void {
  if (a.agentEnd && a.user && !a.agentEnd.userRemoved) {
    throw new CordonError({
      what: `run: the agent's user ${a.user} could not be removed`,
      // Problems name paths and processes the agent chose: scrubbed like the rest of run's text.
      why: a.registry.scrub(a.agentEnd.problems.join('; ')) || 'the launcher did not say why',
      fix: 'a process of the agent may still run: treat this runner as compromised for the rest of the job',
    });
  }
  if (a.outputError) {
    throw new CordonError({
      what: 'run: the command handed back outputs that cannot be read',
      why: a.outputError,
      fix: 'write `name=value` lines (or `name<<EOF` blocks) to $CORDON_OUTPUT',
    });
  }
  publishOutputs(a.outputs, a.registry, a.runner);
}

/** What `run.finished` records of the agent's user, from what its launcher reported at the end. */
export function agentUserRecord(name: string, end: AgentEnd): NonNullable<RunFinished['agentUser']> {
  return {
    name,
    removed: end.userRemoved,
    lendMs: end.lendMs,
    handBackMs: end.handBackMs,
    leftoversRemoved: end.leftoversRemoved,
    schedulersDenied: end.schedulersDenied,
    scheduledRemoved: end.scheduledRemoved?.length ? end.scheduledRemoved : undefined,
    problems: end.problems.length ? end.problems : undefined,
  };
}
