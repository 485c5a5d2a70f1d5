/**
 * `cordon demo`: a whole fenced agent job on this machine, nothing to configure. Every
 * action runs as the bundled program the runner would start, through the same harness
 * the tests use, against loopback stand-ins: an OIDC issuer, the moto server, a GitHub
 * API server, and (as root) a network namespace for the egress fence.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Job, REPO_ROOT, type StepResult } from '../devkit/run-action.js';
import { startOidcIssuer } from '../devkit/oidc-issuer.js';
import { startGithubApi, makeAppKey } from '../devkit/github-api.js';
import { createMotoSecret, startMoto, motoAvailable } from '../devkit/moto.js';
import { ALLOWED_HOST, fenceUnavailable, runInsideNamespaces } from './demo-fence.js';
import { renderSummaryHtml, renderSummaryText } from '../summary/render.js';
import { judgeLedger } from '../actions/attribution.js';

/** A fake API key, fetched from the emulator and printed by the "agent": the log shows it scrubbed. */
const DEMO_SECRET = 'demo-sk-7Qx9Lr2VbN4pT8wZ';

/** The demo agent: uses its credentials, leaks its secret (scrubbed), commits as its bot. */
const AGENT_SCRIPT = `echo "agent: calling the model API with key $DEMO_API_KEY"
echo "agent: the same key, base64: $(printf %s "$DEMO_API_KEY" | base64)"
if python3 -c 'import boto3' 2>/dev/null && [ -n "\${AWS_ACCESS_KEY_ID:-}" ]; then
  python3 -c 'import boto3; print("agent: AWS says I am", boto3.client("sts").get_caller_identity()["Arn"])'
fi
echo "agent: GitHub token is there: \${GH_TOKEN:+yes}"
if [ -n "\${CORDON_DEMO_FENCED:-}" ]; then
  for url in http://api.demo.test/ http://exfil.evil.test/ http://203.0.113.50/; do
    node -e 'fetch(process.argv[1],{signal:AbortSignal.timeout(5000)}).then(r=>r.text()).then(t=>console.log("agent: "+process.argv[1]+" -> "+t.trim()),e=>console.log("agent: "+process.argv[1]+" -> refused ("+(e.cause?.code||e.name)+")"))' "$url"
  done
fi
echo "Agent edit" >> README.md
git add README.md
git commit -q -m "Agent: update README"
echo "agent: committed $(git log -1 --format='%h as %an <%ae>')"
`;

export interface DemoOptions {
  out: string;
  /** Set in the child that runs inside the runner namespace. */
  inside?: boolean;
  log: (line: string) => void;
}

type Cleanup = () => Promise<void> | void;

function hasAction(name: string): boolean {
  return existsSync(join(REPO_ROOT, 'dist', name, 'main.js'));
}

function git(cwd: string, args: string[], env: Record<string, string> = {}): string {
  return execFileSync('git', args, { cwd, env: { ...process.env, ...env }, encoding: 'utf8' }).trim();
}

