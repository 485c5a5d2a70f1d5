import { runEntry } from '../entry.js';
import { secrets } from '../../platform/mask.js';
import { parseGithubTokenInputs } from '../../github/inputs.js';
import { issueToken } from './token-step.js';

await runEntry(async (runner) => {
  await issueToken(parseGithubTokenInputs(runner.env), { env: runner.env, runner, registry: secrets });
});
