/**
 * The parts of a workflow (or a composite action) `cordon check` and `cordon plan` read:
 * its jobs, their permissions and steps, and which steps are Cordon's own. Only Cordon's
 * repository and local `./actions/<name>` paths count as Cordon: a third party's
 * `foo/actions/run` is someone else's action.
 */
import { field, parseYaml, text, type Pos, type View } from './yaml-view.js';

/** Cordon's repository under the names it is published as (README and docs use both). */
export const CORDON_REPOS = ['cordon-dev/cordon', 'octo-org/cordon'];
export const CORDON_ACTIONS = [
  'start',
  'aws',
  'egress',
  'secrets',
  'run',
  'github-token',
  'agent',
  'report',
  'publish',
];
/** `jobs.<id>.uses` of the reusable workflow; the name `cordon check` gives it. */
export const REUSABLE = 'agent-workflow';

export interface InputValue extends Pos {
  value: string;
  dynamic: boolean;
  /** A list or a map where GitHub takes only a string. */
  notString?: boolean;
  /** Source position of the value's line k (1-based). */
  lineOf: (k: number) => Pos;
}

export interface CordonStep extends Pos {
  action: string;
  uses: string;
  with: Map<string, InputValue>;
  withLine: number;
  /** `secrets:` of a reusable-workflow call: names given, or `inherit`. */
  secrets?: Map<string, InputValue> | 'inherit';
}

export interface StepInfo extends Pos {
  uses?: string;
  run?: InputValue;
  cordon?: CordonStep;
  /** A `uses:` under Cordon's repository naming no Cordon action. */
  unknownCordon?: string;
}

export interface JobInfo extends Pos {
  id: string;
  /** `permissions:` of the job, else of the workflow; undefined when neither sets it. */
  permissions?: View;
  steps: StepInfo[];
}

export interface WorkflowInfo {
  jobs: JobInfo[];
  /** Every Cordon step, in jobs and in a composite action's `runs.steps`, in file order. */
  steps: CordonStep[];
  errors: { line: number; column: number; message: string }[];
  /** A composite action's `runs.steps`; no jobs, no permissions. */
  composite?: StepInfo[];
}

const NAME = '([a-z][a-z-]*)';
const REPO = `(?:${CORDON_REPOS.map((r) => r.replace(/[.]/g, '\\.')).join('|')})`;

/** `cordon-dev/cordon/actions/egress@v1`, `./actions/egress` -> `egress`; anything else undefined. */
export function cordonActionName(uses: string): string | undefined {
  const m =
    new RegExp(`^${REPO}/actions/${NAME}@\\S+$`, 'i').exec(uses.trim()) ??
    new RegExp(`^\\./actions/${NAME}/?$`).exec(uses.trim());
  return m && CORDON_ACTIONS.includes(m[1]) ? m[1] : undefined;
}

/** A `uses:` under Cordon's repository that names no Cordon action (a typo such as `egres`). */
function unknownCordonAction(uses: string): string | undefined {
  const m = new RegExp(`^${REPO}/actions/([^@/]+)@`, 'i').exec(uses.trim());
  return m && !CORDON_ACTIONS.includes(m[1]) ? m[1] : undefined;
}

export function isReusableAgent(uses: string): boolean {
  return new RegExp(`^(?:${REPO}/|\\./)\\.github/workflows/agent\\.ya?ml(?:@\\S+)?$`, 'i').test(uses.trim());
}

function inputValue(v: View, key: Pos): InputValue {
  const value = v.kind === 'scalar' ? v.text : '';
  return {
    ...key,
    value,
    dynamic: value.includes('${{'),
    ...(v.kind !== 'scalar' ? { notString: true } : {}),
    lineOf: v.kind === 'scalar' ? v.lineOf : () => key,
  };
}

function withMap(v: View | undefined): Map<string, InputValue> {
  const out = new Map<string, InputValue>();
  if (v?.kind === 'map') for (const [k, e] of v.entries) out.set(k, inputValue(e.value, e.key));
  return out;
}

function step(v: View): StepInfo {
  const info: StepInfo = { line: v.line, column: v.column };
  const uses = field(v, 'uses');
  const run = v.kind === 'map' ? v.entries.get('run') : undefined;
  if (run) info.run = inputValue(run.value, run.value);
  const u = text(uses);
  if (u === undefined || !uses) return info;
  info.uses = u;
  const action = cordonActionName(u);
  if (action) {
    const w = field(v, 'with');
    info.cordon = {
      action,
      uses: u,
      line: uses.line,
      column: uses.column,
      with: withMap(w),
      withLine: w?.line ?? 0,
    };
  } else info.unknownCordon = unknownCordonAction(u);
  return info;
}

export function readWorkflow(source: string): WorkflowInfo {
  const { root, errors } = parseYaml(source);
  const info: WorkflowInfo = { jobs: [], steps: [], errors };
  const runs = field(root, 'runs');
  const composite = field(runs, 'steps');
  if (composite?.kind === 'seq') {
    info.composite = composite.items.map(step);
    for (const s of info.composite) if (s.cordon) info.steps.push(s.cordon);
  }
  const jobs = field(root, 'jobs');
  if (jobs?.kind !== 'map') return info;
  const workflowPermissions = field(root, 'permissions');
  for (const [id, entry] of jobs.entries) {
    const j = entry.value;
    const job: JobInfo = {
      id,
      ...entry.key,
      permissions: field(j, 'permissions') ?? workflowPermissions,
      steps: [],
    };
    const uses = field(j, 'uses');
    const u = text(uses);
    if (u !== undefined && uses && isReusableAgent(u)) {
      const w = field(j, 'with');
      const secrets = field(j, 'secrets');
      const call: CordonStep = {
        action: REUSABLE,
        uses: u,
        line: uses.line,
        column: uses.column,
        with: withMap(w),
        withLine: w?.line ?? 0,
        secrets: text(secrets) === 'inherit' ? 'inherit' : withMap(secrets),
      };
      job.steps.push({ line: uses.line, column: uses.column, uses: u, cordon: call });
      info.steps.push(call);
    }
    const steps = field(j, 'steps');
    if (steps?.kind === 'seq') for (const s of steps.items.map(step)) job.steps.push(s);
    for (const s of job.steps) if (s.cordon && s.cordon.action !== REUSABLE) info.steps.push(s.cordon);
    info.jobs.push(job);
  }
  return info;
}

/** The Cordon steps of a workflow, for `cordon plan`. */
export function findCordonSteps(source: string): { steps: CordonStep[]; errors: string[] } {
  const w = readWorkflow(source);
  return { steps: w.steps, errors: w.errors.map((e) => `line ${e.line}: ${e.message}`) };
}
