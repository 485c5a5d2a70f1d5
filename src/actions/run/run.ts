/**
 * `run`'s main: fetch every secret (and mint AWS credentials) first, start the command with
 * a clean environment holding them, scrub its output as a stream, then scan the workspace
 * for leaked values, record the run and hand back the command's exit code.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { CordonError } from '../../platform/errors.js';
import { commandPreview } from '../../platform/redact.js';
import type { RunFinished, RunStarted } from '../../ledger/events.js';
import { Ledger } from '../../ledger/ledger.js';
import { StreamScrubber, scrubStrings, type SecretRegistry } from '../../platform/mask.js';
import type { Env, Runner } from '../../platform/runner.js';
import { fetchSecrets, type FetchDeps } from '../../secrets/fetch.js';
import { registerFetched } from '../../secrets/register.js';
import { mintAwsCredentials } from './aws-credentials.js';
import { buildCommandEnv, commandDigest, prepareShell, workingDirectory } from './env.js';
import { RefreshingScrubber, startRunBroker, stopRunBroker, withBrokerEnv } from './broker.js';
import type { RunInputs } from './inputs.js';
import { CommandOutput } from './output.js';
import { annotateHidden, annotateLeaks, leakScanError, scanAfterRun, type Leak } from './leaks.js';
import { secretsInNames, type NamesChecked } from './dns-names.js';
import { snapshotGit } from './leaks-git.js';
import { launchCommand, type CommandEnd, type CommandExit } from './spawn.js';
import { CGROUP_SOCKET, createCgroup, removeDaemonCgroup, type Containment } from './cgroup.js';
import { fenceId, flushLedgerCopy, stateDir } from '../../ledger/copy.js';
import { gitIdentity, homeForCommand } from './home.js';
import { withholdCheckoutToken } from './checkout-token.js';
import { closeRunnerTemp, recoverRunnerTemp } from './runner-temp.js';
import { closeUnstarted, openWindow, sealWindow, verifyWindow } from './seal-window.js';
import type { Executed, Prepared } from './stages.js';
import { restoreFileCommands, snapshotFileCommands } from '../../identity/filecmds.js';
import type { AgentEnd } from './agent-protocol.js';
import { reportGitRestored, restoreGitDir, snapshotGitDir, type GitRestored } from './gitguard.js';
import {
  agentUser,
  agentUserRecord,
  anyTampering,
  chooseUser,
  endIdentity,
  handedBack,
  reportIdentity,
  runUser,
  startIdentity,
} from './identity.js';
import type { FileCommandsTampered } from '../../ledger/events.js';

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
 * Everything the command needs, before it starts (when any of it fails, nothing runs):
 * credentials and secrets, its environment and HOME, containment, and `run.started`.
 */
