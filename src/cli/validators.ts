/** Each Cordon action's own input parser, run offline by `cordon check` and `cordon plan`. */
import { Inputs } from '../platform/inputs.js';
import type { Env } from '../platform/runner.js';
import { parseAwsActionInputs } from '../aws/inputs.js';
import { parseEgressInputs } from '../actions/egress/inputs.js';
import { parseGithubTokenInputs } from '../github/inputs.js';
import { parseRunInputs } from '../actions/run/inputs.js';
import { parseSecretsActionInputs } from '../secrets/inputs.js';
import { parseStartInputs } from '../actions/start/inputs.js';
import { parseReportInputs } from '../actions/report/inputs.js';
import { parsePublishInputs } from '../actions/publish/inputs.js';

export const validators: Record<string, (env: Env) => unknown> = {
  start: (env) => parseStartInputs(env),
  aws: (env) => parseAwsActionInputs(new Inputs('aws', env)),
  'github-token': (env) => parseGithubTokenInputs(env),
  egress: (env) => parseEgressInputs(env),
  run: (env) => parseRunInputs(env),
  secrets: (env) => parseSecretsActionInputs(new Inputs('secrets', env)),
  report: (env) => parseReportInputs(env),
  publish: (env) => parsePublishInputs(env),
};
