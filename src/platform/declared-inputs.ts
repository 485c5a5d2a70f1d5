/**
 * The inputs an action declares, read from its action.yml, and the `with:` keys a step was
 * given that it does not declare. GitHub only warns about an undeclared key ("Unexpected
 * input") and still hands it over as `INPUT_<NAME>`; a Cordon step fails on it instead, so
 * a drop-in `with:` block never does less than it says without anyone noticing.
 */
import { CordonError } from './errors.js';
import { inputVariable } from './inputs.js';
import type { Env } from './runner.js';

/** Input names under `inputs:` in action.yml text (the two-space keys of that block). */
export function declaredInputNames(actionYml: string): string[] {
  const names: string[] = [];
  let inInputs = false;
  for (const line of actionYml.split(/\r?\n/)) {
    if (/^\S/.test(line)) inInputs = /^inputs:\s*$/.test(line);
    else if (inInputs) {
      const m = /^ {2}([A-Za-z0-9_-]+):\s*$/.exec(line) ?? /^ {2}'([^']+)':\s*$/.exec(line);
      if (m) names.push(m[1]);
    }
  }
  return names;
}

/** Fails naming every `INPUT_*` variable of `env` that is not one of `declared`. */
export function rejectUnknownInputs(action: string, env: Env, declared: string[]): void {
  const known = new Set(declared.map((n) => inputVariable(n)));
  const unknown = Object.keys(env)
    .filter((k) => k.startsWith('INPUT_') && !known.has(k.toUpperCase()))
    .map((k) => k.slice('INPUT_'.length).toLowerCase())
    .sort();
  if (!unknown.length) return;
  const list = unknown.map((n) => `\`${n}\``).join(', ');
  throw new CordonError({
    what: `${action}: ${unknown.length === 1 ? 'input' : 'inputs'} ${list} ${unknown.length === 1 ? 'is' : 'are'} not supported`,
    why: `Cordon's ${action} does not declare ${unknown.length === 1 ? 'it' : 'them'}; ignoring ${unknown.length === 1 ? 'it' : 'them'} would make the step do less than its \`with:\` block says`,
    fix: `remove ${unknown.length === 1 ? 'it' : 'them'} from \`with:\`; docs/${action}.md lists the inputs ${action} takes`,
    input: unknown[0],
  });
}
