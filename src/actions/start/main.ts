import { runEntry } from '../entry.js';
import { parseStartInputs } from './inputs.js';
import { recordRun } from './record.js';

await runEntry((ctx) => recordRun(parseStartInputs(ctx.env), ctx));
