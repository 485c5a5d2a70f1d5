/**
 * `cordon check [--format text|json|github] <workflow.yml>...`: validates every Cordon step's
 * inputs offline with the same parsers the actions run, and the workflow around them
 * (permissions, step order, event text in commands, the allowlist Cordon's own steps need).
 * Each problem is reported once, at its own line and column, sorted. Inputs whose value is
 * an expression (`${{ ... }}`) are only known at run time and are not judged. It reads
 * regular files only, at most 1 MiB each (a FIFO or a link to /dev/zero is refused).
 */
import { readArgument } from './read.js';
import { checkStep, type Problem } from './check-step.js';
import { checkJob, injection, order } from './check-workflow.js';
import { readWorkflow } from './workflow.js';

export type { Problem } from './check-step.js';
export { cordonActionName } from './workflow.js';

export const FORMATS = ['text', 'json', 'github'] as const;
export type Format = (typeof FORMATS)[number];

function compare(a: Problem, b: Problem): number {
  return a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line || a.column - b.column;
}

/** Problems sorted by file, line, column, each once. */
export function settle(problems: Problem[]): Problem[] {
  const seen = new Set<string>();
  return problems
    .filter((p) => {
      // An input two wrapped actions read (agent's fail-on-tamper) fails in both: one problem.
      const key = JSON.stringify([p.file, p.line, p.column, p.code, p.input ?? p.message]);
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    })
    .sort(compare);
}

export function checkWorkflowText(source: string, file: string): { problems: Problem[]; steps: number } {
  const w = readWorkflow(source);
  const problems: Problem[] = w.errors.map((e) => ({ file, ...e, severity: 'error', code: 'yaml' }));
  // A composite action's steps: what a job's steps are checked for, but no permissions.
  const composite = w.composite && { id: '', line: 1, column: 1, steps: w.composite };
  for (const job of [...w.jobs, ...(composite ? [composite] : [])]) {
    for (const s of job.steps)
      if (s.unknownCordon)
        problems.push({
          file,
          line: s.line,
          column: s.column,
          severity: 'error',
          code: 'unknown-action',
          message: `${s.uses} names no Cordon action`,
          suggestion: `Cordon's actions are start, aws, egress, secrets, run, github-token, agent and report`,
        });
    const found = job === composite ? [...order(job), ...injection(job)] : checkJob(job);
    problems.push(...found.map((f) => ({ file, ...f })));
  }
  for (const s of w.steps) problems.push(...checkStep(s).map((f) => ({ file, ...f })));
  return { problems: settle(problems), steps: w.steps.length };
}

/** GitHub's escaping for a workflow command's message and, with more characters, its properties. */
const escapeData = (s: string): string => s.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
const escapeProperty = (s: string): string => escapeData(s).replace(/:/g, '%3A').replace(/,/g, '%2C');

export function formatProblem(p: Problem, format: Exclude<Format, 'json'>): string {
  const message = p.suggestion ? `${p.message}. Fix: ${p.suggestion}` : p.message;
  if (format === 'text') return `${p.file}:${p.line}:${p.column}: ${p.severity}: ${message}\n`;
  const props = [`file=${p.file}`, `line=${p.line}`, `col=${p.column}`, `title=cordon check: ${p.code}`]
    .map((kv) => {
      const at = kv.indexOf('=');
      return `${kv.slice(0, at)}=${escapeProperty(kv.slice(at + 1))}`;
    })
    .join(',');
  return `::${p.severity} ${props}::${escapeData(message)}\n`;
}

/** The JSON form: what a CI tool reads. */
export function problemJson(p: Problem): Record<string, unknown> {
  const { file, line, column, severity, code, message, suggestion } = p;
  return { file, line, column, severity, code, message, suggestion: suggestion ?? null };
}

/** `--format x` / `--format=x` out of the arguments; an unknown format is a usage error. */
export function parseCheckArgs(args: string[]): { files: string[]; format: Format } | { error: string } {
  const files: string[] = [];
  let format: string = 'text';
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--format') format = args[++i] ?? '';
    else if (a.startsWith('--format=')) format = a.slice('--format='.length);
    else files.push(a);
  }
  if (!(FORMATS as readonly string[]).includes(format))
    return { error: `cordon check: unknown --format "${format}": give text, json or github\n` };
  return { files, format: format as Format };
}

export function runCheck(args: string[], out: (s: string) => void, err: (s: string) => void): number {
  const parsed = parseCheckArgs(args);
  if ('error' in parsed) {
    err(parsed.error);
    return 2;
  }
  const { format } = parsed;
  const files = [...new Set(parsed.files)].sort();
  if (files.length === 0) {
    err('cordon check: give one or more workflow files\n');
    return 2;
  }
  const all: Problem[] = [];
  for (const file of files) {
    const text = readArgument(file, 'cordon check', 'workflow', err);
    if (text === undefined) return 2;
    const { problems, steps } = checkWorkflowText(text, file);
    all.push(...problems);
    if (format !== 'json') for (const p of problems) out(formatProblem(p, format));
    if (format === 'text') out(`${file}: ${steps} Cordon step(s), ${problems.length} problem(s)\n`);
  }
  if (format === 'json') out(JSON.stringify(settle(all).map(problemJson), null, 2) + '\n');
  return all.some((p) => p.severity === 'error') ? 1 : 0;
}
