import { runEntry } from '../core/entry.js';
import { Inputs } from '../core/inputs.js';
import { secrets } from '../core/mask.js';
import { exportThroughBroker } from './broker.js';
import { parseAwsActionInputs } from './inputs.js';
import { issueCredentials } from './issue.js';

await runEntry(async (runner) => {
  const inputs = parseAwsActionInputs(new Inputs('aws', runner.env));
  const deps = { env: runner.env, runner, registry: secrets };
  if (inputs.export === 'broker') await exportThroughBroker(inputs, deps);
  else await issueCredentials(inputs, deps);
});
