/**
 * `run`'s main: fetch every secret (and mint AWS credentials) first, start the command with
 * a clean environment holding them, scrub its output as a stream, then scan the workspace
 * for leaked values, record the run and hand back the command's exit code. Three stages:
 * `prepare` (prepare.ts), `execute` and `conclude` (here); stages.ts holds what they pass on.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CordonError } from '../../platform/errors.js';
import type { FileCommandsTampered, RunFinished } from '../../ledger/events.js';
import { StreamScrubber, scrubStrings } from '../../platform/mask.js';
import { flushLedgerCopy } from '../../ledger/copy.js';
import { restoreFileCommands, snapshotFileCommands } from '../../identity/filecmds.js';
import { RefreshingScrubber, stopRunBroker } from './broker.js';
import type { RunInputs } from './inputs.js';
import { CommandOutput } from './output.js';
import { annotateHidden, annotateLeaks, leakScanError, scanAfterRun, type Leak } from './leaks.js';
import { secretsInNames, type NamesChecked } from './dns-names.js';
import { launchCommand, type CommandEnd, type CommandExit } from './spawn.js';
import { removeDaemonCgroup } from './cgroup.js';
import { closeRunnerTemp } from './runner-temp.js';
import { closeUnstarted, sealWindow, verifyWindow } from './seal-window.js';
import { prepare } from './prepare.js';
import type { Executed, Prepared, RunDeps } from './stages.js';
import type { AgentEnd } from './agent-protocol.js';
import { reportGitRestored, restoreGitDir, snapshotGitDir, type GitRestored } from './gitguard.js';
import { agentUserRecord, anyTampering, endIdentity, handedBack, reportIdentity } from './identity.js';

export interface RunResult {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  durationMs: number;
  bytesScrubbed: number;
  leaks: Leak[];
  processesKilled: number;
}

/** How long to wait for the output pipes to close once the command's group is killed. */
const DRAIN_MS = 5000;

export async function runCommand(inputs: RunInputs, deps: RunDeps): Promise<RunResult> {
  const ready = await prepare(inputs, deps);
  const ran = await execute(inputs, deps, ready);
  const inNames = await secretsInNames(deps);
  return conclude(inputs, deps, ready, ran, inNames);
}

/**
 * Runs the command with its output scrubbed, kills what it leaves behind (on its end or its
 * timeout), then takes back what it was lent: script, HOME, checkout token, broker.
 */
