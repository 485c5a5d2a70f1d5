import { dirname, join } from 'node:path';
import { runEntry } from '../entry.js';
import { Ledger } from '../../ledger/ledger.js';
import { parseEgressInputs } from './inputs.js';
import { startFence } from './launch.js';

await runEntry((runner) =>
  startFence(parseEgressInputs(runner.env), {
    runner,
    ledger: Ledger.forEnv(runner.env, { action: 'egress' }),
    daemonScript: join(dirname(process.argv[1]), 'daemon.js'),
  }),
);
