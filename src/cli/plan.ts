/**
 * `cordon plan <workflow.yml>`: what the fence would do, step by step, from the same parsers
 * and generators the actions run: the nftables ruleset, the AWS session policy, the GitHub
 * token's scope, what the agent's command gets and what it loses.
 */
import { readFileSync } from 'node:fs';
import { isCordonError } from '../platform/errors.js';
import { inputVariable } from '../platform/inputs.js';
import { readArgument } from './read.js';
import type { Env } from '../platform/runner.js';
import type { AwsActionInputs, AwsSessionInputs } from '../aws/inputs.js';
import { renderRuleset } from '../fence/firewall.js';
import { AGENT_UID_MAX, AGENT_UID_MIN } from '../identity/user.js';
import type { EgressSettings } from '../actions/egress/inputs.js';
import type { GithubTokenInputs } from '../github/inputs.js';
import { REMOVED_BY_DEFAULT } from '../actions/run/env.js';
import type { RunInputs } from '../actions/run/inputs.js';
import type { PublishInputs } from '../actions/publish/inputs.js';
import { placeholderFor } from './check-step.js';
import { findCordonSteps, type CordonStep } from './workflow.js';
import { validators } from './validators.js';

/** The first nameserver of a resolv.conf, as the egress daemon would pick its upstream. */
export function hostResolver(resolvConf = '/etc/resolv.conf'): string | undefined {
  try {
    return /^\s*nameserver\s+(\S+)/m.exec(readFileSync(resolvConf, 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

function stepEnv(step: CordonStep): Env {
  const env: Env = {
    GITHUB_REPOSITORY: 'owner/repo',
    GITHUB_RUN_ID: 'RUN_ID',
    GITHUB_RUN_ATTEMPT: '1',
    GITHUB_JOB: 'job',
  };
  for (const [k, v] of step.with) env[inputVariable(k)] = v.dynamic ? placeholderFor(k) : v.value;
  return env;
}

function awsLines(a: AwsSessionInputs, heading: string): string[] {
  return [
    `  ${heading}: role ${a.role.arn}, session ${a.sessionName}, ${a.durationSeconds} s, region ${a.region}, audience ${a.audience}`,
    `    managed policies: ${a.policy.managedPolicyArns.join(', ') || 'none'}`,
    '    inline session policy:',
    ...(a.policy.document
      ? JSON.stringify(a.policy.document, null, 2).split('\n')
      : ['(none: the role policy applies as is)']
    ).map((l) => `      ${l}`),
  ];
}

function planStep(step: CordonStep): string[] {
  const out = [`${step.action} (line ${step.line}):`];
  const dynamic = [...step.with].filter(([, v]) => v.dynamic).map(([k]) => k);
  if (dynamic.length) out.push(`  known only at run time: ${dynamic.join(', ')}`);
  let parsed: unknown;
  try {
    parsed = validators[step.action]?.(stepEnv(step));
  } catch (e) {
    out.push(`  cannot plan: ${isCordonError(e) ? e.message : (e as Error).message} (run cordon check)`);
    return out;
  }
  switch (step.action) {
    case 'egress': {
      const s = parsed as EgressSettings;
      const upstream = s.dnsUpstream ?? hostResolver() ?? '127.0.0.53';
      out.push(
        `  ${s.policy} mode; names allowed: ${[...s.domains, ...s.presetDomains].map((d) => (d.wildcard ? `*.${d.name}` : d.name)).join(', ') || 'none'}`,
        `  names allowed to the agent (uids ${AGENT_UID_MIN}-${AGENT_UID_MAX}, not the preset): ${s.domains.map((d) => (d.wildcard ? `*.${d.name}` : d.name)).join(', ') || 'none'}`,
        `  static addresses: ${s.ips.length ? s.ips.map((c) => `${c.address}/${c.prefix}`).join(', ') : 'none'}`,
        `  sudo ${s.disableSudo ? 'removed' : 'kept'}, docker ${s.disableDocker ? 'cut' : 'kept'}; DNS upstream ${upstream}`,
        "  nftables ruleset (DNSUID = the proxy user created at run time, AGENTPORT = the agent's proxy's port):",
        ...renderRuleset({
          policy: s.policy,
          staticAllowed: s.ips,
          dnsUid: 0,
          upstreams: [upstream],
          agent: { uidMin: AGENT_UID_MIN, uidMax: AGENT_UID_MAX, dnsPort: 0 },
        })
          .replace(/meta skuid 0 /g, 'meta skuid DNSUID ')
          .replace(/dport 0 /g, 'dport AGENTPORT ')
          .replace(/redirect to :0$/gm, 'redirect to :AGENTPORT')
          .split('\n')
          .map((l) => `    ${l}`),
      );
      break;
    }
    case 'aws': {
      const a = parsed as AwsActionInputs;
      out.push(...awsLines(a, 'AWS'), `  credentials exported as: ${a.export}`);
      break;
    }
    case 'github-token': {
      const g = parsed as GithubTokenInputs;
      out.push(
        `  app ${dynamic.includes(g.issuerInput) ? `from ${g.issuerInput} at run time` : g.issuer} on ${g.owner}, repositories: ${g.repositories.join(', ') || 'all of the installation'}`,
        `  permissions: ${Object.entries(g.permissions)
          .map(([k, v]) => `${k}: ${v}`)
          .join(', ')}`,
        `  revoked in post: ${g.skipTokenRevoke ? 'no (skip-token-revoke)' : 'yes'}; git identity set: ${g.configureGit ? 'yes' : 'no'}`,
      );
      break;
    }
    case 'run': {
      const r = parsed as RunInputs;
      out.push(
        `  secrets given to the command: ${r.specs.map((s) => `${s.expand ? `${s.target}*` : s.target} from ${s.source}:${s.ref}${s.key ? `#${s.key}` : ''}`).join(', ') || 'none'}`,
        `  removed from its environment: ${REMOVED_BY_DEFAULT.filter((n) => !r.keepEnv.includes(n)).join(', ')}`,
        `  GitHub token: ${r.githubToken ? 'GH_TOKEN and GITHUB_TOKEN' : 'none'}; timeout: ${r.timeoutMs ? `${r.timeoutMs / 60000} min` : 'none'}; leak scan: ${r.leakScan}`,
        ...(r.aws ? awsLines(r.aws, 'AWS, minted for this command only') : ['  AWS: none minted']),
      );
      break;
    }
    case 'publish': {
      const p = parsed as PublishInputs;
      const branch = step.with.get('branch');
      out.push(
        `  pushes the workspace's HEAD to branch ${branch?.dynamic ? `${branch.value} (known at run time)` : p.branch} of this repository, never forced`,
        `  token: app ${dynamic.includes(p.app.issuerInput) ? `from ${p.app.issuerInput} at run time` : p.app.issuer} mints contents: write on this repository only, for this step only, never an output; revoked and confirmed dead before the step ends`,
        `  pushes only when: the ledger's verdict is intact${p.sealKey || step.with.has('seal-key') ? " (run's window seals checked with seal-key)" : " (no seal-key: run's window seals NOT checked)"}; an agent identity was issued; the run's commits were listed in full and every one is the agent's, made in run; every commit from the recorded start to HEAD is one of them, HEAD included; run's leak scan found no secret and read everything; GitHub granted exactly contents: write`,
        `  default branch: ${dynamic.includes('allow-default-branch') ? 'refused unless allow-default-branch is true at run time' : p.allowDefaultBranch ? 'allowed (allow-default-branch: true)' : 'refused (set allow-default-branch: true to allow it)'}`,
      );
      break;
    }
    default:
      out.push('  nothing to plan beyond its inputs');
  }
  return out;
}

export function planWorkflowText(text: string): string {
  const { steps, errors } = findCordonSteps(text);
  const lines = errors.map((e) => `YAML: ${e}`);
  if (!steps.length) lines.push('no Cordon steps found');
  for (const s of steps) lines.push(...planStep(s), '');
  return lines.join('\n') + '\n';
}

export function runPlan(files: string[], out: (s: string) => void, err: (s: string) => void): number {
  if (!files.length) {
    err('cordon plan: give a workflow file\n');
    return 2;
  }
  for (const f of files) {
    const text = readArgument(f, 'cordon plan', 'workflow', err);
    if (text === undefined) return 2;
    try {
      out(`# ${f}\n${planWorkflowText(text)}`);
    } catch (e) {
      err(`cordon plan: cannot read ${f}: ${(e as Error).message}\n`);
      return 2;
    }
  }
  return 0;
}