async function execute(inputs: RunInputs, deps: RunDeps, ready: Prepared): Promise<Executed> {
  const { runner, registry } = deps;
  const { broker, shell, commandEnv, cwd, containment, home, checkoutToken, agent, outputFile } = ready;
  const stdout = deps.stdout ?? process.stdout;
  const stderr = deps.stderr ?? process.stderr;
  const startedAt = Date.now();
  let exit: CommandExit;
  let timedOut = false;
  let processesKilled = 0;
  let end: CommandEnd = { alive: 0, left: 0 };
  let checkoutTokenRestored: boolean | undefined;
  let tampered: FileCommandsTampered | undefined;
  let agentEnd: AgentEnd | undefined;
  let gitRestored: GitRestored | undefined;
  let outputs: Record<string, string> = {};
  let outputError: string | undefined;
  // The step's file commands as they are now: put back after the command, whoever it runs as.
  const fileCommands = snapshotFileCommands(deps.env);
  // And what in the workspace's .git makes git run programs (the checkout token is already out).
  const gitGuard = snapshotGitDir(ready.workspace);
  const matcher = registry.size ? registry.matcher() : undefined;
  const output = new CommandOutput(
    stdout,
    stderr,
    registry,
    inputs.scrubOutput && matcher
      ? () => (broker ? new RefreshingScrubber(registry) : new StreamScrubber(matcher))
      : undefined,
  );
  // run.started is in the egress daemon's copy of the ledger before the command can write.
  await flushLedgerCopy();
  const closedTemp = agent && closeRunnerTemp(deps.env.RUNNER_TEMP, ready.workspace, runner);
  try {
    const proc = agent
      ? await agent.start()
      : await launchCommand({ argv: shell.argv, env: commandEnv, cwd, containment }).catch((e: unknown) => {
          // Refused its cgroup: nothing ran. The record says so, closed and sealed.
          const why = registry.scrub(e instanceof Error ? e.message : String(e));
          closeUnstarted(ready.ledger, ready, { notStarted: why, containment: containment.kind });
          throw e;
        });
    // The egress daemon labels refused names and destinations "under run's command" from this
    // pid (a hint, not proof: the agent can rewrite the file).
    mkdirSync(join(runner.tempDir, 'cordon'), { recursive: true, mode: 0o700 });
    writeFileSync(join(runner.tempDir, 'cordon', 'agent.pid'), `${proc.pid}\n`);
    const drained = output.forward(proc);
    let killTimer: NodeJS.Timeout | undefined;
    const timer =
      inputs.timeoutMs > 0
        ? setTimeout(() => {
            timedOut = true;
            processesKilled += proc.kill('SIGTERM');
            killTimer = setTimeout(() => proc.kill('SIGKILL'), deps.killGraceMs ?? 5000);
          }, inputs.timeoutMs)
        : undefined;
    exit = await proc.exited;
    if (timer) clearTimeout(timer);
    if (killTimer) clearTimeout(killTimer);
    // Nothing the command started outlives its step: its cgroup (or group) is killed and removed.
    end = await proc.finish();
    // The daemon's cgroup directory is root's: the daemon removes it once it is empty.
    if (containment.daemon && containment.path && !end.cgroupRemoved)
      end.cgroupRemoved = await removeDaemonCgroup(containment);
    // Through the launcher, a signal's count comes back as a message.
    processesKilled += end.alive + (agent?.signalled ?? 0);
    let drainTimer: NodeJS.Timeout | undefined;
    const late = await Promise.race([
      drained.then(() => false),
      new Promise<boolean>((res) => (drainTimer = setTimeout(() => res(true), DRAIN_MS))),
    ]);
    if (drainTimer) clearTimeout(drainTimer);
    if (late) {
      // A process outside the group still holds the pipes: stop reading them.
      proc.stdout.destroy();
      proc.stderr.destroy();
    }
    // Nothing more of the command's reaches the runner: a line it left open is ended, so
    // run's own warnings after it start lines of their own.
    output.endLines();
    if (late) {
      runner.warning('run: a process the command started left its process group and kept the output open');
    }
    ({ agentEnd, outputs, outputError } = await handedBack(agent, outputFile));
  } finally {
    // Started or not, run's own commands (its error, its warnings) start lines of their own.
    output.endLines();
    tampered = anyTampering(restoreFileCommands(fileCommands, (t) => registry.scrub(t)));
    // Started but failed before the command ran: the launcher undoes the user and the loan.
    if (agent && !agentEnd) agentEnd = await agent.abort();
    if (closedTemp) closedTemp.reopen();
    // The workspace is back with this user: .git as it was, then the checkout token into it.
    if (gitGuard) gitRestored = restoreGitDir(gitGuard);
    outputFile?.remove();
    rmSync(shell.scriptPath, { force: true });
    home?.remove();
    if (checkoutToken) checkoutTokenRestored = checkoutToken.restore();
    // The command's processes are gone: nothing may fetch credentials after this.
    if (broker) await stopRunBroker(broker, runner);
  }
  const durationMs = Date.now() - startedAt;
  const bytesScrubbed = output.scrubbed;
  const hiddenInOutput = output.hidden;
  return {
    hiddenInOutput,
    exit,
    startedAt,
    durationMs,
    timedOut,
    processesKilled,
    end,
    bytesScrubbed,
    checkoutTokenRestored,
    tampered,
    agentEnd,
    gitRestored,
    outputs,
    outputError,
  };
}

/**
 * After the command: scans the workspace for leaked values, checks the ledger against what
 * run held, records `run.finished`, sets the outputs and fails the step when it must.
 */
