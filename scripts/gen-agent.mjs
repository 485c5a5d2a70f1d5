// Generates actions/agent/action.yml (the one-step fence) and .github/workflows/agent.yml
// (the reusable workflow) from the individual actions' metadata, so their inputs pass
// through under the same names and cannot drift. `--check` fails if the files are stale.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { parse, stringify } from 'yaml';
import * as prettier from 'prettier';
import { OWNER_REPO, pin } from './pin-release.mjs';

export const REF = OWNER_REPO;
export const VERSION = 'v1';
// Third-party actions by full commit SHA (a tag can be moved to other code), the tag as a note.
const CHECKOUT = 'actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683'; // v4.2.2
const UPLOAD_ARTIFACT = 'actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02'; // v4.6.2
const PARTS = [
  { action: 'start', id: 'start' },
  { action: 'github-token', id: 'token', skip: [] },
  { action: 'egress', id: 'egress' },
  { action: 'run', id: 'run', skip: ['github-token'] },
  // Last, and whatever failed before it: the summary and attribution.json in a main step.
  { action: 'report', id: 'report', if: 'always()', skip: ['seal-key'] },
];
// The one-step fence locks the runner down unless told otherwise.
// Inputs several actions declare with one meaning: one composite input feeds them all.
// github-api-url: the API github-token mints at is the one run's broker mints at (GHES).
const SHARED = ['fail-on-tamper', 'fail-on-impersonation', 'job-summary', 'github-api-url'];
const OVERRIDES = { 'disable-sudo': 'true', 'disable-docker': 'true', 'egress-policy': 'block' };
// The fence opens STS, Secrets Manager and SSM of run's region to Cordon's own steps too.
const WITH = { 'aws-regions': '${{ inputs.aws-regions || inputs.aws-region }}' };

const meta = (a) => parse(readFileSync(`actions/${a}/action.yml`, 'utf8'));
// An expression in a description is evaluated by the parser; quote it without the braces.
const plain = (text) => String(text).replace(/\$\{\{\s*(.*?)\s*\}\}/g, '`$1` (as an expression)');

