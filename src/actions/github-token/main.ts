import { runEntry } from '../entry.js';
import { parseGithubTokenInputs } from '../../github/inputs.js';
import { issueToken } from './token-step.js';

await runEntry((ctx) => issueToken(parseGithubTokenInputs(ctx.env), ctx));
