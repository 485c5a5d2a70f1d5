import { runEntry } from '../entry.js';
import { stopExportedBroker } from './broker.js';
import { endCredentials } from './cleanup.js';

await runEntry(
  async ({ runner }) => {
    // export: broker: stop serving first; what it handed out expires on its own.
    const validUntil = await stopExportedBroker(runner);
    endCredentials(runner, { validUntil });
  },
  { post: 'aws' },
);
