/**
 * `publish`, a main step after `run`: pushes the workspace's HEAD to one branch of this
 * repository, so that the agent never holds a token that can write. It pushes only when
 * Cordon's own record says the commits are the agent's and clean: the ledger intact (as
 * report judges it), every commit of the run the agent's (none impersonating, none
 * unchecked, none past a bound), every commit between the recorded start and HEAD among
 * them, HEAD a commit `run` saw made, and no secret found by run's leak scan.
 *
 * The push is made from a bare repository of publish's own, whose alternates name the
 * workspace's objects: the agent wrote the workspace's `.git/config` (insteadOf, pushurl,
 * credential helpers, proxies, hooks), and none of it is read. The token is minted here,
 * `contents: write` on this repository only, given to git in its environment (never on a
 * command line), and revoked and confirmed dead before the step ends.
 */
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { CordonError, describeError, isCordonError } from '../../platform/errors.js';
import type { Ledger } from '../../ledger/ledger.js';
import { eventsOf, unclassifiedCommits, type CommitsObserved } from '../../ledger/events.js';
import type { SecretRegistry } from '../../platform/mask.js';
import type { Env, Runner } from '../../platform/runner.js';
import { GithubApi, type ApiDeps } from '../../github/api.js';
import { mintToken, revokeAndConfirm } from '../../github/token.js';
import { noreplyHosts } from '../../github/bot-identity.js';
import { agentIdentities, hardenedGit, MAX_COMMITS, observeCommits } from '../../github/commits.js';
import { gitText } from '../../github/commit-objects.js';
import { mdEscape, visibleControls } from '../../summary/doc.js';
import { eventsIn, judgeLedger } from '../attribution.js';
import type { PublishInputs } from './inputs.js';
import { defaultBranch, pushCommit, remoteOf } from './push.js';
import { Refusal } from './refusal.js';

export interface PublishDeps {
  runner: Runner;
  env: Env;
  registry: SecretRegistry;
  ledger: Ledger;
  api?: ApiDeps;
}

/** Short, shown without turning text around: names and reasons here are the agent's to choose. */
const shown = (v: string, n = 80): string => visibleControls(v.length > n ? `${v.slice(0, n - 1)}…` : v);

/**
 * The commit to push, or why none: the checks of the module comment, over the trusted lines
 * of the ledger and the workspace repository read through hardened git.
 */
