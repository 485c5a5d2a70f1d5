import { runEntry } from '../core/entry.js';
import { secrets } from '../core/mask.js';
import { parseStartInputs } from './inputs.js';
import { recordRun } from './record.js';

await runEntry((runner) =>
  recordRun(parseStartInputs(runner.env), { env: runner.env, runner, registry: secrets }),
);
