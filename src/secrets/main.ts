import { runEntry } from '../core/entry.js';
import { Inputs } from '../core/inputs.js';
import { secrets } from '../core/mask.js';
import { exportSecrets } from './export.js';
import { parseSecretsActionInputs } from './inputs.js';

await runEntry((runner) =>
  exportSecrets(parseSecretsActionInputs(new Inputs('secrets', runner.env)), {
    env: runner.env,
    runner,
    registry: secrets,
  }),
);
