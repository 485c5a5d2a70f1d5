/**
 * `cordon check <workflow.yml>`: validates every Cordon step's inputs offline with the same
 * parsers the actions run, and reports each problem with file:line. Inputs whose value is
 * an expression (`${{ ... }}`) are only known at run time and are not judged. It reads
 * regular files only, at most 1 MiB each (a FIFO or a link to /dev/zero is refused).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node, type YAMLMap } from 'yaml';
import { isCordonError } from '../platform/errors.js';
import { inputVariable } from '../platform/inputs.js';
import { readArgument } from './read.js';
import type { Env } from '../platform/runner.js';
import { REPO_ROOT } from '../devkit/run-action.js';
import { validators } from './validators.js';

export interface Problem {
  file: string;
  line: number;
  action: string;
  input?: string;
  message: string;
}

export interface CordonStep {
  action: string;
  uses: string;
  line: number;
  with: Map<string, { value: string; line: number; dynamic: boolean }>;
  withLine: number;
}

/** `owner/repo/actions/egress@v1`, `./actions/egress` -> `egress`. */
export const CORDON_ACTIONS = ['start', 'aws', 'egress', 'secrets', 'run', 'github-token', 'report', 'agent'];

export function cordonActionName(uses: string): string | undefined {
  const m = /(?:^|\/)actions\/([a-z-]+)(?:@[^\s]*)?$/.exec(uses.trim());
  if (!m || !CORDON_ACTIONS.includes(m[1])) return undefined;
  if (uses.startsWith('actions/')) return undefined; // GitHub's own actions/checkout etc.
  return m[1];
}

function lineOf(node: Node | null | undefined, lc: LineCounter): number {
  const at = node?.range?.[0];
  return at === undefined ? 0 : lc.linePos(at).line;
}

/** Finds every step that uses a Cordon action, in jobs and in composite actions. */
export function findCordonSteps(text: string): { steps: CordonStep[]; errors: string[] } {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, keepSourceTokens: false });
  const errors = doc.errors.map((e) => `line ${e.linePos?.[0]?.line ?? 0}: ${e.message.split('\n')[0]}`);
  const steps: CordonStep[] = [];
  const stepLists: Node[] = [];
  const root = doc.contents;
  if (isMap(root)) {
    const jobs = root.get('jobs', true);
    if (isMap(jobs))
      for (const j of jobs.items) if (isMap(j.value)) stepLists.push(j.value.get('steps', true) as Node);
    const runs = root.get('runs', true);
    if (isMap(runs)) stepLists.push(runs.get('steps', true) as Node);
  }
  for (const list of stepLists) {
    if (!isSeq(list)) continue;
    for (const s of list.items) {
      if (!isMap(s)) continue;
      const uses = s.get('uses', true);
      if (!isScalar(uses) || typeof uses.value !== 'string') continue;
      const action = cordonActionName(uses.value);
      if (!action) continue;
      const withNode = s.get('with', true) as YAMLMap | undefined;
      const withMap: CordonStep['with'] = new Map();
      if (isMap(withNode)) {
        for (const pair of withNode.items) {
          const key = isScalar(pair.key) ? String(pair.key.value) : '';
          const raw = isScalar(pair.value) ? pair.value.value : pair.value;
          const value = raw === null || raw === undefined ? '' : typeof raw === 'string' ? raw : String(raw);
          withMap.set(key, { value, line: lineOf(pair.key as Node, lc), dynamic: value.includes('${{') });
        }
      }
      steps.push({
        action,
        uses: uses.value,
        line: lineOf(uses, lc),
        with: withMap,
        withLine: lineOf(withNode, lc),
      });
    }
  }
  return { steps, errors };
}

function declaredInputs(action: string): Set<string> | undefined {
  try {
    const meta = parseDocument(
      readFileSync(join(REPO_ROOT, 'actions', action, 'action.yml'), 'utf8'),
    ).toJS() as {
      inputs?: Record<string, unknown>;
    };
    return new Set(Object.keys(meta.inputs ?? {}));
  } catch {
    return undefined;
  }
}

