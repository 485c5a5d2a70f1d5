/**
 * Commit attribution for `start`'s post step: every commit made since the sha recorded at
 * start (on HEAD and on local branches), who wrote it, who committed it, its co-authors and
 * signature, and a verdict. An agent never commits as a developer: with an agent identity
 * issued in the run, a commit whose author or committer is anyone else is impersonation.
 */
import { execFileSync } from 'node:child_process';
import { CordonError } from '../platform/errors.js';
import { eventsOf, type CommitObserved, type CommitsObserved, type RunRecorded } from '../ledger/events.js';
import type { Ledger, LedgerEvent } from '../ledger/ledger.js';
import type { Env, Runner } from '../platform/runner.js';

/** Most commits listed; a run that makes more is cut and says so. */
export const MAX_COMMITS = 1000;

/** GitHub's own committer on commits made through the API or the web (web-flow). */
const WEB_FLOW_EMAIL = 'noreply@github.com';

export type GitRunner = (args: string[], cwd: string) => string;

export function realGit(env: Env): GitRunner {
  return (args, cwd) =>
    execFileSync('git', args, {
      cwd,
      env: env as NodeJS.ProcessEnv,
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
}

export interface AgentIdentity {
  name: string;
  emails: string[];
}

/** The git identities of every app bot issued in the run, from the ledger's `token.issued`. */
export function agentIdentities(events: LedgerEvent[]): AgentIdentity[] {
  return eventsOf(events, 'token.issued').map((t) => {
    const emails = new Set<string>();
    if (t.gitUserEmail) emails.add(t.gitUserEmail.toLowerCase());
    if (t.botId !== undefined) emails.add(`${t.botId}+${t.bot}@users.noreply.github.com`.toLowerCase());
    emails.add(`${t.bot}@users.noreply.github.com`.toLowerCase());
    return { name: t.gitUserName ?? t.bot, emails: [...emails] };
  });
}

const SIGNATURE: Record<string, string> = {
  G: 'good',
  B: 'bad',
  U: 'good, untrusted key',
  X: 'good, expired signature',
  Y: 'good, expired key',
  R: 'good, revoked key',
  E: 'cannot be checked',
  N: 'unsigned',
};

export function classify(
  c: Omit<CommitObserved, 'verdict'>,
  agents: AgentIdentity[],
): CommitObserved['verdict'] {
  if (agents.length === 0) return 'unattributed';
  const isAgent = (email: string): boolean => agents.some((a) => a.emails.includes(email.toLowerCase()));
  const committerOk = isAgent(c.committerEmail) || c.committerEmail.toLowerCase() === WEB_FLOW_EMAIL;
  return isAgent(c.authorEmail) && committerOk ? 'agent' : 'impersonation';
}

/** `Co-authored-by:` trailers of a message, as written. */
export function coAuthors(message: string): string[] {
  const out: string[] = [];
  for (const line of message.split('\n')) {
    const m = /^co-authored-by:\s*(.+?)\s*$/i.exec(line);
    if (m) out.push(m[1]);
  }
  return out;
}

/** Most remote-tracking refs whose reflog is read. */
const MAX_REFS = 200;

/**
 * Remote-tracking refs a push from this workspace moved: git logs `update by push` in the
 * ref's reflog. A commit pushed and then dropped locally is still found through them.
 */
export function pushedRefs(git: GitRunner, cwd: string): string[] {
  const refs = git(['for-each-ref', '--format=%(refname)', `--count=${MAX_REFS}`, 'refs/remotes'], cwd)
    .split('\n')
    .filter((r) => r !== '' && !r.endsWith('/HEAD'));
  return refs.filter((ref) => {
    try {
      return git(['reflog', 'show', '--format=%gs', ref, '--'], cwd)
        .split('\n')
        .some((l) => l.startsWith('update by push'));
    } catch {
      return false;
    }
  });
}

export interface ObserveOptions {
  env: Env;
  git?: GitRunner;
}

/**
 * The commits made since the recorded start sha, or a reason there are none to list
 * (no workspace repository, no recorded sha, sha not in the repository).
 */
export function observeCommits(
  events: LedgerEvent[],
  opts: ObserveOptions,
): CommitsObserved | { skipped: string } {
  const { env } = opts;
  const git = opts.git ?? realGit(env);
  const cwd = env.GITHUB_WORKSPACE || process.cwd();
  const run = events.find((e) => e.type === 'run.recorded')?.data as RunRecorded | undefined;
  const base = run?.sha || env.GITHUB_SHA || '';
  try {
    git(['rev-parse', '--is-inside-work-tree'], cwd);
  } catch {
    return { skipped: `the workspace ${cwd} is not a git repository` };
  }
  if (!/^[0-9a-f]{40,64}$/.test(base) || /^0+$/.test(base))
    return { skipped: 'no commit was recorded at start' };
  try {
    git(['cat-file', '-e', `${base}^{commit}`], cwd);
  } catch {
    return {
      skipped: `the commit recorded at start (${base.slice(0, 12)}) is not in the workspace repository`,
    };
  }
  let head: string;
  try {
    head = git(['rev-parse', 'HEAD'], cwd).trim();
  } catch {
    return { skipped: 'the workspace repository has no HEAD' };
  }
  const pushed = pushedRefs(git, cwd);
  const format = ['%H', '%an', '%ae', '%cn', '%ce', '%G?', '%s', '%B'].join('%x1f');
  const out = git(
    [
      'log',
      '-z',
      '--no-color',
      `--format=${format}`,
      `--max-count=${MAX_COMMITS + 1}`,
      'HEAD',
      '--branches',
      ...pushed,
      '--not',
      base,
    ],
    cwd,
  );
  const agents = agentIdentities(events);
  const records = out.split('\0').filter((r) => r.trim() !== '');
  const commits: CommitObserved[] = records.slice(0, MAX_COMMITS).map((r) => {
    const [sha, author, authorEmail, committer, committerEmail, sig, subject, body] = r
      .replace(/^\n/, '')
      .split('\x1f');
    const c = {
      sha,
      author,
      authorEmail,
      committer,
      committerEmail,
      coAuthors: coAuthors(body ?? ''),
      signature: SIGNATURE[sig] ?? sig,
      subject,
    };
    return { ...c, verdict: classify(c, agents) };
  });
  const result: CommitsObserved = { base, head, commits };
  if (pushed.length) result.pushedRefs = pushed;
  if (records.length > MAX_COMMITS) result.truncated = true;
  return result;
}

export function impersonationError(observed: CommitsObserved): CordonError | undefined {
  const bad = observed.commits.filter((c) => c.verdict === 'impersonation');
  if (bad.length === 0) return undefined;
  const list = bad
    .slice(0, 5)
    .map(
      (c) =>
        `${c.sha.slice(0, 12)} by ${c.author} <${c.authorEmail}>, committed by ${c.committer} <${c.committerEmail}>`,
    )
    .join('; ');
  return new CordonError({
    what: `start: ${bad.length} commit(s) made in this run carry a human identity while the agent had its own: ${list}${bad.length > 5 ? '; ...' : ''}`,
    why: "an agent's commits must carry its bot identity so that humans review and approve them as the agent's",
    fix: 'do not push these commits; let github-token set the git identity (configure-git: true) and credit people with Co-authored-by trailers, not as author',
    input: 'fail-on-impersonation',
  });
}

/** Lists the run's commits and appends `commits.observed`; a git failure warns and never stops the summary. */
export function recordCommits(ledger: Ledger, runner: Runner, git?: GitRunner): CommitsObserved | undefined {
  if (!ledger.exists()) return undefined;
  try {
    const observed = observeCommits(ledger.events(), { env: runner.env, git });
    if ('skipped' in observed) {
      runner.info(`start: commits not listed: ${observed.skipped}`);
      return undefined;
    }
    ledger.append('commits.observed', observed);
    const flagged = observed.commits.filter((c) => c.verdict === 'impersonation').length;
    runner.info(
      `start: ${observed.commits.length} new commit(s) since ${observed.base.slice(0, 12)}, ${flagged} impersonating`,
    );
    for (const c of observed.commits.filter((x) => x.verdict === 'impersonation')) {
      runner.warning(
        `start: commit ${c.sha.slice(0, 12)} is authored by ${c.author} <${c.authorEmail}> and committed by ${c.committer} <${c.committerEmail}>, not by the agent's identity`,
      );
    }
    return observed;
  } catch (e) {
    runner.warning(`start: could not list the run's commits: ${e instanceof Error ? e.message : String(e)}`);
    return undefined;
  }
}
