import { afterEach, describe, expect, test } from '@jest/globals';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { stop } from '../../src/devkit/netns.js';
import { Job, REPO_ROOT } from '../../src/devkit/run-action.js';
import { fenceId } from '../../src/rootd/protocol.js';
import { World } from './egress-topology.js';
import type { StandIns } from '../harness/standins.js';
import { canMakeUsers, makeTestUser } from '../harness/users.js';
import { cordonAction, runWorkflowSteps, stepsOf, yamlBlocks, type Contexts } from '../harness/workflow.js';

/**
 * The README's quick start and every example, as written: their Cordon steps run in order
 * through the harness (then the post steps in reverse), as an unprivileged runner user with
 * passwordless sudo (as on GitHub's hosted runners), inside a "runner" namespace whose
 * loopback holds the stand-ins (OIDC issuer, GitHub API, moto) and whose egress goes to an
 * "internet" namespace. Only the agent's command is replaced, since each would call a real
 * agent or the network: by one that checks it got the secrets and credentials the step
 * names. Any other `uses:` is skipped and listed.
 */
const usable =
  canMakeUsers() && existsSync('/usr/sbin/nft') && existsSync('/usr/bin/dig') && existsSync('/usr/bin/sudo');
if (!usable && process.env.CI === 'true')
  throw new Error('examples e2e: needs root, nft, ip, dig, sudo and useradd (CI=true, so not skipping)');
if (!usable) console.warn('examples e2e skipped: needs root, nft, ip, dig, sudo and useradd');

const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
const workflows: [string, string][] = [
  ...yamlBlocks(readme, 'Quick start').map((y, i): [string, string] => [`README quick start ${i + 1}`, y]),
  ...readdirSync(join(REPO_ROOT, 'examples'))
    .filter((f) => f.endsWith('.yml'))
    .map((f): [string, string] => [`examples/${f}`, readFileSync(join(REPO_ROOT, 'examples', f), 'utf8')]),
];

/** Every name the workflow reads from `vars.` or `secrets.`, or names in a `json:` secret line. */
function contextsFor(text: string, s: StandIns): Contexts {
  const names = (re: RegExp): string[] => [...new Set([...text.matchAll(re)].map((m) => m[1]))];
  const vars = Object.fromEntries(
    names(/\bvars\.(\w+)/g).map((n) => [n, /APP_ID$/.test(n) ? s.appId : `var-${n}`]),
  );
  const secrets = Object.fromEntries(
    [...names(/\bsecrets\.(\w+)/g), ...names(/\bjson:(\w+)/g)].map((n) => [
      n,
      /APP_KEY$/.test(n) ? s.appKey : `example-${n.toLowerCase()}-7Qx9Lr2V`,
    ]),
  );
  return {
    github: {
      api_url: s.githubUrl,
      server_url: 'https://github.com',
      repository: 'octo-org/octo-repo',
      repository_owner: 'octo-org',
      run_id: '4242',
      event: { comment: { body: '/agent tidy the README' } },
    },
    vars,
    secrets,
    env: {},
  };
}

/** The command that stands in for the agent: it checks it got what its step gives it. */
function harmless(inputs: Record<string, string>): string {
  const names = inputs.secrets
    .split('\n')
    .map((l) => /^\s*([A-Za-z_]\w*)=/.exec(l)?.[1])
    .filter((n): n is string => !!n);
  const need = [...names];
  if (inputs['aws-role-to-assume']) need.push('AWS_ACCESS_KEY_ID', 'AWS_SESSION_TOKEN');
  if (inputs['github-token']) need.push('GH_TOKEN');
  return [
    ...need.map((n) => `test -n "\${${n}:-}" || { echo "harmless agent: ${n} is missing" >&2; exit 3; }`),
    `echo "harmless agent: ran as $(id -un) with ${need.join(' ') || 'nothing'}"`,
  ].join('\n');
}

function startStandIns(
  world: World,
  secrets: Record<string, string>,
): Promise<{ child: ChildProcess; s: StandIns }> {
  const child = world.runner.spawn([
    process.execPath,
    '--import',
    'tsx',
    join(REPO_ROOT, 'test/harness/standins.ts'),
    JSON.stringify({ secrets }),
  ]);
  let out = '';
  let err = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the stand-ins did not start within 60 s: ${err}`)),
      60000,
    );
    child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line && out.includes('\n')) {
        clearTimeout(timer);
        resolve({ child, s: JSON.parse(line) as StandIns });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the stand-ins exited with ${code}: ${err}`));
    });
  });
}

const cleanups: (() => Promise<void> | void)[] = [];
// Every cleanup runs, in reverse order, even when one fails; the first failure is reported.
afterEach(async () => {
  const failures: unknown[] = [];
  for (const c of cleanups.splice(0).reverse())
    await Promise.resolve()
      .then(c)
      .catch((e) => failures.push(e));
  if (failures.length) throw failures[0];
});

