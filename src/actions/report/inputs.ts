import { Inputs } from '../../platform/inputs.js';
import type { Env } from '../../platform/runner.js';
import type { VerdictInputs } from '../attribution.js';

export interface ReportInputs extends VerdictInputs {
  /** start's public seal key (its `seal-key` output), to check run's window seals. */
  sealKey: string | undefined;
}

// An Ed25519 public key as start writes it: SPKI DER, base64 (44 bytes -> 60 characters).
const SEAL_KEY = /^[A-Za-z0-9+/]{40,120}={0,2}$/;

export function parseReportInputs(env: Env): ReportInputs {
  const i = new Inputs('report', env);
  return {
    failOnTamper: i.boolean('fail-on-tamper', true),
    failOnImpersonation: i.boolean('fail-on-impersonation', false),
    summary: i.boolean('job-summary', true),
    sealKey: sealKey(i),
  };
}

function sealKey(i: Inputs): string | undefined {
  const value = i.string('seal-key').trim();
  if (!value) return undefined;
  if (!SEAL_KEY.test(value))
    i.fail(
      'seal-key',
      value,
      'expected the public key start wrote (base64)',
      "pass start's output: `seal-key: ${{ steps.<start id>.outputs.seal-key }}`",
    );
  return value;
}
