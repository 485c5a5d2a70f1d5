import { runEntry } from '../core/entry.js';
import { secrets } from '../core/mask.js';
import { revokeToken } from './token.js';

await runEntry(
  async (runner) => {
    await revokeToken({ env: runner.env, runner, registry: secrets });
  },
  undefined,
  { post: 'github-token' },
);