const suite = usable ? describe : describe.skip;

suite('the quick start and every example run as written', () => {
  test.each(workflows.map(([name, text], i) => [name, text, i] as const))(
    '%s: its Cordon steps run in order against the stand-ins, the fence up, then the post steps',
    async (_name, text, i) => {
      const secretValues = Object.fromEntries(
        [...text.matchAll(/aws-sm:([\w/.-]+)/g)].map((m) => [m[1], `example-sm-${i}-9f3kQz7Lw`]),
      );
      // Removed last: the fence's daemon, started through the user's sudo, must be gone first.
      const user = makeTestUser(`cex${i}`, { sudo: true });
      cleanups.push(() => user.remove());
      const world = new World(`x${i}`);
      const job = new Job();
      cleanups.push(() => world.destroy([fenceId(job.runnerTemp)]));
      await world.serve();
      const { child, s } = await startStandIns(world, secretValues);
      cleanups.push(() => stop(child));
      cleanups.push(() => job.remove());

      // What actions/checkout would leave: the repository, at the commit the run is for.
      const git = (args: string[]) =>
        execFileSync('git', args, {
          cwd: job.workspace,
          encoding: 'utf8',
          env: {
            ...process.env,
            GIT_CONFIG_GLOBAL: '/dev/null',
            GIT_AUTHOR_NAME: 'Octo Cat',
            GIT_AUTHOR_EMAIL: 'octocat@example.com',
            GIT_COMMITTER_NAME: 'Octo Cat',
            GIT_COMMITTER_EMAIL: 'octocat@example.com',
          },
        }).trim();
      git(['init', '-q', '-b', 'main']);
      git(['commit', '-q', '--allow-empty', '-m', 'Initial commit']);
      Object.assign(job.env, s.oidcEnv, {
        GITHUB_SHA: git(['rev-parse', 'HEAD']),
        GITHUB_API_URL: s.githubUrl,
        AWS_ENDPOINT_URL: s.motoEndpoint,
      });

      const contexts = contextsFor(text, s);
      const steps = stepsOf(text);
      const r = await runWorkflowSteps(steps, {
        job,
        contexts,
        wrap: [...world.runner.wrap, ...user.wrap(job.root)],
        adjust: (action, inputs) => (action === 'run' ? { ...inputs, run: harmless(inputs) } : inputs),
      });
      const failure = r.failed && {
        step: `${r.failed.action} ${r.failed.entry}`,
        errors: r.failed.result.commands.filter((c) => c.command === 'error').map((c) => c.message),
        stderr: r.failed.result.stderr.slice(-2000),
      };
      expect(failure).toBeUndefined();

      // Every Cordon step ran, start first; every other `uses:` is listed as skipped.
      const mains = r.ran.filter((x) => x.entry === 'main').map((x) => x.action);
      const top = steps.map((st) => st.uses && cordonAction(st.uses)).filter((a): a is string => !!a);
      expect(mains[0]).toBe('start');
      for (const a of top.filter((a) => a !== 'agent')) expect(mains).toContain(a);
      expect(mains).toContain('run');
      expect(r.skipped).toContain('uses: actions/checkout@v4');
      // Then the post steps, in reverse order of their mains; start's last.
      const posts = r.ran.filter((x) => x.entry === 'post').map((x) => x.action);
      expect(posts).toEqual(mains.filter((a) => posts.includes(a)).reverse());
      expect(posts[posts.length - 1]).toBe('start');

      // The fence was up for the command, which ran as its own user with what its step names.
      expect(mains).toContain('egress');
      const run = r.ran.find((x) => x.action === 'run')!;
      const ranAs = /harmless agent: ran as (\S+) with /.exec(run.result.stdout)?.[1];
      // `user: auto` gives it a user of its own, also after egress's `disable-sudo` (the
      // launcher is the one command sudo keeps): never the runner's.
      expect(ranAs).toMatch(/^cordon-agent-/);
      expect(ranAs).not.toBe(user.name);
      expect(run.result.stdout).not.toContain('::warning::run: the command runs as the runner user');
      expect(readFileSync(job.summaryFile, 'utf8')).toContain('Record intact');
      // No secret value reaches a log line (the runner hides `::add-mask::` lines themselves).
      const values = [
        ...Object.values(secretValues),
        ...Object.values(contexts.secrets as Record<string, string>),
      ];
      for (const x of r.ran)
        for (const line of x.result.stdout.split('\n').filter((l) => !l.startsWith('::add-mask::')))
          for (const v of values) expect(line.includes(v)).toBe(false);
    },
    300000,
  );
});
