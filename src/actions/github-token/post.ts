import { runEntry } from '../entry.js';
import { revokeToken } from './token-step.js';

await runEntry((ctx) => revokeToken(ctx), { post: 'github-token' });
