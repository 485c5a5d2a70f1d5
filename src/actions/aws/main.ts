import { runEntry } from '../entry.js';
import { Inputs } from '../../platform/inputs.js';
import { parseAwsActionInputs } from '../../aws/inputs.js';
import { exportThroughBroker } from './broker.js';
import { issueCredentials } from './issue.js';

await runEntry(async (ctx) => {
  const inputs = parseAwsActionInputs(new Inputs('aws', ctx.env));
  if (inputs.export === 'broker') await exportThroughBroker(inputs, ctx);
  else await issueCredentials(inputs, ctx);
});