async function whatToPush(
  inputs: PublishInputs,
  deps: PublishDeps,
): Promise<{ commit: string; count: number; gitDir: string }> {
  const { env, ledger } = deps;
  const judged = await judgeLedger(ledger.path, { sealKey: inputs.sealKey, noreplyHosts: noreplyHosts(env) });
  const { verdict } = judged.input;
  if (verdict.status !== 'intact')
    throw new Refusal(
      `the run ledger is ${verdict.status === 'altered' ? 'altered' : 'not verified'}`,
      `${
        verdict.details
          .slice(0, 3)
          .map((d) => shown(d, 200))
          .join('; ') || 'no detail'
      }: commits are pushed only on a record Cordon can trust`,
      'treat this run as compromised and review the agent step; nothing was pushed',
    );
  const events = eventsIn(judged.input.lines);
  if (!eventsOf(events, 'run.recorded').length)
    throw new Refusal(
      'the ledger has no run.recorded line',
      "publish reads where the run started from start's record",
      'place actions/start first in the job (after actions/checkout)',
    );
  if (!agentIdentities(events, noreplyHosts(env)).length)
    throw new Refusal(
      'no agent identity was issued in this run',
      "publish pushes only commits that carry the agent's own bot identity, and without one no commit is the agent's",
      "give the agent its App identity (actions/github-token with permission-contents: read, or run's github-app-*) before run",
    );
  const observed = observeCommits(events, { env });
  if ('skipped' in observed)
    throw new Refusal(
      `the run's commits could not be listed: ${shown(observed.skipped, 200)}`,
      "publish pushes only commits Cordon listed and found to be the agent's",
      'place start after actions/checkout, and do not let the agent replace the repository',
    );
  refuseUnclean(observed);
  const gitDir = gitText(
    hardenedGit,
    ['rev-parse', '--path-format=absolute', '--git-common-dir'],
    cwdOf(env),
  ).trim();
  const head = observed.head;
  if (!/^[0-9a-f]{40,64}$/.test(head))
    throw new Refusal(
      "the workspace's HEAD is not a commit",
      'publish pushes the commit HEAD names',
      'have the agent leave its work checked out (HEAD on its last commit)',
    );
  if (head === observed.base)
    throw new Refusal(
      `HEAD is the commit the run started from (${head.slice(0, 12)}): there is nothing to publish`,
      'publish pushes the commits the agent made in this run',
      'nothing to do: the agent made no commit; make publish conditional on the agent having committed',
    );
  const range = gitText(
    hardenedGit,
    ['rev-list', `--max-count=${MAX_COMMITS + 1}`, head, `^${observed.base}`],
    cwdOf(env),
  )
    .split('\n')
    .filter((l) => /^[0-9a-f]{40,64}$/.test(l));
  if (range.length > MAX_COMMITS)
    throw new Refusal(
      `more than ${MAX_COMMITS} commits lie between the recorded start and HEAD`,
      'Cordon classifies at most that many',
      'have the agent squash its work',
    );
  const verdicts = new Map(observed.commits.map((c) => [c.sha, c.verdict]));
  // The agent's own are the bot's commits run saw made: one in the bot's name made outside a
  // run (an earlier run's, a step's before run) was never scanned and is not this agent's.
  const created = new Set(eventsOf(events, 'run.finished').flatMap((f) => f.commitsCreated ?? []));
  const why = (sha: string): string =>
    verdicts.get(sha) === 'agent'
      ? "the bot's, not made in a run"
      : (verdicts.get(sha) ?? 'not made in this run');
  const notAgents = range.filter((sha) => verdicts.get(sha) !== 'agent' || !created.has(sha));
  if (notAgents.length)
    throw new Refusal(
      `${notAgents.length} commit(s) between the recorded start (${observed.base.slice(0, 12)}) and HEAD are not the agent's in Cordon's record: ${notAgents
        .slice(0, 5)
        .map((s) => `${s.slice(0, 12)} (${why(s)})`)
        .join(', ')}`,
      "publish pushes only the agent's own commits made in this run; a commit from before the run is someone else's to push",
      "base the agent's work on the commit the run started from (the checkout), and let it commit only as its bot",
    );
  if (!created.has(head))
    throw new Refusal(
      `HEAD (${head.slice(0, 12)}) is not a commit run saw made`,
      "run records every commit object created while the agent's command ran; one it did not record was made before the run or by another step",
      "publish after actions/run (or actions/agent), and push only the agent's last commit",
    );
  const finished = eventsOf(events, 'run.finished');
  const leaks = finished.flatMap((f) => (Array.isArray(f.leaks) ? f.leaks : []));
  if (leaks.length)
    throw new Refusal(
      `run's leak scan found ${[...new Set(leaks.map((l) => shown(String(l.secret), 60)))].join(', ')} in ${leaks.length} place(s) the agent wrote`,
      'a secret in the workspace or in the objects the agent created may be in what would be pushed',
      'remove the value and make the agent stop writing it; nothing was pushed',
    );
  const unread = finished.flatMap((f) => (Array.isArray(f.leaksNotScanned) ? f.leaksNotScanned : []));
  if (unread.length)
    throw new Refusal(
      `run's leak scan could not read everything the agent wrote: ${unread
        .slice(0, 3)
        .map((u) => shown(String(u)))
        .join('; ')}`,
      'content the scan did not read may hold a secret that would be pushed',
      "keep what the agent writes within the leak scan's bounds (docs/run.md, Leak scan)",
    );
  return { commit: head, count: range.length, gitDir };
}

