/**
 * Runs the Cordon steps of a workflow (or of a README snippet with a bare `steps:` list)
 * the way the runner would: every `uses: .../actions/<name>` whose actions/<name>/action.yml
 * is in this repository, in order, with the inputs' defaults filled in and `${{ }}`
 * expressions evaluated against the contexts given; a composite action's own steps in its
 * place; then the post steps in reverse. Any other `uses:` (checkout, setup-node, a real
 * agent's action) and `run:` steps are skipped and listed.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parse } from 'yaml';
import { REPO_ROOT, type Job, type StepResult } from '../../src/devkit/run-action.js';

export interface RawStep {
  id?: string;
  name?: string;
  uses?: string;
  run?: string;
  if?: string | boolean;
  with?: Record<string, unknown>;
}

interface ActionMeta {
  inputs?: Record<string, { default?: unknown }>;
  outputs?: Record<string, { value?: unknown }>;
  runs: { using: string; main?: string; post?: string; steps?: RawStep[] };
}

export type Contexts = Record<string, unknown>;

/** The YAML blocks of a README section (between its heading and the next `## `). */
export function yamlBlocks(markdown: string, heading: string): string[] {
  const start = markdown.indexOf(`\n## ${heading}\n`);
  if (start < 0) throw new Error(`no "## ${heading}" section`);
  const end = markdown.indexOf('\n## ', start + 1);
  const section = markdown.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]);
}

/** Every step of a workflow's jobs in order, or of a snippet's top-level `steps:`. */
export function stepsOf(text: string): RawStep[] {
  const doc = parse(text) as { steps?: RawStep[]; jobs?: Record<string, { steps?: RawStep[] }> };
  if (doc.steps) return doc.steps;
  return Object.values(doc.jobs ?? {}).flatMap((j) => j.steps ?? []);
}

/** `owner/repo/actions/run@v1` or `./actions/run` -> `run`, when this repository has that action. */
export function cordonAction(uses: string): string | undefined {
  if (/^actions\//.test(uses)) return undefined; // GitHub's own actions/checkout, actions/setup-node
  const name = /(?:^|\/)actions\/([a-z0-9-]+)(?:@\S*)?$/.exec(uses)?.[1];
  return name && existsSync(join(REPO_ROOT, 'actions', name, 'action.yml')) ? name : undefined;
}

// --- expressions: the small part of GitHub's language the workflows use -----------------

type Value = unknown;

function tokenize(src: string): string[] {
  const tokens: string[] = [];
  const re = /\s*('(?:[^']|'')*'|==|!=|&&|\|\||[!().,[\]]|[A-Za-z_][\w-]*|\d+(?:\.\d+)?)/y;
  for (let i = 0; i < 1000; i++) {
    if (re.lastIndex >= src.length || !src.slice(re.lastIndex).trim()) return tokens;
    const m = re.exec(src);
    if (!m) throw new Error(`cannot read expression "${src}" at ${re.lastIndex}`);
    tokens.push(m[1]);
  }
  throw new Error(`expression "${src}" is too long`);
}

const truthy = (v: Value): boolean => v !== '' && v !== 0 && v !== false && v !== null && v !== undefined;
const text = (v: Value): string =>
  v === undefined || v === null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);

const FUNCTIONS: Record<string, (...a: Value[]) => Value> = {
  tojson: (v) => JSON.stringify(v, null, 2),
  startswith: (a, b) => text(a).toLowerCase().startsWith(text(b).toLowerCase()),
  contains: (a, b) => text(a).toLowerCase().includes(text(b).toLowerCase()),
  success: () => true,
  always: () => true,
};

export function evaluate(src: string, ctx: Contexts): Value {
  const t = tokenize(src);
  let at = 0;
  const eat = (tok?: string): string => {
    const got = t[at++];
    if (tok !== undefined && got !== tok) throw new Error(`expected "${tok}" in "${src}", got "${got}"`);
    return got;
  };
  const primary = (): Value => {
    const tok = eat();
    if (tok === '(') {
      const v = or();
      eat(')');
      return v;
    }
    if (tok === '!') return !truthy(primary());
    if (tok.startsWith("'")) return tok.slice(1, -1).replace(/''/g, "'");
    if (/^\d/.test(tok)) return Number(tok);
    if (tok === 'true' || tok === 'false') return tok === 'true';
    if (tok === 'null') return null;
    if (t[at] === '(') {
      const fn = FUNCTIONS[tok.toLowerCase()];
      if (!fn) throw new Error(`function ${tok} is not supported (in "${src}")`);
      eat('(');
      const args: Value[] = [];
      while (t[at] !== ')') {
        args.push(or());
        if (t[at] === ',') eat(',');
      }
      eat(')');
      return fn(...args);
    }
    if (!(tok in ctx)) throw new Error(`context ${tok} is not given (in "${src}")`);
    let v: Value = ctx[tok];
    while (t[at] === '.' || t[at] === '[') {
      const sep = eat();
      const key = sep === '.' ? eat() : String(or());
      if (sep === '[') eat(']');
      v = v && typeof v === 'object' ? (v as Record<string, Value>)[key] : undefined;
    }
    return v;
  };
  const compare = (): Value => {
    const left = primary();
    if (t[at] !== '==' && t[at] !== '!=') return left;
    const op = eat();
    const same = text(left).toLowerCase() === text(primary()).toLowerCase();
    return op === '==' ? same : !same;
  };
  const and = (): Value => {
    let v = compare();
    while (t[at] === '&&') {
      eat();
      const r = compare();
      v = truthy(v) ? r : v;
    }
    return v;
  };
  const or = (): Value => {
    let v = and();
    while (t[at] === '||') {
      eat();
      const r = and();
      v = truthy(v) ? v : r;
    }
    return v;
  };
  const v = or();
  if (at !== t.length) throw new Error(`unexpected "${t[at]}" in "${src}"`);
  return v;
}