function conclude(
  inputs: RunInputs,
  deps: RunDeps,
  ready: Prepared,
  ran: Executed,
  inNames: NamesChecked | undefined,
): RunResult {
  const { runner, registry } = deps;
  const { workspace, gitBefore, ledger, held, containment, checkoutToken } = ready;
  const { exit, durationMs, timedOut, end, agentEnd } = ran;
  const scan = scanAfterRun({
    workspace,
    registry,
    since: ran.startedAt - 2000,
    before: gitBefore,
    scan: inputs.leakScan !== 'off' && registry.size > 0,
  });
  const { leaks, notScanned } = scan;
  for (const s of notScanned) runner.warning(`run: the leak scan did not read ${s}`);
  // The command's processes are gone: compare the ledger with what run held in memory.
  const window = verifyWindow(ledger, held, (t) => registry.scrub(t));
  const ledgerIntact = window.ok;
  const finished: RunFinished = {
    exitCode: exit.code,
    signal: exit.signal ?? undefined,
    durationMs,
    bytesScrubbed: ran.bytesScrubbed,
    timedOut: timedOut || undefined,
    leaks,
    leaksNotScanned: notScanned.length ? notScanned.slice(0, 100) : undefined,
    commitsCreated: scan.commitsCreated.length ? scan.commitsCreated : undefined,
    processesKilled: ran.processesKilled,
    processesAlive: end.alive,
    processesLeft: end.left || undefined,
    containment: containment.kind,
    containmentReason: containment.reason,
    ledgerIntact,
    checkoutTokenRestored: ran.checkoutTokenRestored,
    fileCommandsTampered: ran.tampered,
    ...reportGitRestored(ran.gitRestored, (m) => runner.warning(registry.scrub(m))),
    agentUser: agentEnd && ready.agent ? agentUserRecord(ready.agent.ready.user, agentEnd) : undefined,
    outputs: Object.keys(ran.outputs).length ? Object.keys(ran.outputs) : undefined,
    secretsInNames: inNames?.found.length ? inNames.found : undefined,
    dnsNamesNotChecked: inNames?.notChecked,
    secretsInProcessNames: inNames?.inProcesses,
    secretsHiddenInOutput: ran.hiddenInOutput.length ? ran.hiddenInOutput : undefined,
  };
  // Names the command chose (its outputs', a file it left in .git, a line it wrote to a file
  // command) are recorded scrubbed: the ledger refuses a line holding a secret, and a name
  // holding one would keep the whole of run.finished out of the record (T79).
  ledger.append('run.finished', scrubStrings(finished, registry));
  sealWindow(ledger, ready.sealKey);
  runner.setOutput('exit-code', exit.code === null ? '' : String(exit.code));
  runner.setOutput('duration-ms', String(durationMs));
  runner.setOutput('bytes-scrubbed', String(ran.bytesScrubbed));
  runner.setOutput('leaks', String(leaks.length));
  runner.info(
    `run: the command ended with ${exit.code !== null ? `exit code ${exit.code}` : `signal ${exit.signal}`} after ${durationMs} ms; ${ran.bytesScrubbed} byte(s) of secrets scrubbed from its output; ${ran.processesKilled} leftover process(es) killed`,
  );
  annotateLeaks(leaks, inputs.leakScan, runner);
  annotateHidden(ran.hiddenInOutput, runner);

  reportIdentity({ tampered: ran.tampered, agentEnd, user: ready.agent?.ready.user, registry, runner });
  if (checkoutToken && !ran.checkoutTokenRestored)
    runner.warning(
      'run: the checkout token could not be put back into .git/config or the file it includes (the command removed or replaced it)',
    );
  endIdentity({
    agentEnd,
    user: ready.agent?.ready.user,
    outputs: ran.outputs,
    outputError: ran.outputError,
    registry,
    runner,
  });
  if (!ledgerIntact) {
    throw new CordonError({
      what: 'run: the run ledger was altered while the command ran',
      why: window.details.join('; '),
      fix: 'treat this run as compromised: review what the command did',
    });
  }
  if (timedOut) {
    throw new CordonError({
      what: `run: the command timed out after ${inputs.timeoutMs / 60000} minute(s) and its process group was killed`,
      fix: 'raise timeout-minutes, or find out why the command hangs',
      input: 'timeout-minutes',
    });
  }
  const failed = inputs.leakScan === 'fail' ? leakScanError(leaks, notScanned) : undefined;
  if (failed) throw failed;
  return {
    exitCode: exit.code,
    signal: exit.signal,
    timedOut,
    durationMs,
    bytesScrubbed: ran.bytesScrubbed,
    leaks,
    processesKilled: ran.processesKilled,
  };
}
