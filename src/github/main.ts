import { runEntry } from '../core/entry.js';
import { secrets } from '../core/mask.js';
import { parseGithubTokenInputs } from './inputs.js';
import { issueToken } from './token.js';

await runEntry(async (runner) => {
  await issueToken(parseGithubTokenInputs(runner.env), { env: runner.env, runner, registry: secrets });
});
