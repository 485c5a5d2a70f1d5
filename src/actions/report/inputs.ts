import { Inputs } from '../../platform/inputs.js';
import type { Env } from '../../platform/runner.js';
import type { VerdictInputs } from '../attribution.js';

export type ReportInputs = VerdictInputs;

export function parseReportInputs(env: Env): ReportInputs {
  const i = new Inputs('report', env);
  return {
    failOnTamper: i.boolean('fail-on-tamper', true),
    failOnImpersonation: i.boolean('fail-on-impersonation', false),
    summary: i.boolean('job-summary', true),
  };
}
