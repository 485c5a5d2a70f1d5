import { runEntry } from '../entry.js';
import { secrets } from '../../platform/mask.js';
import { revokeToken } from './token-step.js';

await runEntry(
  async (runner) => {
    await revokeToken({ env: runner.env, runner, registry: secrets });
  },
  undefined,
  { post: 'github-token' },
);
