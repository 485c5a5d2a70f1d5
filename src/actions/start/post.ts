import { runEntry } from '../entry.js';
import { parseStartInputs } from './inputs.js';
import { writeSummary } from './summarize.js';

await runEntry((runner) => writeSummary(parseStartInputs(runner.env), runner));
