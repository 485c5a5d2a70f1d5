/**
 * Commit attribution for `start`'s post step: every commit made since the sha recorded at
 * start (on HEAD, local branches, tags new or moved in the run, every ref update the reflogs hold
 * from the run, pushed refs, every commit object a `run` step saw created, reachable or not), who wrote it, who committed it, its co-authors and whether it
 * is signed, and a verdict. An agent never commits as a developer: with an agent identity
 * issued in the run, a commit whose author or committer is anyone else is impersonation.
 *
 * git runs hardened (src/platform/git.ts): the agent could write the repository's config.
 * Commits are read raw (`cat-file --batch`, length-prefixed), so no byte in a name or a
 * message can shift a field.
 */
import { statSync } from 'node:fs';
import { gitBytes } from '../platform/git.js';
import {
  eventsOf,
  type CommitObserved,
  type CommitsObserved,
  type RunRecorded,
  type WorkspaceAtStart,
} from '../ledger/events.js';
import type { LedgerEvent } from '../ledger/ledger.js';
import type { Env } from '../platform/runner.js';
import { botIdentity, noreplyHosts, type AgentIdentity } from './bot-identity.js';
import {
  commitish,
  gitText as text,
  hasControl,
  MAX_COMMIT_BYTES,
  objectMatches,
  parseCommit,
  readCommits,
  subjectOf,
  visible,
  type GitRunner,
  type RawCommit,
} from './commit-objects.js';
import { MAX_REFS_NAMED, pushedRefs, readReflogs } from './reflogs.js';
import { recordTags, tagsWritten } from './tags.js';

/**
 * Most commits listed and classified; a run that makes more is cut, and with an identity issued
 * the rest count as unproven: all of them would make a ledger line as large as the agent likes.
 */
export const MAX_COMMITS = 1000;

/** GitHub's own committer on commits made through the API or the web (web-flow). */
const WEB_FLOW_EMAIL = 'noreply@github.com';

/**
 * git with the repository's configuration neutralised and none of the step's environment.
 * The commit-graph is not read: it is a file the agent can write, and git takes the parents
 * it lists without reading the commits (grafts and replace refs are off in every hardened git).
 */
export const hardenedGit: GitRunner = (args, cwd, input) =>
  gitBytes(['-c', 'core.commitGraph=false', ...args], { cwd, input, safeDirectory: cwd });

export type { AgentIdentity } from './bot-identity.js';

/**
 * The git identities of every App bot issued in the run, from the ledger's `token.issued`:
 * only the identity GitHub gives an App (bot-identity.ts); a line naming anything else is
 * none (judgeLedger reports it).
 */
export function agentIdentities(
  events: LedgerEvent[],
  hosts: readonly string[] = ['github.com'],
): AgentIdentity[] {
  return events.flatMap((e) => {
    if (e.type !== 'token.issued') return [];
    const r = botIdentity(e.data, hosts);
    return 'identity' in r ? [r.identity] : [];
  });
}

/**
 * What the summary says about a signature. Cordon does not verify them: checking one runs a
 * program the repository's configuration names, and the agent wrote that configuration.
 */
export const SIGNED = 'signed, not verified by Cordon';
export const UNSIGNED = 'unsigned';

