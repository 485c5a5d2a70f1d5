// The README's per-action sections are the pages under docs/, included between the
// actions markers, so each action's documentation has one source. `--check` fails when stale.
import { readFileSync, writeFileSync } from 'node:fs';

const PAGES = ['start', 'agent', 'github-token', 'aws', 'egress', 'secrets', 'run', 'broker', 'integrity'];
const BEGIN = '<!-- actions:begin (generated from docs/ by scripts/gen-readme.mjs) -->';
const END = '<!-- actions:end -->';

const readme = readFileSync('README.md', 'utf8');
const at = readme.indexOf(BEGIN);
const end = readme.indexOf(END);
if (at < 0 || end < at) throw new Error(`README.md lacks the ${BEGIN} ... ${END} markers`);
const body = PAGES.map((p) => readFileSync(`docs/${p}.md`, 'utf8').trim() + '\n').join('\n');
const next = `${readme.slice(0, at)}${BEGIN}\n\n${body}\n${readme.slice(end)}`;
if (process.argv.includes('--check')) {
  if (next !== readme) {
    console.error('README.md is stale: run node scripts/gen-readme.mjs');
    process.exit(1);
  }
} else {
  writeFileSync('README.md', next);
  console.log(`README.md: ${PAGES.length} sections from docs/`);
}