async function prepare(inputs: RunInputs, deps: RunDeps): Promise<Prepared> {
  const { env, runner, registry } = deps;
  recoverRunnerTemp(env.RUNNER_TEMP, runner, 'run');
  if (inputs.githubToken) registry.register(inputs.githubToken, { name: 'github-token' });
  const workspace = resolve(env.GITHUB_WORKSPACE || process.cwd());
  const cwd = workingDirectory(inputs, workspace);
  const user = chooseUser(inputs.user, env.RUNNER_TEMP);

  // With `credentials: broker` the broker holds the ID-token pair and hands out fresh keys.
  const broker = await startRunBroker(inputs, deps);
  const creds = broker ? broker.credentials : await mintAwsCredentials(inputs, deps);
  const fetched = await fetchSecrets(inputs.specs, {
    // Secrets are fetched with the role minted for this command, in its region.
    env: inputs.aws ? { ...env, AWS_REGION: inputs.aws.region, AWS_DEFAULT_REGION: inputs.aws.region } : env,
    secretsJson: inputs.secretsJson,
    credentials: creds,
    input: 'secrets',
    retry: deps.fetchRetry,
    onRetry: (source, reason, attempt, delay) =>
      runner.info(`run: fetching ${source} failed (${reason}, attempt ${attempt}); retrying in ${delay} ms`),
  });
  registerFetched(fetched, registry);

  const { env: builtEnv, removed } = buildCommandEnv({
    base: env,
    keepEnv: inputs.keepEnv,
    secrets: fetched,
    githubToken: inputs.githubToken || undefined,
    aws: broker ? undefined : creds && { ...creds, region: inputs.aws?.region },
  });
  // Earlier steps' credentials: a fresh HOME, credential-file variables dropped.
  const withheld: string[] = [];
  const home = homeForCommand({
    mode: inputs.home,
    env: builtEnv,
    keepEnv: inputs.keepEnv,
    withheld,
    dir: join(runner.tempDir, 'cordon', 'run'),
    realHome: env.HOME,
    workspace,
    identity: () => gitIdentity(env, Ledger.forEnv(env, { action: 'run' }).events()),
  });
  const commandEnv = broker ? withBrokerEnv(builtEnv, removed, broker) : builtEnv;
  const shell = prepareShell(inputs.run, inputs.shell, join(runner.tempDir, 'cordon', 'run'));
  // Before the command: the objects of every repository in the workspace (leaks-git.ts); with
  // the scan off, only the workspace repository's, for the commits the attribution names.
  const gitBefore = snapshotGit(workspace, undefined, { commitsOnly: inputs.leakScan === 'off' });
  const ledger = Ledger.forEnv(env, { action: 'run', registry });
  const credentialsGiven = [
    ...(broker ? broker.given : creds ? [`aws:${creds.assumedRoleArn}`] : []),
    ...(inputs.githubToken ? ['github-token'] : []),
  ];
  const started: RunStarted = {
    commandSha256: commandDigest(inputs.run),
    shell: shell.shell,
    secrets: fetched.map((f) => ({ name: f.name, source: f.source })),
    envRemoved: removed,
    credentials: credentialsGiven.length ? credentialsGiven : undefined,
    home: inputs.home,
  };
  // The checkout token actions/checkout left in .git/config: out of the file while the command runs
  // (before the workspace is lent: run cannot write it through the agent's mapping).
  const checkoutToken = home ? withholdCheckoutToken(workspace) : undefined;
  if (checkoutToken) {
    for (const v of checkoutToken.secrets) registry.register(v, { name: 'checkout token (.git/config)' });
    withheld.push(...checkoutToken.withheld);
  }
  // The agent's own user: the launcher makes it, lends it the workspace and makes the
  // cgroup now, so run.started can name it; the command starts once that line is written.
  const { agent, outputFile } = await startIdentity(user, {
    shell,
    env: commandEnv,
    cwd,
    workspace,
    home,
    broker,
    dir: join(runner.tempDir, 'cordon', 'run'),
  });
  try {
    return recordStart();
  } catch (e) {
    // The command never starts: the launcher removes the user and gives the workspace back.
    await agent?.abort();
    throw e;
  }

  function recordStart(): Prepared {
    started.user = { ...runUser(user), ...(agent && agentUser(agent.ready)) };
    if (agent?.ready.fallbackReason)
      runner.info(`run: the workspace is lent by chown -R: ${agent.ready.fallbackReason}`);
    const containment: Containment = agent
      ? { kind: agent.ready.containment, reason: agent.ready.containmentReason }
      : createCgroup({ daemonSocket: join(stateDir(fenceId(runner.tempDir)), CGROUP_SOCKET) });
    started.containment = containment.kind;
    if (containment.daemon) started.containmentBy = 'egress daemon';
    if (containment.reason) started.containmentReason = containment.reason;
    if (withheld.length) started.withheld = withheld;
    // Every secret is registered by now (the checkout token last): the command as the summary shows it.
    started.command = commandPreview(inputs.run, (t) => registry.scrub(t));
    // The command runs as the same user and can write the ledger: the line written here is
    // checked, with the chain up to it, once the command's processes are gone.
    // run keeps every line's hash up to here in memory: what changed, was removed or inserted shows.
    const { held, sealKey } = openWindow(ledger, started, runner);
    if (containment.reason)
      runner.warning(`run: containment is weaker: only a process group, because ${containment.reason}`);
    if (user.fallback)
      runner.warning(
        `run: the command runs as the runner user, because ${user.reason}: it can write what later steps run and read its parent's environment (set user: agent to require its own user)`,
      );
    if (agent)
      runner.info(
        `run: the command runs as ${agent.ready.user} (uid ${agent.ready.uid}), a user made for this step`,
      );
    if (withheld.length) runner.info(`run: withheld from the command: ${withheld.join(', ')}`);
    runner.info(
      `run: starting the command with ${fetched.length} secret(s)${credentialsGiven.length ? ` and ${credentialsGiven.join(', ')}` : ''}; removed from its environment: ${removed.join(', ') || 'nothing'}`,
    );
    return {
      workspace,
      cwd,
      broker,
      commandEnv,
      shell,
      home,
      checkoutToken,
      containment,
      ledger,
      held,
      sealKey,
      gitBefore,
      agent,
      outputFile,
    };
  }
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
