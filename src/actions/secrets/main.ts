import { runEntry } from '../entry.js';
import { Inputs } from '../../platform/inputs.js';
import { parseSecretsActionInputs } from '../../secrets/inputs.js';
import { exportSecrets } from './export.js';

await runEntry((ctx) => exportSecrets(parseSecretsActionInputs(new Inputs('secrets', ctx.env)), ctx));