/** A `with:` value or default with its `${{ }}` parts replaced. */
export function interpolate(value: unknown, ctx: Contexts): string {
  return text(value).replace(/\$\{\{([\s\S]*?)\}\}/g, (_m, e: string) => text(evaluate(e, ctx)));
}

function stepIf(cond: RawStep['if'], ctx: Contexts): boolean {
  if (cond === undefined) return true;
  const src = String(cond).trim();
  const m = /^\$\{\{([\s\S]*)\}\}$/.exec(src);
  return truthy(evaluate(m ? m[1] : src, ctx));
}

// --- running ------------------------------------------------------------------------------

export interface Ran {
  action: string;
  entry: 'main' | 'post';
  inputs: Record<string, string>;
  result: StepResult;
}

export interface WorkflowRun {
  ran: Ran[];
  /** Steps not run, each as `uses: x` or `run: ...` (first line), in order. */
  skipped: string[];
  /** The first step that failed, when one did (later main steps were not run; posts were). */
  failed?: Ran;
}

export interface RunOptions {
  job: Job;
  /** The contexts expressions see besides inputs and steps: github, vars, secrets, env. */
  contexts: Contexts;
  /** Puts a command in front of node (a namespace, a user). */
  wrap?: string[];
  /** Changes a step's evaluated inputs before it runs (the agent's command). */
  adjust?: (action: string, inputs: Record<string, string>) => Record<string, string>;
  timeoutMs?: number;
}

function meta(action: string): ActionMeta {
  return parse(readFileSync(join(REPO_ROOT, 'actions', action, 'action.yml'), 'utf8')) as ActionMeta;
}

/** The bundled program an action.yml's `main`/`post` names, relative to the repository. */
function program(action: string, file: string): string {
  return relative(REPO_ROOT, resolve(REPO_ROOT, 'actions', action, file));
}

export async function runWorkflowSteps(steps: RawStep[], opts: RunOptions): Promise<WorkflowRun> {
  const out: WorkflowRun = { ran: [], skipped: [] };
  const posts: {
    action: string;
    file: string;
    inputs: Record<string, string>;
    state: Record<string, string>;
  }[] = [];
  const outputs: Record<string, { outputs: Record<string, string> }> = {};

  const runOne = async (
    action: string,
    file: string,
    entry: 'main' | 'post',
    inputs: Record<string, string>,
    state?: Record<string, string>,
  ) => {
    const result = await opts.job.run(action, entry, {
      inputs,
      state,
      wrap: opts.wrap,
      script: join(REPO_ROOT, file),
      timeoutMs: opts.timeoutMs ?? 120000,
    });
    const ran: Ran = { action, entry, inputs, result };
    out.ran.push(ran);
    if (result.code !== 0 && !out.failed) out.failed = ran;
    return result;
  };

  // Runs a list of steps with `inputs` as the inputs context (a composite's), ids in `scope`.
  const walk = async (
    list: RawStep[],
    inputsCtx: Record<string, string>,
    scope: Record<string, { outputs: Record<string, string> }>,
  ) => {
    for (const step of list) {
      if (out.failed) return;
      const action = step.uses ? cordonAction(step.uses) : undefined;
      if (!action) {
        out.skipped.push(step.uses ? `uses: ${step.uses}` : `run: ${String(step.run ?? '').split('\n')[0]}`);
        continue;
      }
      const ctx = { ...opts.contexts, inputs: inputsCtx, steps: scope };
      if (!stepIf(step.if, ctx)) {
        out.skipped.push(`uses: ${step.uses} (if: ${String(step.if)})`);
        continue;
      }
      const m = meta(action);
      const inputs: Record<string, string> = {};
      for (const [k, v] of Object.entries(m.inputs ?? {}))
        if (v.default !== undefined) inputs[k] = interpolate(v.default, ctx);
      for (const [k, v] of Object.entries(step.with ?? {})) inputs[k] = interpolate(v, ctx);
      if (m.runs.using === 'composite') {
        const inner: Record<string, { outputs: Record<string, string> }> = {};
        await walk(m.runs.steps ?? [], inputs, inner);
        const innerCtx = { ...ctx, inputs, steps: inner };
        const composite = Object.entries(m.outputs ?? {}).map(([k, o]) => [
          k,
          interpolate(o.value, innerCtx),
        ]);
        if (step.id) scope[step.id] = { outputs: Object.fromEntries(composite) };
        continue;
      }
      const given = opts.adjust ? opts.adjust(action, inputs) : inputs;
      const r = await runOne(action, program(action, m.runs.main!), 'main', given);
      if (step.id) scope[step.id] = { outputs: r.outputs };
      if (m.runs.post)
        posts.push({ action, file: program(action, m.runs.post), inputs: given, state: r.state });
    }
  };
  await walk(steps, {}, outputs);
  // Post steps run whatever happened (`post-if: always()` on every Cordon action).
  for (const p of posts.reverse()) await runOne(p.action, p.file, 'post', p.inputs, p.state);
  return out;
}
