/**
 * One Cordon step's `with:` checked offline with the parsers the action itself runs: every
 * unknown input (with the nearest known name), and every bad entry of a list input at its
 * own line. `actions/agent` and the reusable workflow are checked through the actions they
 * wrap, each input by the action it is passed to.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { isCordonError } from '../platform/errors.js';
import { inputVariable } from '../platform/inputs.js';
import type { Env } from '../platform/runner.js';
import { REPO_ROOT } from '../devkit/run-action.js';
import { validators } from './validators.js';
import { REUSABLE, type CordonStep, type InputValue } from './workflow.js';
import type { Pos } from './yaml-view.js';

export interface Problem extends Pos {
  file: string;
  severity: 'error' | 'warning';
  code: string;
  message: string;
  suggestion?: string;
  action?: string;
  input?: string;
}

export type Found = Omit<Problem, 'file'>;

function readYaml(path: string): Record<string, unknown> | undefined {
  try {
    return existsSync(path)
      ? (parse(readFileSync(path, 'utf8'), { maxAliasCount: 100 }) as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

const declaredCache = new Map<string, Set<string>>();

/** The inputs an action (or the reusable workflow) declares; `report` may declare none. */
export function declaredInputs(action: string): Set<string> {
  const cached = declaredCache.get(action);
  if (cached) return cached;
  let names: string[];
  if (action === REUSABLE) {
    const wf = readYaml(join(REPO_ROOT, '.github/workflows/agent.yml')) as
      { on?: { workflow_call?: { inputs?: Record<string, unknown> } } } | undefined;
    names = Object.keys(wf?.on?.workflow_call?.inputs ?? {});
  } else {
    const meta = readYaml(join(REPO_ROOT, 'actions', action, 'action.yml')) as
      { inputs?: Record<string, unknown> } | undefined;
    names = Object.keys(meta?.inputs ?? {});
  }
  const set = new Set(names);
  declaredCache.set(action, set);
  return set;
}

/** The actions `actions/agent` runs, in order; an input goes to the first that declares it. */
const AGENT_PARTS = ['start', 'github-token', 'egress', 'run'];
/** Inputs more than one wrapped action takes, with one meaning. */
const SHARED = ['fail-on-tamper'];

/** The wrapped action's share of an `agent` (or reusable workflow) `with:`. */
export function agentParts(w: Map<string, InputValue>): { action: string; with: Map<string, InputValue> }[] {
  const owner = new Map<string, string[]>();
  for (const part of AGENT_PARTS)
    for (const name of declaredInputs(part)) {
      if (part === 'run' && name === 'github-token') continue; // the agent passes its own token
      const o = owner.get(name);
      if (!o) owner.set(name, [part]);
      else if (SHARED.includes(name)) o.push(part);
    }
  const given = (n: string): boolean => (w.get(n)?.value ?? '') !== '';
  return AGENT_PARTS.filter((p) => p !== 'github-token' || given('app-id') || given('client-id')).map(
    (action) => ({
      action,
      with: new Map([...w].filter(([name]) => owner.get(name)?.includes(action))),
    }),
  );
}

/** Edit distance, for "did you mean". */
export function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++)
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

