import { runEntry } from '../entry.js';
import { revokeToken } from '../../github/token.js';

await runEntry((ctx) => revokeToken(ctx), { post: 'github-token' });
