import { recoverRunnerTemp } from '../run/runner-temp.js';
import { runEntry } from '../entry.js';
import { parseStartInputs } from './inputs.js';
import { writeSummary } from './summarize.js';

// No `post` option: start's post judges the whole run itself rather than one step's head.
// A run step killed while RUNNER_TEMP was closed to other users left its mode recorded: put
// back here too, for what runs after it (other post steps, the runner's container cleanup).
await runEntry(({ runner, env }) => {
  recoverRunnerTemp(env.RUNNER_TEMP, runner, 'start');
  return writeSummary(parseStartInputs(env), runner);
});