function build() {
  const inputs = {};
  const owner = {};
  const steps = [];
  for (const part of PARTS) {
    const m = meta(part.action);
    const withMap = {};
    for (const [name, spec] of Object.entries(m.inputs ?? {})) {
      if ((part.skip ?? []).includes(name)) continue;
      if (owner[name] && SHARED.includes(name)) {
        withMap[name] = `\${{ inputs.${name} }}`;
        continue;
      }
      if (owner[name]) throw new Error(`input ${name} is declared by both ${owner[name]} and ${part.action}`);
      owner[name] = part.action;
      const def = OVERRIDES[name] ?? spec.default;
      inputs[name] = {
        description: plain(`(${part.action}) ${spec.description}`),
        required: part.action === 'run' && name === 'run',
      };
      if (def !== undefined) inputs[name].default = String(def);
      withMap[name] = WITH[name] ?? `\${{ inputs.${name} }}`;
    }
    if (part.action === 'run') withMap['github-token'] = '${{ steps.token.outputs.token }}';
    // report checks run's window seals with the public key start's main put in its output.
    if (part.action === 'report') withMap['seal-key'] = '${{ steps.start.outputs.seal-key }}';
    const step = { id: part.id, uses: `${REF}/actions/${part.action}@${VERSION}`, with: withMap };
    if (part.action === 'github-token') step.if = "inputs.app-id != '' || inputs.client-id != ''";
    if (part.if) step.if = part.if;
    steps.push(step);
  }
  const outputs = {
    'exit-code': {
      description: "The agent command's exit code.",
      value: '${{ steps.run.outputs.exit-code }}',
    },
    'ledger-path': {
      description: 'Path of the run ledger.',
      value: '${{ steps.start.outputs.ledger-path }}',
    },
    'bot-login': {
      description: "The agent's GitHub App bot, when one was issued.",
      value: '${{ steps.token.outputs.bot-login }}',
    },
    'suggested-allowed-domains': {
      description: 'Audit mode: the allowed-domains the run used, one a line.',
      value: '${{ steps.report.outputs.suggested-allowed-domains }}',
    },
    'attribution-path': {
      description: 'Path of attribution.json, written by report.',
      value: '${{ steps.report.outputs.attribution-path }}',
    },
    verdict: {
      description: 'The ledger verdict: intact, altered or unverified.',
      value: '${{ steps.report.outputs.verdict }}',
    },
  };
  const action = {
    name: 'Cordon: agent',
    description:
      'The whole fence in one step: start, the agent GitHub identity, the egress allowlist (sudo and docker locked), the agent command with its secrets and credentials, then report (the summary and attribution.json).',
    author: 'Cordon',
    inputs,
    outputs,
    runs: { using: 'composite', steps },
  };

  const wfInputs = { 'runs-on': { description: 'Runner label.', type: 'string', default: 'ubuntu-latest' } };
  const wfWith = {};
  for (const [name, spec] of Object.entries(inputs)) {
    // Keys never go through a workflow input (the reusable workflow takes app-private-key as a secret).
    if (name.startsWith('permission-') || name === 'private-key' || name === 'github-app-private-key')
      continue;
    wfInputs[name] = {
      description: spec.description,
      type: 'string',
      required: spec.required,
      ...(spec.default !== undefined && !String(spec.default).includes('${{')
        ? { default: spec.default }
        : {}),
    };
    wfWith[name] = `\${{ inputs.${name} }}`;
  }
  wfInputs.permissions = {
    description: 'GitHub App permissions, one `name: level` a line (e.g. contents: write).',
    type: 'string',
    default: '',
  };
  const workflow = {
    name: 'cordon-agent',
    on: {
      workflow_call: {
        inputs: wfInputs,
        secrets: {
          'app-private-key': { description: "The agent GitHub App's private key.", required: false },
          'agent-secrets': {
            description:
              'A JSON object of secrets for `json:` sources, e.g. `toJSON(secrets)` as an expression.',
            required: false,
          },
        },
        outputs: {
          'exit-code': {
            description: "The agent command's exit code.",
            value: '${{ jobs.agent.outputs.exit-code }}',
          },
          verdict: {
            description: 'The ledger verdict: intact, altered or unverified.',
            value: '${{ jobs.agent.outputs.verdict }}',
          },
        },
      },
    },
    jobs: {
      agent: {
        'runs-on': '${{ inputs.runs-on }}',
        permissions: { 'id-token': 'write', contents: 'read' },
        outputs: {
          'exit-code': '${{ steps.fence.outputs.exit-code }}',
          verdict: '${{ steps.fence.outputs.verdict }}',
        },
        steps: [
          { uses: CHECKOUT, with: { 'persist-credentials': false } },
          {
            name: 'Turn permissions into permission-* inputs',
            id: 'perms',
            shell: 'bash',
            env: { PERMS: '${{ inputs.permissions }}' },
            run: [
              // A permission given twice (`contents: write` then `contents: read`, or
              // `pull_requests` and `pull-requests`) is refused: as outputs, the last line
              // would silently decide the level.
              'declare -A seen',
              'while IFS=: read -r name level; do',
              '  name=$(echo "$name" | tr -d "[:space:]" | tr _ - | tr "[:upper:]" "[:lower:]"); level=$(echo "$level" | tr -d "[:space:]")',
              '  [ -n "$name" ] || continue',
              '  if [ -n "${seen[$name]+x}" ]; then',
              '    echo "::error title=agent-workflow: permissions::agent-workflow: input permissions gives $name twice: \\"$name: ${seen[$name]}\\" and \\"$name: $level\\" — a permission has one level, and which line wins would be decided by their order. Fix: keep one line per permission"',
              '    exit 1',
              '  fi',
              '  seen[$name]=$level',
              '  echo "permission-$name=$level" >> "$GITHUB_OUTPUT"',
              'done <<< "$PERMS"',
            ].join('\n'),
          },
          {
            id: 'fence',
            uses: `${REF}/actions/agent@${VERSION}`,
            with: {
              ...wfWith,
              'private-key': '${{ secrets.app-private-key }}',
              'secrets-json': '${{ secrets.agent-secrets }}',
              ...Object.fromEntries(
                Object.keys(inputs)
                  .filter((n) => n.startsWith('permission-'))
                  .map((n) => [n, `\${{ steps.perms.outputs.${n} }}`]),
              ),
            },
          },
          {
            name: 'Upload attribution.json',
            if: 'always()',
            uses: UPLOAD_ARTIFACT,
            with: {
              name: 'cordon-attribution-${{ github.job }}-${{ github.run_attempt }}',
              path: '${{ runner.temp }}/cordon/attribution.json',
              'if-no-files-found': 'warn',
            },
          },
        ],
      },
    },
  };
  return {
    'actions/agent/action.yml':
      '# Generated by scripts/gen-agent.mjs from the other actions; do not edit by hand.\n' +
      stringify(action, { lineWidth: 0 }),
    '.github/workflows/agent.yml':
      '# Generated by scripts/gen-agent.mjs; do not edit by hand.\n' + stringify(workflow, { lineWidth: 0 }),
  };
}

const files = build();
// Formatted as `prettier --check` expects, so CI's lint and this check agree.
for (const [p, text] of Object.entries(files)) {
  files[p] = await prettier.format(text, { ...(await prettier.resolveConfig(p)), filepath: p });
}
if (process.argv.includes('--check')) {
  const stale = Object.entries(files).filter(([p, text]) => {
    try {
      // A release commit pins its own references (scripts/pin-release.mjs): compared as unpinned.
      return pin(readFileSync(p, 'utf8'), VERSION).text !== text;
    } catch {
      return true;
    }
  });
  if (stale.length) {
    console.error(`stale: ${stale.map(([p]) => p).join(', ')}; run node scripts/gen-agent.mjs`);
    process.exit(1);
  }
} else {
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(p.slice(0, p.lastIndexOf('/')), { recursive: true });
    writeFileSync(p, text);
  }
  console.log(`wrote ${Object.keys(files).join(', ')}`);
}