const RUNNER_ENV: Env = {
  GITHUB_REPOSITORY: 'owner/repo',
  GITHUB_REPOSITORY_OWNER: 'owner',
  GITHUB_RUN_ID: '1',
  GITHUB_RUN_ATTEMPT: '1',
  GITHUB_JOB: 'job',
  RUNNER_TEMP: '/tmp',
};

/** Every problem in one step: unknown inputs, then each parser error, re-running past each. */
export function checkStep(step: CordonStep, file: string): Problem[] {
  const problems: Problem[] = [];
  const declared = declaredInputs(step.action);
  for (const [name, v] of step.with) {
    if (declared && !declared.has(name)) {
      problems.push({
        file,
        line: v.line,
        action: step.action,
        input: name,
        message: `${step.action}: unknown input "${name}" (known: ${[...declared].join(', ')})`,
      });
    }
  }
  const env: Env = { ...RUNNER_ENV };
  const dynamic = new Set<string>();
  for (const [name, v] of step.with) {
    // An expression stands for a value only known at run time: give the parser a placeholder
    // it can accept, and ignore anything it then says about that input.
    if (v.dynamic) dynamic.add(name);
    env[inputVariable(name)] = v.dynamic ? placeholderFor(name) : v.value;
  }
  const validate = validators[step.action];
  if (!validate) return problems;
  const tries = new Map<string, number>();
  for (let round = 0; round < 40; round++) {
    try {
      validate(env);
      break;
    } catch (e) {
      const input = isCordonError(e) ? e.input : undefined;
      const message = isCordonError(e) ? e.message : `unexpected error: ${(e as Error).message}`;
      const n = (tries.get(input ?? '') ?? 0) + 1;
      tries.set(input ?? '', n);
      if (n === 1 && (!input || !dynamic.has(input))) {
        const line = (input && step.with.get(input)?.line) || step.withLine || step.line;
        problems.push({ file, line, action: step.action, input, message });
      }
      if (!input || n > 2) break;
      // Past each faulty input to the ones after it: first a placeholder (the input may be
      // required), then nothing (the placeholder may not fit it).
      if (n === 1) env[inputVariable(input)] = placeholderFor(input);
      else delete env[inputVariable(input)];
    }
  }
  return problems;
}

/** A value a parser accepts for an input whose real value is an expression. */
export function placeholderFor(name: string): string {
  if (/private-key/.test(name)) return '-----BEGIN PRIVATE KEY-----\nplaceholder\n-----END PRIVATE KEY-----';
  if (/role-to-assume/.test(name)) return 'arn:aws:iam::123456789012:role/placeholder';
  if (/region/.test(name)) return 'us-east-1';
  if (/app-id/.test(name)) return '1';
  if (/secrets-json/.test(name)) return '{}';
  if (/^run$/.test(name)) return 'true';
  return 'placeholder-value';
}

export function checkWorkflowText(text: string, file: string): { problems: Problem[]; steps: number } {
  const { steps, errors } = findCordonSteps(text);
  const problems: Problem[] = errors.map((m) => ({
    file,
    line: Number(/line (\d+)/.exec(m)?.[1] ?? 0),
    action: 'yaml',
    message: m,
  }));
  for (const s of steps) problems.push(...checkStep(s, file));
  return { problems, steps: steps.length };
}

export function runCheck(files: string[], out: (s: string) => void, err: (s: string) => void): number {
  if (files.length === 0) {
    err('cordon check: give one or more workflow files\n');
    return 2;
  }
  let total = 0;
  for (const file of files) {
    const text = readArgument(file, 'cordon check', 'workflow', err);
    if (text === undefined) return 2;
    const { problems, steps } = checkWorkflowText(text, file);
    for (const p of problems) out(`${p.file}:${p.line}: ${p.message}\n`);
    out(`${file}: ${steps} Cordon step(s), ${problems.length} problem(s)\n`);
    total += problems.length;
  }
  return total ? 1 : 0;
}