export function classify(
  c: Omit<CommitObserved, 'verdict'>,
  agents: AgentIdentity[],
): CommitObserved['verdict'] {
  if (agents.length === 0) return 'unattributed';
  // An identity with a control character is never the agent's, whatever its address; nor is
  // one read from an object that is not the commit its name says (rewritten after a push),
  // nor one that names two addresses (git and libgit2 read a different one).
  // Nor one git's walk left out because of what the agent wrote into the repository.
  if (c.controlCharacters || c.objectMismatch || c.ambiguousIdentity || c.hiddenFromHistory)
    return 'impersonation';
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

/** Commits of the recorded sha's history read first, and at most, to confirm what git left out. */
const FIRST_HISTORY = 1000;
const MAX_HISTORY = 100_000;

/**
 * Of `candidates` (commits git did not list: the tips, the parents of listed commits), those
 * not confirmed to be in `base`'s history: git left them out only because something the agent
 * wrote said they were. That history is the commits of `base`'s (its first FIRST_HISTORY as
 * git walks it, eight times more each round while some are unconfirmed, up to `most`) joined
 * to `base` by objects that hash to their names: git takes a commit's parents from whatever
 * holds its name (a rewritten object, `.git/shallow`); an object checked here says what the
 * commit did. Each object is read and checked once, whatever the rounds. A git failure is
 * thrown: the caller cannot tell what git left out (unchecked, T83), and walking every
 * candidate as hidden would call the history before the run impersonation.
 */
function unconfirmed(
  git: GitRunner,
  cwd: string,
  base: string,
  candidates: string[],
  most: number,
): { left: string[]; known: Set<string>; cleanButCut: boolean } {
  // The parents of each commit of the history read so far; null: its object does not hash to
  // its name, or was too large to read (walked from, it is named).
  const checked = new Map<string, string[] | null>();
  let limit = Math.min(FIRST_HISTORY, most);
  for (;;) {
    const walked = text(git, ['rev-list', `--max-count=${limit}`, base], cwd)
      .split('\n')
      .filter((l) => /^[0-9a-f]{40,64}$/.test(l));
    const fresh = walked.filter((sha) => !checked.has(sha));
    const objects = readCommits(git, cwd, fresh, new Map());
    for (const sha of fresh) {
      const obj = objects.get(sha);
      checked.set(sha, obj && objectMatches(sha, obj) ? parseCommit(obj).parents : null);
    }
    const inWalk = new Set(walked);
    const known = new Set<string>();
    const queue = [base];
    while (queue.length) {
      const sha = queue.pop() as string;
      const up = inWalk.has(sha) ? checked.get(sha) : undefined;
      if (known.has(sha) || !up) continue;
      known.add(sha);
      queue.push(...up);
    }
    const complete = walked.length < limit;
    const left = candidates.filter((c) => !known.has(c));
    if (!left.length || complete || limit >= most)
      return { left, known, cleanButCut: !complete && walked.every((sha) => checked.get(sha)) };
    limit = Math.min(limit * 8, most);
  }
}

/**
 * The commits reached from `start` through their own objects' parents, stopping at `stop`
 * (listed already, or confirmed in the recorded history), at most `budget`: what git's walk
 * left out. A missing object ends its line (a genuine shallow boundary).
 */
function walkHidden(
  git: GitRunner,
  cwd: string,
  start: string[],
  stop: (sha: string) => boolean,
  budget: number,
  large: Map<string, number>,
  parse: (sha: string, obj: Buffer) => RawCommit,
): Map<string, Buffer> {
  const found = new Map<string, Buffer>();
  // A commit names as many parents as the agent likes (20 000 in a 1 MiB object): a round
  // never reads, or keeps names of, more than what is left of the budget.
  let frontier = [...new Set(start)].slice(0, budget);
  while (frontier.length && found.size < budget) {
    const objects = readCommits(git, cwd, frontier, large);
    const next = new Set<string>();
    for (const sha of frontier) {
      const obj = objects.get(sha);
      if (!obj || found.size >= budget) continue;
      found.set(sha, obj);
      for (const p of parse(sha, obj).parents) {
        if (next.size >= budget - found.size) break;
        if (!stop(p) && !found.has(p)) next.add(p);
      }
    }
    frontier = [...next].filter((sha) => !found.has(sha)).slice(0, budget - found.size);
  }
  return found;
}

export interface ObserveOptions {
  env: Env;
  git?: GitRunner;
  /** Most commits of the recorded history read to confirm what git left out (tests). */
  maxHistory?: number;
}

/** The git directory's device and inode: another directory put in its place has others. */
function dirId(gitDir: string): string {
  const st = statSync(gitDir);
  return `${st.dev}:${st.ino}`;
}

/**
 * What `start`'s main sees of the workspace repository: whether the sha it records is a
 * commit there, which directory is its `.git`, and its tags. The post tells from it whether a
 * repository it cannot read is one the agent changed (a warning) or one there never was, and
 * which tags the run wrote (new or moved since: tags.ts).
 */
export function workspaceAtStart(
  env: Env,
  sha: string | undefined,
  git: GitRunner = hardenedGit,
): WorkspaceAtStart {
  const cwd = env.GITHUB_WORKSPACE || process.cwd();
  let gitDir: string;
  try {
    gitDir = text(git, ['rev-parse', '--absolute-git-dir'], cwd).trim();
  } catch {
    return { shaPresent: false };
  }
  let shaPresent = false;
  try {
    shaPresent =
      !!sha && /^[0-9a-f]{40,64}$/.test(sha) && text(git, ['cat-file', '-t', sha], cwd).trim() === 'commit';
  } catch {
    shaPresent = false;
  }
  const seen: WorkspaceAtStart = { shaPresent };
  try {
    seen.gitDirId = dirId(gitDir);
  } catch {
    // none: the post cannot tell the directory apart
  }
  try {
    seen.tags = recordTags(git, cwd);
  } catch {
    // git could not list them (a tag naming no object): the post judges tags by their files' times
  }
  return seen;
}

/** No commits listed, and why; `unchecked` when start saw the recorded commit in the workspace. */
export interface Skipped {
  skipped: string;
  unchecked?: boolean;
}

/**
 * The commits made since the recorded start sha, or a reason there are none to list
 * (no workspace repository, no recorded sha, sha not in the repository). When start saw
 * the recorded commit in the workspace repository, any of those means the repository was
 * changed since (its commit deleted, its `.git` replaced or made unreadable): `unchecked`.
 */
export function observeCommits(events: LedgerEvent[], opts: ObserveOptions): CommitsObserved | Skipped {
  const { env } = opts;
  const git = opts.git ?? hardenedGit;
  const cwd = env.GITHUB_WORKSPACE || process.cwd();
  const recorded = events.find((e) => e.type === 'run.recorded');
  const run = recorded?.data as RunRecorded | undefined;
  const base = run?.sha || env.GITHUB_SHA || '';
  const atStart = run?.workspace;
  const skip = (why: string): Skipped =>
    atStart?.shaPresent === true ? { skipped: why, unchecked: true } : { skipped: why };
  let gitDir: string;
  try {
    gitDir = text(git, ['rev-parse', '--absolute-git-dir'], cwd).trim();
  } catch {
    return skip(`the workspace ${cwd} is not a git repository`);
  }
  if (!/^[0-9a-f]{40,64}$/.test(base) || /^0+$/.test(base)) return skip('no commit was recorded at start');
  if (atStart?.gitDirId) {
    let now = '';
    try {
      now = dirId(gitDir);
    } catch {
      // unreadable: not the one start saw
    }
    if (now !== atStart.gitDirId)
      return skip(
        `the workspace's git directory (${gitDir}) is not the one start saw: its .git was replaced or pointed elsewhere`,
      );
  }
  try {
    if (text(git, ['cat-file', '-t', base], cwd).trim() !== 'commit') throw new Error('not a commit');
  } catch {
    return skip(
      atStart?.shaPresent
        ? `the commit recorded at start (${base.slice(0, 12)}) is gone from the workspace repository (start saw it there), or the repository can no longer be read`
        : `the commit recorded at start (${base.slice(0, 12)}) is not in the workspace repository`,
    );
  }
  // HEAD may name a branch that does not exist (or anything else the agent wrote there):
  // the walk then starts from the branches, tags and reflogs without it.
  let head = '';
  try {
    head = text(git, ['rev-parse', '--verify', '--quiet', 'HEAD^{commit}'], cwd).trim();
  } catch {
    head = '';
  }
  const fromHead = head ? ['HEAD'] : [];
  // From a minute before start's main: a reflog's time is in whole seconds.
  const started = Math.floor((recorded ? Date.parse(recorded.time) : 0) / 1000);
  const since = started - 60;
  const reflogs = readReflogs(gitDir, since);
  const pushed = pushedRefs(git, cwd, reflogs.pushed);
  // Tags new or moved since start's record; without one, by their files' ctime (to the
  // nanosecond), from start itself, a second's margin: the tags a checkout fetched seconds
  // before start (fetch-depth: 0) are not the run's.
  const tags = tagsWritten(git, cwd, gitDir, started - 1, atStart?.tags);
  const partial: string[] = [...reflogs.partial, ...pushed.partial, ...tags.partial];
  // Commit objects each `run` saw created while its command ran, whether or not a ref holds
  // them: one made with commit-tree and pushed to a URL moves no ref and leaves no reflog.
  const created = eventsOf(events, 'run.finished')
    .flatMap((f) => f.commitsCreated ?? [])
    .filter((sha) => /^[0-9a-f]{40,64}$/.test(sha));
  // Tags and pushed refs by the objects they point at (on stdin: there may be many).
  const updates = commitish(git, cwd, [
    ...new Set([...reflogs.updates, ...created, ...tags.objects, ...pushed.objects]),
  ]);
  const listed = text(
    git,
    ['rev-list', `--max-count=${MAX_COMMITS + 1}`, ...fromHead, '--branches', '--stdin'],
    cwd,
    [...updates, `^${base}`].join('\n') + '\n',
  )
    .split('\n')
    .filter((l) => /^[0-9a-f]{40,64}$/.test(l));
  const shas = listed.slice(0, MAX_COMMITS);
  // Commits too large to read: named as not read (their size is the agent's to choose).
  const large = new Map<string, number>();
  const raw = readCommits(git, cwd, shas, large);
  // Each commit listed is parsed once: for its parents here, for its identities below.
  const parsed = new Map<string, RawCommit>();
  const parse = (sha: string, obj: Buffer): RawCommit => {
    let p = parsed.get(sha);
    if (!p) parsed.set(sha, (p = parseCommit(obj)));
    return p;
  };
  // What git left out must be in the recorded history, read through objects that hash to
  // their names: a shallow file, a rewritten object of that history claiming the agent's
  // commit as a parent, would leave the agent's commits out of git's walk.
  const hidden = new Set<string>();
  if (listed.length <= MAX_COMMITS) {
    const inList = new Set(shas);
    const tips = text(
      git,
      ['rev-list', '--no-walk', ...fromHead, '--branches', '--stdin'],
      cwd,
      updates.join('\n') + (updates.length ? '\n' : ''),
    )
      .split('\n')
      .filter((l) => /^[0-9a-f]{40,64}$/.test(l));
    const parents = [...raw].flatMap(([sha, obj]) => parse(sha, obj).parents);
    const candidates = commitish(
      git,
      cwd,
      [...new Set([...tips, ...parents])].filter((sha) => sha !== base && !inList.has(sha)),
    );
    if (candidates.length) {
      const { left, known, cleanButCut } = unconfirmed(
        git,
        cwd,
        base,
        candidates,
        opts.maxHistory ?? MAX_HISTORY,
      );
      // A ref git places in the recorded history past what was read of it, every commit read
      // there hashing to its name (a tag on an old release of a large repository, all tags
      // counted once the packed refs are rewritten): not confirmed, said so, not walked and
      // listed as hidden. A parent git did not list is walked whatever the history's size.
      const parentSet = new Set(parents);
      const deep = cleanButCut ? left.filter((c) => !parentSet.has(c)) : [];
      const deepSet = new Set(deep);
      if (deep.length)
        partial.push(
          `${deep.length} commit(s) a ref points at (${deep[0].slice(0, 12)}${deep.length > 1 ? ', ...' : ''}) are, by git's walk, in the recorded history but past the ${opts.maxHistory ?? MAX_HISTORY} commits of it read and checked: not confirmed`,
        );
      const found = walkHidden(
        git,
        cwd,
        left.filter((c) => !deepSet.has(c)),
        (sha) => sha === base || inList.has(sha) || known.has(sha),
        MAX_COMMITS + 1 - shas.length,
        large,
        parse,
      );
      for (const [sha, obj] of found) {
        listed.push(sha);
        if (shas.length >= MAX_COMMITS) continue;
        shas.push(sha);
        raw.set(sha, obj);
        hidden.add(sha);
      }
    }
  }
  const agents = agentIdentities(events, noreplyHosts(env));
  const commits: CommitObserved[] = shas.flatMap((sha) => {
    const obj = raw.get(sha);
    if (!obj) return [];
    const p = parse(sha, obj);
    const names = [p.author, p.authorEmail, p.committer, p.committerEmail];
    const c: Omit<CommitObserved, 'verdict'> = {
      sha,
      author: visible(p.author),
      authorEmail: visible(p.authorEmail),
      committer: visible(p.committer),
      committerEmail: visible(p.committerEmail),
      coAuthors: coAuthors(p.message).map(visible),
      signature: p.signed ? SIGNED : UNSIGNED,
      subject: visible(subjectOf(p.message)),
    };
    if (names.some(hasControl)) c.controlCharacters = true;
    if (!objectMatches(sha, obj)) c.objectMismatch = true;
    if (p.ambiguous) c.ambiguousIdentity = true;
    if (hidden.has(sha)) c.hiddenFromHistory = true;
    return [{ ...c, verdict: classify(c, agents) }];
  });
  const result: CommitsObserved = { base, head, commits };
  if (pushed.refs.length) result.pushedRefs = pushed.refs.slice(0, MAX_REFS_NAMED);
  if (tags.refs.length) result.tags = tags.refs.slice(0, MAX_REFS_NAMED);
  if (listed.length > MAX_COMMITS) result.truncated = true;
  for (const [sha, size] of large)
    partial.push(`commit ${sha} is ${size} bytes, past ${MAX_COMMIT_BYTES}: not read, so not classified`);
  if (partial.length)
    result.partial =
      partial.length > 10 ? [...partial.slice(0, 9), `and ${partial.length - 9} more`] : partial;
  return result;
}