function cwdOf(env: Env): string {
  return env.GITHUB_WORKSPACE || process.cwd();
}

/** Impersonation, an unchecked or partial list, commits past the list: each refuses. */
function refuseUnclean(o: CommitsObserved): void {
  if (o.unchecked)
    throw new Refusal(
      `the run's commits could not be checked: ${shown(o.unchecked, 200)}`,
      'the workspace repository was changed after start',
      'treat this run as compromised; nothing was pushed',
    );
  if (o.partial?.length)
    throw new Refusal(
      `the run's commits were looked for only in part: ${o.partial
        .slice(0, 3)
        .map((p) => shown(p, 200))
        .join('; ')}`,
      'a commit only what was not read holds would not be checked',
      'have the agent write fewer refs and reflogs, and squash its work',
    );
  if (unclassifiedCommits(o))
    throw new Refusal(
      `more than ${MAX_COMMITS} commits were made in this run`,
      'those past the list were not classified',
      'have the agent squash its work',
    );
  const bad = o.commits.filter((c) => c.verdict !== 'agent');
  if (bad.length)
    throw new Refusal(
      `${bad.length} commit(s) of this run are not the agent's: ${bad
        .slice(0, 5)
        .map(
          (c) =>
            `${c.sha.slice(0, 12)} (${c.verdict}) by ${shown(c.author, 40)} <${shown(c.authorEmail, 60)}>`,
        )
        .join('; ')}${bad.length > 5 ? '; ...' : ''}`,
      "an agent's commits carry its bot identity; a commit in a human's name (impersonation) in the run means the run cannot be published",
      "let github-token set the agent's git identity and credit people with Co-authored-by trailers; review the run",
    );
}

function summaryOf(lines: string[]): string {
  return ['### Cordon: publish', '', ...lines, ''].join('\n');
}

