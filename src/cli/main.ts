/** The `cordon` command. */
import { writeFileSync } from 'node:fs';
import { parseLedgerText } from '../ledger/ledger.js';
import {
  buildAttribution,
  renderSummaryHtml,
  renderSummaryMarkdown,
  renderSummaryText,
} from '../summary/render.js';
import { verdictFor } from '../ledger/verify.js';
import { readArgument } from './read.js';
import { runDemo } from './demo.js';
import { runCheck } from './check.js';
import { runPlan } from './plan.js';

const USAGE = `usage: cordon <command>

commands:
  check [--format text|json|github] <workflow.yml>...   validate Cordon steps and the workflow around them offline
  plan <workflow.yml>...                           print what the fence would do: nftables ruleset, session policy, token scope
  demo [--out DIR]                                 run a whole fenced agent job locally (default DIR: .cordon-demo)
  summary <ledger.jsonl> [--json|--text] [--html FILE]   render a run ledger as markdown (or JSON, or text)

Files are read only when they are regular files: a workflow up to 1 MiB, a ledger up to 64 MiB.
`;

function summary(args: string[]): number {
  const file = args.find((a) => !a.startsWith('--'));
  if (!file) {
    process.stderr.write(`cordon summary: give the ledger file\n${USAGE}`);
    return 2;
  }
  const text = readArgument(file, 'cordon summary', 'ledger', (t) => process.stderr.write(t));
  if (text === undefined) return 1;
  const lines = parseLedgerText(text);
  const input = { lines, verdict: verdictFor(lines) };
  const htmlAt = args.indexOf('--html');
  if (htmlAt >= 0) {
    const out = args[htmlAt + 1];
    if (!out) {
      process.stderr.write('cordon summary: --html needs a file name\n');
      return 2;
    }
    writeFileSync(out, renderSummaryHtml(input));
  }
  if (args.includes('--json')) process.stdout.write(JSON.stringify(buildAttribution(input), null, 2) + '\n');
  else if (args.includes('--text')) process.stdout.write(renderSummaryText(input));
  else process.stdout.write(renderSummaryMarkdown(input));
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'summary':
      return summary(rest);
    case 'check':
      return runCheck(
        rest,
        (s) => process.stdout.write(s),
        (s) => process.stderr.write(s),
      );
    case 'plan':
      return runPlan(
        rest,
        (s) => process.stdout.write(s),
        (s) => process.stderr.write(s),
      );
    case 'demo': {
      const at = rest.indexOf('--out');
      return runDemo({
        out: at >= 0 && rest[at + 1] ? rest[at + 1] : '.cordon-demo',
        inside: rest.includes('--inside'),
        log: (l) => process.stdout.write(l + '\n'),
      });
    }
    case undefined:
    case '-h':
    case '--help':
      process.stdout.write(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      process.stderr.write(`cordon: unknown command "${cmd}"\n${USAGE}`);
      return 2;
  }
}

// A closed pipe (`cordon demo | head`) is not an error worth a stack trace.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
});
process.exitCode = await main(process.argv.slice(2));
