import { runEntry } from '../entry.js';
import { parseEgressInputs } from './inputs.js';
import { reportFence } from './report.js';

await runEntry(
  ({ runner, env, ledger, bundled }) =>
    reportFence(parseEgressInputs(env), {
      runner,
      ledger: ledger('egress'),
      daemonScript: bundled('daemon.js'),
    }),
  { post: 'egress' },
);
