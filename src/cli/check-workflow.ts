/**
 * The mistakes no single step shows: a job that needs an ID token without
 * `id-token: write`, `start` not the first Cordon step or `report` not the last, event
 * text pasted into a command, and an egress allowlist that blocks what Cordon's own later
 * steps must reach.
 */
import type { EgressSettings } from '../actions/egress/inputs.js';
import type { DomainPattern } from '../fence/policy.js';
import { inputVariable } from '../platform/inputs.js';
import type { Env } from '../platform/runner.js';
import { agentParts, type Found } from './check-step.js';
import { eventRefs } from './event-refs.js';
import { validators } from './validators.js';
import { REUSABLE, type CordonStep, type InputValue, type JobInfo } from './workflow.js';
import { text, type View } from './yaml-view.js';

/** actions/agent and the reusable workflow: start, egress and run in one. */
const agentLike = (s: CordonStep): boolean => s.action === 'agent' || s.action === REUSABLE;

const label = (s: CordonStep): string => (s.action === REUSABLE ? 'the reusable workflow' : s.action);

const given = (s: CordonStep, name: string): string | undefined => {
  const v = s.with.get(name)?.value.trim();
  return v ? v : undefined;
};

/** Why a Cordon step asks the runner for an ID token, or undefined when it does not. */
function idTokenNeed(s: CordonStep): string | undefined {
  if (s.action === 'aws') return 'actions/aws exchanges the ID token for AWS credentials';
  if (s.action === REUSABLE)
    return 'the reusable workflow asks for id-token: write, and a called workflow gets no more than its caller grants';
  if ((s.action === 'run' || s.action === 'agent') && given(s, 'aws-role-to-assume'))
    return `aws-role-to-assume makes ${label(s)} exchange the ID token for AWS credentials`;
  return undefined;
}

function grantsIdToken(p: View | undefined): boolean {
  if (p?.kind === 'scalar') return p.text === 'write-all';
  return p?.kind === 'map' && text(p.entries.get('id-token')?.value) === 'write';
}

function idToken(job: JobInfo): Found[] {
  for (const s of job.steps) {
    const why = s.cordon && idTokenNeed(s.cordon);
    if (!why || grantsIdToken(job.permissions)) continue;
    return [
      {
        line: s.line,
        column: s.column,
        severity: 'error',
        code: 'id-token',
        message: `job "${job.id}" has no \`permissions: id-token: write\`, and ${why}`,
        suggestion: `add \`id-token: write\` under \`permissions:\` of job "${job.id}" (a job's permissions replace the workflow's)`,
      },
    ];
  }
  return [];
}

/** A job by its id; a composite action's steps come as a job without one. */
const where = (job: JobInfo): string => (job.id ? `job "${job.id}"` : 'the composite action');

