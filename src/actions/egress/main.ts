import { runEntry } from '../entry.js';
import { parseEgressInputs } from './inputs.js';
import { startFence } from './launch.js';

await runEntry(({ runner, env, ledger, bundled }) =>
  startFence(parseEgressInputs(env), {
    runner,
    ledger: ledger('egress'),
    daemonScript: bundled('daemon.js'),
  }),
);