/** The known name nearest to `name`, if it is near enough to be a typo. */
export function nearest(name: string, known: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = distance(name, k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return bestD <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

const RUNNER_ENV: Env = {
  GITHUB_REPOSITORY: 'owner/repo',
  GITHUB_REPOSITORY_OWNER: 'owner',
  GITHUB_RUN_ID: '1',
  GITHUB_RUN_ATTEMPT: '1',
  GITHUB_JOB: 'job',
  RUNNER_TEMP: '/tmp',
};

/** A value a parser accepts for an input whose real value is an expression. */
export function placeholderFor(name: string): string {
  if (/private-key/.test(name)) return '-----BEGIN PRIVATE KEY-----\nplaceholder\n-----END PRIVATE KEY-----';
  if (/role-to-assume/.test(name)) return 'arn:aws:iam::123456789012:role/placeholder';
  if (/region/.test(name)) return 'us-east-1';
  if (/app-id/.test(name)) return '1';
  if (/secrets-json/.test(name)) return '{}';
  if (/^run$/.test(name)) return 'true';
  // An Ed25519 public key's shape, as start writes it (report's and publish's parsers check it).
  if (/^seal-key$/.test(name)) return `${'A'.repeat(43)}=`;
  if (/^allow-default-branch$/.test(name)) return 'false';
  return 'placeholder-value';
}

/** Inputs whose lines only mean something together (JSON, a PEM, a script): never checked line by line. */
const WHOLE = /policy$|json|private-key|^run$/;
/** At most this many lines of one input are checked one by one. */
const MAX_ENTRY_LINES = 500;

function split(e: unknown): { message: string; suggestion?: string; input?: string } {
  if (!isCordonError(e)) return { message: `unexpected error: ${(e as Error).message}` };
  return { message: e.why ? `${e.what} — ${e.why}` : e.what, suggestion: e.fix, input: e.input };
}

/** Runs `action`'s parser over `w`, reporting every faulty input and every bad line of each. */
export function validateInputs(action: string, w: Map<string, InputValue>, at: Pos): Found[] {
  const validate = validators[action];
  if (!validate) return [];
  const found: Found[] = [];
  const env: Env = { ...RUNNER_ENV };
  for (const [name, v] of w) env[inputVariable(name)] = v.dynamic ? placeholderFor(name) : v.value;
  const attempt = (e: Env): ReturnType<typeof split> | undefined => {
    try {
      validate(e);
      return undefined;
    } catch (err) {
      return split(err);
    }
  };
  const tries = new Map<string, number>();
  for (let round = 0; round < 60; round++) {
    const fault = attempt(env);
    if (!fault) break;
    const input = fault.input;
    const n = (tries.get(input ?? '') ?? 0) + 1;
    tries.set(input ?? '', n);
    const v = input ? w.get(input) : undefined;
    if (n === 1 && !v?.dynamic) {
      const base = { severity: 'error' as const, code: 'invalid-input', action, input };
      const lines = v ? v.value.split('\n').slice(0, MAX_ENTRY_LINES) : [];
      const filled = lines.map((l, i) => [l, i + 1] as const).filter(([l]) => l.trim() !== '');
      let entries: Found[] = [];
      if (v && input && filled.length === 1) entries = [{ ...base, ...v.lineOf(filled[0][1]), ...fault }];
      else if (v && input && filled.length > 1 && !WHOLE.test(input)) {
        // Each line alone, after as many blank lines as it had above it, so the parser's own
        // "line N" still counts from the top of the block.
        for (const [l, k] of filled) {
          const one = attempt({ ...env, [inputVariable(input)]: '\n'.repeat(k - 1) + l });
          if (one?.input === input) entries.push({ ...base, ...v.lineOf(k), ...one });
        }
      }
      if (!entries.length)
        entries = [{ ...base, ...(v ? { line: v.line, column: v.column } : at), ...fault }];
      found.push(...entries);
    }
    if (!input || n > 2) break;
    // Past each faulty input to the ones after it: first a placeholder (the input may be
    // required), then nothing (the placeholder may not fit it).
    if (n === 1) env[inputVariable(input)] = placeholderFor(input);
    else delete env[inputVariable(input)];
  }
  return found;
}

/** `permissions` of the reusable workflow, `name: level` a line, as the `permission-*` inputs it becomes. */
function reusableInputs(
  step: CordonStep,
  known: Map<string, InputValue>,
): { with: Map<string, InputValue>; found: Found[] } {
  const w = new Map([...known].filter(([k]) => k !== 'runs-on' && k !== 'permissions'));
  const found: Found[] = [];
  const perms = known.get('permissions');
  const seen = new Map<string, string>();
  if (perms && !perms.dynamic)
    perms.value.split('\n').forEach((l, i) => {
      if (!l.trim()) return;
      const bad = (message: string, suggestion: string): void => {
        found.push({
          ...perms.lineOf(i + 1),
          severity: 'error',
          code: 'invalid-input',
          action: REUSABLE,
          input: 'permissions',
          message: `permissions: ${message}`,
          suggestion,
        });
      };
      const m = /^\s*([A-Za-z_-]+)\s*:\s*(\S*)\s*$/.exec(l);
      if (!m) {
        bad(
          `line ${i + 1} "${l.trim()}" is not "name: level"`,
          'write one permission a line, such as `contents: write`',
        );
        return;
      }
      const name = m[1].replace(/_/g, '-').toLowerCase();
      const first = seen.get(name);
      if (first !== undefined) {
        // The workflow refuses it too: as step outputs, the last line would decide the level.
        bad(
          `${name} is given twice: "${first}" and "${l.trim()}"; which line wins would be decided by their order`,
          'keep one line per permission',
        );
        return;
      }
      seen.set(name, l.trim());
      w.set(`permission-${name}`, {
        ...perms,
        ...perms.lineOf(i + 1),
        value: m[2],
        dynamic: false,
      });
    });
  const secrets = step.secrets;
  const given = (n: string): InputValue | undefined =>
    secrets === 'inherit'
      ? { ...step, value: '${{ secrets.x }}', dynamic: true, lineOf: () => step }
      : secrets?.get(n);
  const key = given('app-private-key');
  if (key) w.set('private-key', { ...key, dynamic: true });
  const json = given('agent-secrets');
  if (json) w.set('secrets-json', { ...json, dynamic: true });
  if (secrets instanceof Map)
    for (const [name, v] of secrets)
      if (name !== 'app-private-key' && name !== 'agent-secrets')
        found.push({
          ...v,
          severity: 'error',
          code: 'unknown-secret',
          action: REUSABLE,
          input: name,
          message: `the reusable workflow takes no secret "${name}"`,
          suggestion: `its secrets are app-private-key and agent-secrets${nearest(name, ['app-private-key', 'agent-secrets']) ? `; did you mean "${nearest(name, ['app-private-key', 'agent-secrets'])}"?` : ''}`,
        });
  return { with: w, found };
}

/** Every problem of one Cordon step. */
export function checkStep(step: CordonStep): Found[] {
  const found: Found[] = [];
  const declared = declaredInputs(step.action);
  for (const [name, v] of step.with)
    if (!declared.has(name)) {
      const near = nearest(name, declared);
      const label = step.action === REUSABLE ? 'the reusable workflow' : step.action;
      found.push({
        line: v.line,
        column: v.column,
        severity: 'error',
        code: 'unknown-input',
        action: step.action,
        input: name,
        message: `${label}: unknown input "${name}"`,
        suggestion: near
          ? `did you mean "${near}"?`
          : `see docs/${step.action === REUSABLE ? 'agent' : step.action}.md for its inputs`,
      });
    }
  for (const [name, v] of step.with)
    if (v.notString)
      found.push({
        line: v.line,
        column: v.column,
        severity: 'error',
        code: 'invalid-input',
        action: step.action,
        input: name,
        message: `${name} is a YAML list or map, and an action's inputs are strings`,
        suggestion: `write one entry a line under \`${name}: |\``,
      });
  // A list or map was reported above; the parser then sees a stand-in, as for an expression.
  const known = new Map(
    [...step.with]
      .filter(([k]) => declared.has(k))
      .map(([k, v]) => [k, v.notString ? { ...v, dynamic: true } : v]),
  );
  const at = { line: step.line, column: step.column };
  if (step.action === 'agent' || step.action === REUSABLE) {
    const r = step.action === REUSABLE ? reusableInputs(step, known) : { with: known, found: [] };
    found.push(...r.found);
    for (const part of agentParts(r.with)) found.push(...validateInputs(part.action, part.with, at));
  } else found.push(...validateInputs(step.action, known, at));
  return found;
}
