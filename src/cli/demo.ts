/**
 * `cordon demo`: a whole fenced agent job on this machine, nothing to configure. Every
 * action runs as the bundled program the runner would start, through the same harness
 * the tests use, against loopback stand-ins: an OIDC issuer, the moto server, a GitHub
 * API server, and (as root) a network namespace for the egress fence.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseLedgerText } from '../core/ledger.js';
import { Job, REPO_ROOT, type StepResult } from '../devkit/run-action.js';
import { startOidcIssuer } from '../devkit/oidc-issuer.js';
import { renderSummaryHtml, renderSummaryText } from '../summary/render.js';
import { verdictFor } from '../summary/verify.js';

export interface DemoOptions {
  out: string;
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

    say('running the post steps in reverse order, as the runner does');
    for (const p of posts.reverse()) {
      const r = await job.run(p.action, 'post', { state: p.state, inputs: p.inputs });
      check(r, `${p.action} post`);
    }
    const ledgerText = readFileSync(start.outputs['ledger-path'], 'utf8');
    const lines = parseLedgerText(ledgerText);
    const summaryMd = readFileSync(job.summaryFile, 'utf8');
    writeFileSync(join(out, 'summary.md'), summaryMd);
    const summaryInput = {
      lines,
      verdict: verdictFor(lines, { nonce: start.state.nonce, head: start.state.head }),
    };
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

export { hasAction };
