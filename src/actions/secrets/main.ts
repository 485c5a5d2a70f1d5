import { runEntry } from '../entry.js';
import { Inputs } from '../../platform/inputs.js';
import { secrets } from '../../platform/mask.js';
import { exportSecrets } from './export.js';
import { parseSecretsActionInputs } from '../../secrets/inputs.js';

await runEntry((runner) =>
  exportSecrets(parseSecretsActionInputs(new Inputs('secrets', runner.env)), {
    env: runner.env,
    runner,
    registry: secrets,
  }),
);