export async function runDemo(opts: DemoOptions): Promise<number> {
  const { log } = opts;
  const out = resolve(opts.out);
  // The npm package ships the check, plan and summary commands only: the demo runs every
  // bundled action, which only a checkout has.
  if (!hasAction('start')) {
    log(
      `demo failed: ${join(REPO_ROOT, 'dist', 'start', 'main.js')} is not here. Fix: run the demo from a Cordon checkout (git clone https://github.com/cordon-dev/cordon && cd cordon && npm ci && node bin/cordon.js demo)`,
    );
    return 1;
  }
  if (!opts.inside) {
    rmSync(join(out, 'job'), { recursive: true, force: true });
    let why: string | undefined;
    try {
      why = fenceUnavailable(log);
    } catch (e) {
      log(`demo failed: ${(e as Error).message}`);
      return 1;
    }
    if (!why) {
      log('[0] building a runner and an "internet" network namespace; the whole job runs inside the runner');
      return runInsideNamespaces(out, log);
    }
    log(`[0] the egress fence is skipped: ${why}; everything else runs`);
  }
  mkdirSync(out, { recursive: true });
  const cleanups: Cleanup[] = [];
  const posts: { action: string; state: Record<string, string>; inputs?: Record<string, string> }[] = [];
  let step = 0;
  const say = (s: string): void => log(`[${++step}] ${s}`);
  const check = (r: StepResult, what: string): void => {
    if (r.code !== 0) {
      const err = r.commands.find((c) => c.command === 'error')?.message ?? r.stderr.slice(0, 2000);
      throw new Error(`${what} failed: ${err}`);
    }
  };
  try {
    say('starting a loopback OIDC issuer (stands in for the Actions ID-token service)');
    const issuer = await startOidcIssuer();
    cleanups.push(() => issuer.close());

    const job = new Job({ root: join(out, 'job'), env: { ...issuer.env } });
    git(job.workspace, ['init', '-q', '-b', 'main']);
    writeFileSync(join(job.workspace, 'README.md'), '# demo repository\n');
    const human = {
      GIT_AUTHOR_NAME: 'Octo Cat',
      GIT_AUTHOR_EMAIL: 'octocat@example.com',
      GIT_COMMITTER_NAME: 'Octo Cat',
      GIT_COMMITTER_EMAIL: 'octocat@example.com',
    };
    git(job.workspace, ['add', '.'], human);
    git(job.workspace, ['commit', '-q', '-m', 'Initial commit'], human);
    job.env.GITHUB_SHA = git(job.workspace, ['rev-parse', 'HEAD']);

    say('start: opening the run ledger and recording who and what this run is');
    const start = await job.run('start', 'main');
    check(start, 'start');
    posts.push({ action: 'start', state: start.state });

    // GitHub: a loopback API that speaks GitHub's shapes, with an app installed on the org.
    const key = makeAppKey();
    const github = await startGithubApi({
      appId: 4242,
      slug: 'cordon-demo-agent',
      publicKey: key.publicKey,
      botId: 990042,
      installations: [
        {
          id: 77,
          account: 'octo-org',
          repositories: ['octo-repo'],
          permissions: { contents: 'write', pull_requests: 'write', issues: 'write', metadata: 'read' },
        },
      ],
    });
    cleanups.push(() => github.close());
    job.env.GITHUB_API_URL = github.url;
    job.env.GIT_CONFIG_GLOBAL = join(job.home, '.gitconfig');
    say(
      `github-token: minting the agent's own App installation token (contents + pull-requests write, this repository only) from ${github.url}`,
    );
    const token = await job.run('github-token', 'main', {
      inputs: {
        'app-id': '4242',
        'private-key': key.pkcs1,
        'permission-contents': 'write',
        'permission-pull-requests': 'write',
        'github-api-url': github.url,
      },
    });
    check(token, 'github-token');
    posts.push({ action: 'github-token', state: token.state });
    log(`    the agent is ${token.outputs['bot-login']}; git commits as ${token.outputs['git-user-email']}`);

    if (opts.inside) {
      say(`egress: the allowlist (${ALLOWED_HOST} only), a DNS proxy and nftables in block mode`);
      const egress = await job.run('egress', 'main', {
        inputs: { 'allowed-domains': ALLOWED_HOST, preset: 'none', 'egress-policy': 'block' },
      });
      check(egress, 'egress');
      posts.push({ action: 'egress', state: egress.state });
      job.env.CORDON_DEMO_FENCED = '1';
    }

    // AWS: the moto server stands in for STS and Secrets Manager.
    const runInputs: Record<string, string> = {
      'github-token': token.outputs.token,
      'leak-scan': 'warn',
    };
    if (motoAvailable()) {
      say('starting the moto server (AWS emulator) on loopback, with one secret in Secrets Manager');
      const moto = await startMoto();
      cleanups.push(() => moto.stop());
      job.env.AWS_ENDPOINT_URL = moto.endpoint;
      await createMotoSecret(moto.endpoint, 'demo/api-key', DEMO_SECRET);
      Object.assign(runInputs, {
        secrets: 'DEMO_API_KEY=aws-sm:demo/api-key',
        'aws-role-to-assume': 'arn:aws:iam::123456789012:role/cordon-demo-agent',
        'aws-region': 'us-east-1',
        'aws-allow': 's3:GetObject arn:aws:s3:::demo-artifacts/*',
      });
    } else {
      log('    moto_server is not on PATH: the demo runs without AWS credentials and secrets');
      runInputs.secrets = 'DEMO_API_KEY=env:DEMO_API_KEY';
    }

    say(
      "run: the agent's command, with its secret and 15-minute AWS credentials in its own environment only",
    );
    const run = await job.run('run', 'main', {
      inputs: { ...runInputs, run: AGENT_SCRIPT },
      env: { DEMO_API_KEY: DEMO_SECRET },
    });
    for (const line of run.stdout.split('\n').filter((l) => l && !l.startsWith('::'))) log(`    | ${line}`);
    check(run, 'run');
    // The runner hides `::add-mask::` lines themselves; every other line must be free of the value.
    const leaked = run.stdout
      .split('\n')
      .find((l) => !l.startsWith('::add-mask::') && l.includes(DEMO_SECRET));
    if (leaked !== undefined) throw new Error('the demo secret reached the log: scrubbing failed');

    say('report: the summary and attribution.json, in a main step an upload step could follow');
    const report = await job.run('report', 'main');
    check(report, 'report');
    log(`    record ${report.outputs.verdict}; attribution at ${report.outputs['attribution-path']}`);

    say('running the post steps in reverse order, as the runner does');
    for (const p of posts.reverse()) {
      const r = await job.run(p.action, 'post', { state: p.state, inputs: p.inputs });
      check(r, `${p.action} post`);
    }
    const ledgerText = readFileSync(start.outputs['ledger-path'], 'utf8');
    const summaryMd = readFileSync(job.summaryFile, 'utf8');
    writeFileSync(join(out, 'summary.md'), summaryMd);
    // As start's post judged it (from the egress daemon's copy when the fence ran), the
    // egress post's report included.
    const { input: summaryInput } = await judgeLedger(start.outputs['ledger-path'], {
      nonce: start.state.nonce,
      head: start.state.head,
      sealKey: start.state['seal-key'],
    });
    writeFileSync(join(out, 'summary.html'), renderSummaryHtml(summaryInput));
    writeFileSync(join(out, 'ledger.jsonl'), ledgerText);
    log('');
    log(renderSummaryText(summaryInput));
    log(
      `Summary written to ${join(out, 'summary.md')} and ${join(out, 'summary.html')}; ledger at ${join(out, 'ledger.jsonl')}`,
    );
    return 0;
  } catch (e) {
    log(`demo failed: ${(e as Error).message}`);
    return 1;
  } finally {
    for (const c of cleanups.reverse()) await c();
  }
}
