import { runEntry } from '../entry.js';
import { parsePublishInputs } from './inputs.js';
import { publish } from './publish.js';

await runEntry((ctx) => publish(parsePublishInputs(ctx.env), { ...ctx, ledger: ctx.ledger('publish') }));