export async function publish(inputs: PublishInputs, deps: PublishDeps): Promise<void> {
  const { runner, env, ledger, registry } = deps;
  const branch = inputs.branch;
  let commit: string | undefined;
  let tokenState: string | undefined;
  const refused = (r: Refusal): CordonError => {
    const reason = `${r.what}: ${r.why}`;
    try {
      ledger.append('publish.refused', {
        branch,
        ...(commit ? { commit } : {}),
        reason: registry.scrub(reason).slice(0, 2000),
        ...(tokenState ? { token: tokenState } : {}),
      });
    } catch (e) {
      runner.warning(`publish: the refusal could not be recorded in the run ledger: ${describeError(e)}`);
    }
    runner.appendSummary(
      summaryOf([
        `**Refused: nothing was pushed** to branch ${mdEscape(branch)}.`,
        '',
        `- ${mdEscape(registry.scrub(r.what))}`,
      ]),
    );
    return new CordonError({
      what: `publish: nothing pushed to ${branch}: ${r.what}`,
      why: r.why,
      fix: r.fix,
      input: r.input,
    });
  };
  let remote: ReturnType<typeof remoteOf>;
  let found: Awaited<ReturnType<typeof whatToPush>>;
  try {
    remote = remoteOf(env);
    found = await whatToPush(inputs, deps);
    commit = found.commit;
  } catch (e) {
    if (e instanceof Refusal) throw refused(e);
    throw refused(
      new Refusal(
        `the run's commits could not be checked: ${shown(describeError(e), 300)}`,
        'publish pushes only what it could check',
        'see the error; nothing was pushed',
      ),
    );
  }
  let t: Awaited<ReturnType<typeof mintToken>>;
  try {
    t = await mintToken(inputs.app, { env, runner, registry, api: deps.api });
  } catch (e) {
    // mintToken's own error (the key, the App, the installation) is the step's; recorded too.
    const r = isCordonError(e)
      ? new Refusal(
          e.what.replace(/^publish: /, ''),
          e.why ?? 'no token could be minted',
          e.fix ?? 'see the error',
          e.input,
        )
      : new Refusal(
          `could not mint the token: ${shown(describeError(e), 300)}`,
          'no token, no push',
          'retry the job',
        );
    throw refused(r);
  }
  const api = new GithubApi(inputs.app.apiUrl, { env, maxAttempts: 3, maxTotalMs: 30000, ...deps.api });
  let failure: Refusal | undefined;
  try {
    const repository = `${inputs.app.owner}/${inputs.app.repositories[0]}`;
    const others = t.repositories.filter((r) => r.toLowerCase() !== repository.toLowerCase());
    if (others.length || t.permissions.contents !== 'write')
      throw new Refusal(
        `the token GitHub granted is not contents: write on ${repository} alone`,
        'publish asks for no more, and pushes with no more',
        "check the App's installation",
      );
    let main: string;
    try {
      main = await defaultBranch(api, repository, t.token);
    } catch (e) {
      throw new Refusal(
        `could not read ${repository}'s default branch: ${describeError(e)}`,
        'publish refuses to push to the default branch unless allow-default-branch says so, and so must know it',
        'retry the job; check github-api-url',
      );
    }
    if (main.toLowerCase() === branch.toLowerCase() && !inputs.allowDefaultBranch)
      throw new Refusal(
        `${branch} is the repository's default branch`,
        "the agent's commits go to a branch a human reviews and merges, not straight onto the default branch",
        'push to another branch (`branch: agent/issue-42`), or set `allow-default-branch: true` if that is truly meant',
        'branch',
      );
    try {
      pushCommit({
        objects: join(found.gitDir, 'objects'),
        commit: found.commit,
        branch,
        remote,
        token: t.token,
        registry,
        tempRoot: env.RUNNER_TEMP || tmpdir(),
      });
    } catch (e) {
      throw new Refusal(
        `git refused or failed the push of ${found.commit.slice(0, 12)}: ${shown(registry.scrub(describeError(e)), 600)}`,
        'publish never forces a push: a branch that moved elsewhere is not overwritten',
        'push to a new branch, or rebase the work onto the branch in a later job',
      );
    }
  } catch (e) {
    failure =
      e instanceof Refusal
        ? e
        : new Refusal(
            `unexpected error: ${shown(describeError(e), 300)}`,
            'publish stopped',
            'see the error',
          );
  } finally {
    const revoked = await revokeAndConfirm(api, t.token);
    tokenState =
      revoked.status === 'revoked' ? 'revoked' : `not revoked: ${shown(revoked.detail ?? 'unknown', 200)}`;
    if (revoked.status === 'revoked')
      runner.info(
        `publish: the step's token is revoked (a call with it now answers HTTP ${revoked.confirmStatus})`,
      );
    else runner.warning(`publish: the step's token may still be valid until ${t.expiresAt}: ${tokenState}`);
  }
  if (failure) throw refused(failure);
  ledger.append('publish.pushed', {
    branch,
    commit: found.commit,
    commits: found.count,
    remote: remote.url,
    token: tokenState ?? 'unknown',
  });
  runner.appendSummary(
    summaryOf([
      `**Pushed** \`${found.commit.slice(0, 12)}\` to branch ${mdEscape(branch)} (${found.count} commit(s), every one the agent's).`,
    ]),
  );
  runner.setOutput('commit', found.commit);
  runner.info(`publish: pushed ${found.commit} to ${branch} of ${remote.url} (${found.count} commit(s))`);
  if (tokenState !== 'revoked')
    throw new CordonError({
      what: `publish: pushed ${found.commit.slice(0, 12)} to ${branch}, but its token is ${tokenState}`,
      why: 'the token publish minted can write to the repository until it is revoked or expires',
      fix: "revoke it from the App's settings if GitHub keeps failing; retry is not needed for the push",
    });
}