export function order(job: JobInfo): Found[] {
  const cordon = job.steps.flatMap((s) => (s.cordon && s.cordon.action !== REUSABLE ? [s.cordon] : []));
  const found: Found[] = [];
  // actions/agent starts the fence itself, so it counts as a start.
  const first = cordon.findIndex((s) => s.action === 'start' || s.action === 'agent');
  if (first > 0)
    found.push({
      line: cordon[first].line,
      column: cordon[first].column,
      severity: 'error',
      code: 'step-order',
      message: `${cordon[first].action} must be the first Cordon step of ${where(job)}, but ${cordon[0].action} (line ${cordon[0].line}) runs before it`,
      suggestion: `move ${cordon[first].action} above every other Cordon step: what runs before it is not in the record`,
    });
  const report = cordon.findIndex((s) => s.action === 'report');
  if (report >= 0 && report < cordon.length - 1)
    found.push({
      line: cordon[report].line,
      column: cordon[report].column,
      severity: 'error',
      code: 'step-order',
      message: `report must be the last Cordon step of ${where(job)}, but ${cordon[report + 1].action} (line ${cordon[report + 1].line}) runs after it`,
      suggestion: 'move report below every other Cordon step, so the summary covers all of them',
    });
  // publish pushes what run recorded: before it (or with no run at all) there is no record.
  const lastRun = cordon.reduce((at, s, k) => (s.action === 'run' || s.action === 'agent' ? k : at), -1);
  cordon.forEach((s, k) => {
    if (s.action !== 'publish' || (lastRun >= 0 && k > lastRun)) return;
    found.push({
      line: s.line,
      column: s.column,
      severity: 'error',
      code: 'step-order',
      message:
        lastRun < 0
          ? `publish needs run (or agent) before it in ${where(job)}: it pushes only commits run recorded as made by the agent`
          : `publish must come after run (or agent) in ${where(job)}, but ${cordon[lastRun].action} (line ${cordon[lastRun].line}) runs after it`,
      suggestion: 'place publish after the step that runs the agent (and before report)',
    });
  });
  // Without it, publish (as report) cannot tell a killed run's forged closing lines from run's own.
  for (const s of cordon)
    if (s.action === 'publish' && lastRun >= 0 && !s.with.has('seal-key'))
      found.push({
        line: s.line,
        column: s.column,
        severity: 'warning',
        code: 'publish-seal-key',
        message: "publish is not given start's seal-key, so it cannot check that each run sealed its window",
        suggestion:
          "give start an id and add `seal-key: ${{ steps.<id>.outputs.seal-key }}` under publish's `with:`",
      });
  // Without start's public seal key, report cannot tell a killed run's forged closing lines
  // from run's own (start's post can, after the upload).
  if (report >= 0 && cordon.some((s) => s.action === 'run') && !cordon[report].with.has('seal-key'))
    found.push({
      line: cordon[report].line,
      column: cordon[report].column,
      severity: 'warning',
      code: 'report-seal-key',
      message: "report is not given start's seal-key, so it cannot check that each run sealed its window",
      suggestion:
        "give start an id and add `seal-key: ${{ steps.<id>.outputs.seal-key }}` under report's `with:`",
    });
  return found;
}

/** Each `${{ }}` that pastes event text into a command, at the line of its `${{`. */
export function eventText(v: InputValue, where: string): Found[] {
  return eventRefs(v.value).map((ref) => {
    const before = v.value.slice(0, ref.index);
    const k = before.split('\n').length;
    const pos = v.lineOf(k);
    const attacker = ref.taint === 'attacker';
    return {
      line: pos.line,
      column: pos.column + ref.index - (before.lastIndexOf('\n') + 1),
      severity: attacker ? 'error' : 'warning',
      code: 'event-injection',
      message: `${where} pastes \`${ref.name}\` into the command: ${attacker ? 'whoever opens the issue, comment, pull request or branch writes that text, and the shell runs it' : 'event data is spliced into the script before the shell parses it'}`,
      suggestion: `pass it through \`env:\` (e.g. \`EVENT_TEXT: \${{ ${ref.name} }}\`) and use "$EVENT_TEXT" in the command`,
    };
  });
}

export function injection(job: JobInfo): Found[] {
  const found: Found[] = [];
  for (const s of job.steps) {
    if (s.run) found.push(...eventText(s.run, 'a `run:` step'));
    const c = s.cordon;
    const command = c && ['run', 'agent', REUSABLE].includes(c.action) && c.with.get('run');
    if (command) found.push(...eventText(command, `the \`run\` input of ${label(c)}`));
  }
  return found;
}

interface Fence {
  settings: EgressSettings;
  /** How a message names it: `egress (line 12)`. */
  name: string;
}

function fenceOf(s: CordonStep): Fence | undefined {
  if (s.action !== 'egress' && !agentLike(s)) return undefined;
  const part = agentLike(s) ? agentParts(s.with).find((p) => p.action === 'egress')?.with : s.with;
  if (!part || [...part.values()].some((v) => v.dynamic)) return undefined;
  const env: Env = {};
  for (const [k, v] of part) env[inputVariable(k)] = v.value;
  try {
    const settings = validators.egress(env) as EgressSettings;
    return settings.policy === 'block'
      ? {
          settings,
          name:
            s.action === 'egress' ? `egress (line ${s.line})` : `the egress of ${label(s)} (line ${s.line})`,
        }
      : undefined;
  } catch {
    return undefined; // reported by the step's own check
  }
}

