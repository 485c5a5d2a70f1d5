/**
 * `secrets`'s main and post: for jobs whose later steps need the values. Exporting writes
 * them to the runner's disk (GITHUB_ENV or the step outputs) for the rest of the job, so
 * the step says so in the log and the summary; post blanks the variables it set.
 */
import type { SecretsFetched } from '../../ledger/events.js';
import { Ledger } from '../../ledger/ledger.js';
import type { SecretRegistry } from '../../platform/mask.js';
import type { Env, Runner } from '../../platform/runner.js';
import { fetchSecrets, type FetchDeps } from '../../secrets/fetch.js';
import type { SecretsActionInputs } from '../../secrets/inputs.js';
import { registerFetched } from '../../secrets/register.js';

export interface SecretsDeps {
  env: Env;
  runner: Runner;
  registry: SecretRegistry;
  fetchRetry?: FetchDeps['retry'];
}

export interface SecretsState {
  export: string;
  names: string[];
}

export async function exportSecrets(inputs: SecretsActionInputs, deps: SecretsDeps): Promise<void> {
  const { env, runner, registry } = deps;
  const fetched = await fetchSecrets(inputs.specs, {
    env,
    secretsJson: inputs.secretsJson,
    input: 'secrets',
    retry: deps.fetchRetry,
    onRetry: (source, reason, attempt, delay) =>
      runner.info(
        `secrets: fetching ${source} failed (${reason}, attempt ${attempt}); retrying in ${delay} ms`,
      ),
  });
  registerFetched(fetched, registry);
  const event: SecretsFetched = {
    secrets: fetched.map((f) => ({ name: f.name, source: f.source })),
    export: inputs.export,
  };
  Ledger.forEnv(env, { action: 'secrets', registry }).append('secrets.fetched', event);
  for (const f of fetched) {
    if (inputs.export === 'env') runner.exportVariable(f.name, f.value);
    else runner.setOutput(f.name, f.value);
  }
  const state: SecretsState = { export: inputs.export, names: fetched.map((f) => f.name) };
  runner.saveState('secrets', JSON.stringify(state));
  const names = fetched.map((f) => f.name).join(', ');
  const where =
    inputs.export === 'env'
      ? 'GITHUB_ENV (every later step sees them as variables)'
      : 'step outputs (masked)';
  const warning = `secrets: ${names} now live on the runner's disk in ${where} for the rest of the job, readable by every later step, the agent's included. To hand secrets to one command only, use actions/run with the same secrets input.`;
  runner.warning(warning, { title: 'Secrets exported for the rest of the job' });
  runner.appendSummary(`> [!WARNING]\n> ${warning}\n\n`);
  runner.info(`secrets: ${fetched.length} secret(s) fetched, masked and exported to ${inputs.export}`);
}

/** Post: blanks the variables main exported, so post steps that run later do not see them. */
export function resetSecrets(runner: Runner): void {
  const raw = runner.getState('secrets');
  if (!raw) return;
  const state = JSON.parse(raw) as SecretsState;
  if (state.export !== 'env') {
    runner.info('secrets: outputs cannot be withdrawn; they end with the job');
    return;
  }
  for (const name of state.names) runner.exportVariable(name, '');
  runner.info(`secrets: reset ${state.names.join(', ')} in GITHUB_ENV`);
}
