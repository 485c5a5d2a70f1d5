/** `start`'s main: open the ledger and record who and what this run is. */
import { Ledger } from '../../ledger/ledger.js';
import { newSealKey, sealKeyPath, writeSealKey } from '../../ledger/seal.js';
import { decodeClaims, displayClaims, getIdToken, hasIdTokenAccess } from '../../platform/oidc.js';
import type { RunRecorded } from '../../ledger/events.js';
import { workspaceAtStart } from '../../github/commits.js';
import type { Env, Runner } from '../../platform/runner.js';
import type { SecretRegistry } from '../../platform/mask.js';
import type { StartInputs } from './inputs.js';

export interface StartDeps {
  env: Env;
  runner: Runner;
  registry: SecretRegistry;
  fetch?: typeof fetch;
}

export function describeRun(env: Env): RunRecorded {
  return {
    repository: env.GITHUB_REPOSITORY,
    sha: env.GITHUB_SHA,
    ref: env.GITHUB_REF,
    event: env.GITHUB_EVENT_NAME,
    actor: env.GITHUB_ACTOR,
    triggeringActor: env.GITHUB_TRIGGERING_ACTOR,
    workflow: env.GITHUB_WORKFLOW,
    workflowRef: env.GITHUB_WORKFLOW_REF,
    job: env.GITHUB_JOB,
    runId: env.GITHUB_RUN_ID,
    runAttempt: env.GITHUB_RUN_ATTEMPT,
    runnerOs: env.RUNNER_OS,
    serverUrl: env.GITHUB_SERVER_URL,
  };
}

export async function recordRun(inputs: StartInputs, deps: StartDeps): Promise<void> {
  const { env, runner } = deps;
  const ledger = Ledger.forEnv(env, { action: 'start', registry: deps.registry });
  const nonce = ledger.open();
  const run = describeRun(env);
  // Whether the recorded commit is in the workspace repository now: the post warns when it is
  // gone (or the repository replaced) rather than skipping the commits with an info line.
  run.workspace = workspaceAtStart(env, run.sha);
  const tags = run.workspace.tags;
  if (!tags)
    runner.info(
      'start: no tags recorded (the workspace is not a git repository yet, or git could not list its tags): the post counts a tag whose file changes after this step, such as one a checkout placed after start fetches, as written in the run; place start after actions/checkout',
    );
  else if (tags.cut)
    runner.info(
      `start: the workspace repository has more than ${tags.count} tags: the first ${tags.count} are recorded, and the post judges the others by when their files changed`,
    );
  if (hasIdTokenAccess(env)) {
    const token = await getIdToken(inputs.audience, {
      env,
      fetch: deps.fetch,
      registry: deps.registry,
      action: 'start',
      audienceInput: 'oidc-audience',
    });
    run.oidc = displayClaims(decodeClaims(token));
  } else {
    runner.info('start: no id-token permission; the run is recorded without OIDC claims');
  }
  const { hash } = ledger.append('run.recorded', run as Record<string, unknown>, nonce);
  // The key the first command's window is sealed with: run takes it off the disk before
  // its command starts; the post checks every seal from the public half.
  const seal = newSealKey(1);
  writeSealKey(sealKeyPath(ledger.path), seal.key);
  runner.saveState('seal-key', seal.publicKey);
  runner.setOutput('seal-key', seal.publicKey);
  if (nonce) runner.saveState('nonce', nonce);
  runner.saveState('head', hash);
  runner.saveState('started', new Date().toISOString());
  runner.setOutput('ledger-path', ledger.path);
  runner.info(`start: ledger at ${ledger.path}`);
}
