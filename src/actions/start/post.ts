import { runEntry } from '../entry.js';
import { parseStartInputs } from './inputs.js';
import { writeSummary } from './summarize.js';

// No `post` option: start's post judges the whole run itself rather than one step's head.
await runEntry(({ runner, env }) => writeSummary(parseStartInputs(env), runner));
