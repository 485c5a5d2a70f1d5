import { runEntry } from '../entry.js';
import { secrets } from '../../platform/mask.js';
import { parseStartInputs } from './inputs.js';
import { recordRun } from './record.js';

await runEntry((runner) =>
  recordRun(parseStartInputs(runner.env), { env: runner.env, runner, registry: secrets }),
);
