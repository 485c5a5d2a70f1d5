import { runEntry } from '../entry.js';
import { Inputs } from '../../platform/inputs.js';
import { secrets } from '../../platform/mask.js';
import { exportThroughBroker } from './broker.js';
import { parseAwsActionInputs } from '../../aws/inputs.js';
import { issueCredentials } from './issue.js';

await runEntry(async (runner) => {
  const inputs = parseAwsActionInputs(new Inputs('aws', runner.env));
  const deps = { env: runner.env, runner, registry: secrets };
  if (inputs.export === 'broker') await exportThroughBroker(inputs, deps);
  else await issueCredentials(inputs, deps);
});
