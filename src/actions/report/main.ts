import { runEntry } from '../entry.js';
import { parseReportInputs } from './inputs.js';
import { writeReport } from './report.js';

await runEntry(({ runner, env, ledger }) =>
  writeReport(parseReportInputs(env), { runner, ledger: ledger('report') }),
);
