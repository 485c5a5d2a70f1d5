/** The inputs `actions/secrets` and `actions/run` share: which secrets, from where. */
import type { Inputs } from '../platform/inputs.js';
import { parseSecretSpecs, parseSecretsJson, type SecretSpec } from './spec.js';

export const EXPORT_MODES = ['env', 'outputs'] as const;
export type SecretsExport = (typeof EXPORT_MODES)[number];

export interface SecretSourceInputs {
  specs: SecretSpec[];
  secretsJson: Record<string, string>;
}

export interface SecretsActionInputs extends SecretSourceInputs {
  export: SecretsExport;
}

export function parseSecretSourceInputs(inputs: Inputs): SecretSourceInputs {
  return {
    specs: parseSecretSpecs(inputs.multiline('secrets'), {
      input: 'secrets',
      notSecret: inputs.list('not-secret'),
    }),
    secretsJson: parseSecretsJson(inputs.multiline('secrets-json')),
  };
}

export function parseSecretsActionInputs(inputs: Inputs): SecretsActionInputs {
  const src = parseSecretSourceInputs(inputs);
  if (src.specs.length === 0) inputs.string('secrets', { required: true });
  return { ...src, export: inputs.enumeration('export', EXPORT_MODES, 'env') };
}
