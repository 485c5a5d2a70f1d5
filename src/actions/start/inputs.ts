import { Inputs } from '../../platform/inputs.js';
import type { Env } from '../../platform/runner.js';

export interface StartInputs {
  /** Audience of the ID token fetched only to record its claims. */
  audience: string;
  failOnTamper: boolean;
  failOnImpersonation: boolean;
  summary: boolean;
}

export function parseStartInputs(env: Env): StartInputs {
  const i = new Inputs('start', env);
  return {
    audience: i.string('oidc-audience', { default: 'cordon' }),
    failOnTamper: i.boolean('fail-on-tamper', true),
    failOnImpersonation: i.boolean('fail-on-impersonation', false),
    summary: i.boolean('job-summary', true),
  };
}
