/**
 * `run`'s first stage, everything before the command starts (when any of it fails, nothing
 * runs): RUNNER_TEMP recovered from an earlier step, the broker or minted AWS credentials and
 * the secrets, the command's environment and fresh HOME, the checkout token withheld, the
 * workspace's git objects taken for the leak scan, the agent's user and containment, and
 * `run.started` written with the ledger window opened on it.
 */
import { join, resolve } from 'node:path';
import { commandPreview } from '../../platform/redact.js';
import type { RunStarted } from '../../ledger/events.js';
import { Ledger } from '../../ledger/ledger.js';
import { fenceId, stateDir } from '../../ledger/copy.js';
import { fetchSecrets } from '../../secrets/fetch.js';
import { registerFetched } from '../../secrets/register.js';
import { mintAwsCredentials } from './aws-credentials.js';
import { startRunBroker, withBrokerEnv } from './broker.js';
import { CGROUP_SOCKET, createCgroup, type Containment } from './cgroup.js';
import { withholdCheckoutToken } from './checkout-token.js';
import { buildCommandEnv, commandDigest, prepareShell, workingDirectory } from './env.js';
import { gitIdentity, homeForCommand } from './home.js';
import { agentUser, chooseUser, runUser, startIdentity } from './identity.js';
import type { RunInputs } from './inputs.js';
import { snapshotGit } from './leaks-git.js';
import { recoverRunnerTemp } from './runner-temp.js';
import { openWindow } from './seal-window.js';
import type { Prepared, RunDeps } from './stages.js';

/**
 * Everything the command needs, before it starts (when any of it fails, nothing runs):
 * credentials and secrets, its environment and HOME, containment, and `run.started`.
 */
export async function prepare(inputs: RunInputs, deps: RunDeps): Promise<Prepared> {
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