const covers = (p: DomainPattern, name: string): boolean =>
  p.wildcard ? name.endsWith(`.${p.name}`) : name === p.name;

/** The names a Cordon step reaches from the runner's side, each with why. */
function endpoints(s: CordonStep, awsRegion: string | undefined): { name: string; why: string }[] {
  const out: { name: string; why: string }[] = [];
  const region = (r: string | undefined): r is string => !!r && !r.includes('${{');
  if (s.action === 'aws' && region(given(s, 'aws-region')))
    out.push({
      name: `sts.${given(s, 'aws-region')}.amazonaws.com`,
      why: 'aws exchanges the ID token at STS',
    });
  const role = (s.action === 'run' || agentLike(s)) && given(s, 'aws-role-to-assume');
  const ownRegion = role ? given(s, 'aws-region') : awsRegion;
  if (role && region(ownRegion))
    out.push({ name: `sts.${ownRegion}.amazonaws.com`, why: `${label(s)} mints AWS credentials at STS` });
  const specs =
    s.action === 'run' || s.action === 'secrets' || agentLike(s) ? (given(s, 'secrets') ?? '') : '';
  if (region(ownRegion)) {
    if (/=\s*aws-sm:/.test(specs))
      out.push({
        name: `secretsmanager.${ownRegion}.amazonaws.com`,
        why: `${label(s)} reads aws-sm: secrets`,
      });
    if (/=\s*ssm:/.test(specs))
      out.push({ name: `ssm.${ownRegion}.amazonaws.com`, why: `${label(s)} reads ssm: parameters` });
  }
  if (s.action === 'github-token' || ((s.action === 'run' || agentLike(s)) && given(s, 'github-app-id')))
    out.push({ name: 'api.github.com', why: `${label(s)} mints a GitHub App token` });
  if (s.action === 'publish')
    out.push(
      { name: 'api.github.com', why: 'publish mints its GitHub App token' },
      { name: 'github.com', why: 'publish pushes the commits there' },
    );
  return out;
}

function allowlist(job: JobInfo): Found[] {
  const found: Found[] = [];
  let fence: Fence | undefined;
  let awsRegion: string | undefined;
  for (const st of job.steps) {
    const s = st.cordon;
    if (!s) continue;
    const own = fenceOf(s);
    // actions/agent's own run comes after its own egress; steps after any fence are behind it.
    const active = own ?? fence;
    if (active && s.action !== 'egress')
      for (const need of endpoints(s, awsRegion)) {
        const { domains, presetDomains, own } = active.settings;
        if ([...domains, ...presetDomains].some((p) => covers(p, need.name))) continue;
        // Cordon's own endpoints (egress's aws-regions) are open to its steps, not to the agent.
        if (own.some((o) => o.entry === need.name)) continue;
        const region = /^(?:sts|secretsmanager|ssm)\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$/.exec(
          need.name,
        )?.[1];
        found.push({
          line: s.line,
          column: s.column,
          severity: 'error',
          code: 'egress-endpoint',
          message: `${active.name} blocks ${need.name}, needed here: ${need.why}`,
          suggestion: region
            ? `add ${region} to aws-regions of ${active.name} (Cordon's own steps reach it there; the agent's user does not)`
            : `add ${need.name} to allowed-domains of ${active.name}`,
        });
      }
    if (s.action === 'aws') awsRegion = given(s, 'aws-region');
    if (s.action === 'egress') fence = own;
  }
  return found;
}

/** Every workflow-level problem of one job. */
export function checkJob(job: JobInfo): Found[] {
  return [...idToken(job), ...order(job), ...injection(job), ...allowlist(job)];
}
