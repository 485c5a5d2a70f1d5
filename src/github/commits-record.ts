/**
 * What the run's commits mean for the job: the error `fail-on-impersonation` raises, and the
 * `commits.observed` line report and start's post append (commits.ts lists and classifies).
 */
import { CordonError } from '../platform/errors.js';
import {
  unclassifiedCommits,
  type CommitObserved,
  type CommitsObserved,
  type RunRecorded,
} from '../ledger/events.js';
import type { Ledger, LedgerEvent } from '../ledger/ledger.js';
import type { Runner } from '../platform/runner.js';
import type { GitRunner } from './commit-objects.js';
import { MAX_COMMITS, observeCommits } from './commits.js';
import { visibleControls } from '../summary/doc.js';

export function impersonationError(observed: CommitsObserved, who = 'start'): CordonError | undefined {
  const bad = observed.commits.filter((c) => c.verdict === 'impersonation');
  const unlisted = unclassifiedCommits(observed);
  const partial = observed.partial?.length ? observed.partial : undefined;
  if (bad.length === 0 && !unlisted && !observed.unchecked && !partial) return undefined;
  // The names are the agent's to choose: each cut, and shown without turning the text
  // around (a right-to-left override), in the annotation and the log.
  const shown = (v: string): string => visibleControls(v.length > 60 ? `${v.slice(0, 59)}…` : v);
  const list = bad
    .slice(0, 5)
    .map(
      (c) =>
        `${c.sha.slice(0, 12)} by ${shown(c.author)} <${shown(c.authorEmail)}>, committed by ${shown(c.committer)} <${shown(c.committerEmail)}>`,
    )
    .join('; ');
  // What went wrong and its fix, for each of the two.
  const parts: [string, string][] = [];
  if (bad.length)
    parts.push([
      `${bad.length} commit(s) made in this run carry a human identity while the agent had its own: ${list}${bad.length > 5 ? '; ...' : ''}`,
      'do not push these commits; let github-token set the git identity (configure-git: true) and credit people with Co-authored-by trailers, not as author',
    ]);
  if (observed.unchecked)
    parts.push([
      `the commits made in this run could not be checked: ${observed.unchecked}`,
      `review the authors of every commit since ${observed.base.slice(0, 12)} in what was pushed before trusting it; the workspace repository was changed after start`,
    ]);
  if (partial)
    parts.push([
      `the commits made in this run were looked for only in part (bounds reached: ${partial.map(shownWhy).join('; ')}): a commit only what was not read holds is not listed`,
      `review the authors of every commit since ${observed.base.slice(0, 12)} in what was pushed before trusting it; a run that writes this many refs or reflogs cannot have its commits checked`,
    ]);
  if (unlisted)
    parts.push([
      `more than ${MAX_COMMITS} commits were made in this run while the agent had its own identity: those past the first ${MAX_COMMITS} listed were not classified, and any of them may carry a human identity`,
      `review the authors of every commit since ${observed.base.slice(0, 12)} in the repository history before pushing, or have the agent make at most ${MAX_COMMITS} commits (squash them)`,
    ]);
  return new CordonError({
    what: `${who}: ${parts.map(([w]) => w).join('; and ')}`,
    why: `an agent's commits must carry its bot identity so that humans review and approve them as the agent's${unlisted ? '; a commit Cordon did not classify cannot be shown to carry it' : ''}`,
    fix: parts.map(([, f]) => f).join('; '),
    input: 'fail-on-impersonation',
  });
}

/** A bound reached, as said in an error or warning: short, its controls shown. */
function shownWhy(v: string): string {
  return visibleControls(v.length > 200 ? `${v.slice(0, 199)}…` : v);
}

/** The last line of an error: git's own (the first is the command it ran). */
function lastLine(message: string): string {
  const lines = message
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  return lines[lines.length - 1] ?? message;
}

function sameIdentity(a: CommitObserved, b: CommitObserved): boolean {
  return (
    a.author === b.author &&
    a.authorEmail === b.authorEmail &&
    a.committer === b.committer &&
    a.committerEmail === b.committerEmail
  );
}

/** What earlier lines call a commit, for the warning: their verdicts, and whom they name when impersonating. */
function recordedAs(entries: readonly CommitObserved[]): string {
  const claims = entries.map((r) =>
    r.verdict === 'impersonation' ? `impersonation by ${r.author} <${r.authorEmail}>` : String(r.verdict),
  );
  return [...new Set(claims)].join(', ').slice(0, 300);
}

/**
 * Lists the run's commits and appends `commits.observed`; a git failure warns and never stops
 * the summary. `known`: commits an earlier line records (report's, for start's post), with
 * every entry that lists them: left out of the line appended (nothing appended when no
 * other commit was made), unless this reading finds impersonation that no entry records as
 * it reads it (a line of the agent's own can call its human-authored commit the agent's, or
 * name another author: T27). Returns every commit listed, with this reading's verdicts.
 * `trusted`: the events to read the agent's identities and the start sha from, without the
 * lines the agent forged (a `token.issued` of its own naming a human's address would make
 * that human's commits its own).
 */
export function recordCommits(
  ledger: Ledger,
  runner: Runner,
  git?: GitRunner,
  opts: {
    who?: string;
    known?: ReadonlyMap<string, readonly CommitObserved[]>;
    trusted?: LedgerEvent[];
  } = {},
): CommitsObserved | undefined {
  const who = opts.who ?? 'start';
  if (!ledger.exists()) return undefined;
  // The ledger is read once: the start sha and what start saw of the workspace are in it.
  let events: LedgerEvent[] = [];
  // Start saw the recorded commit here, and the commits cannot be listed now: said so, and
  // recorded (`commits.observed` with no commits and why), never skipped quietly (T83).
  const notChecked = (why: string): CommitsObserved => {
    const sha = (events.find((x) => x.type === 'run.recorded')?.data as RunRecorded | undefined)?.sha;
    const unchecked: CommitsObserved = {
      base: typeof sha === 'string' ? sha : '',
      head: '',
      commits: [],
      unchecked: why,
    };
    try {
      ledger.append('commits.observed', { ...unchecked });
    } catch {
      // the warning below still says it
    }
    runner.warning(`${who}: the run's commits could not be checked for a human author or committer: ${why}`);
    return unchecked;
  };
  try {
    events = opts.trusted ?? ledger.events();
    const observed = observeCommits(events, { env: runner.env, git });
    if ('skipped' in observed) {
      if (observed.unchecked) return notChecked(observed.skipped);
      runner.info(`${who}: commits not listed: ${observed.skipped}`);
      return undefined;
    }
    const known = opts.known;
    // Cordon's reading of a commit as impersonation stands unless a line already records it
    // so, with the same author and committer: a line of the agent's own may call it the
    // agent's, or name someone else than the human it claims to be.
    const disputed = new Set(
      known
        ? observed.commits.filter(
            (c) =>
              c.verdict === 'impersonation' &&
              known.has(c.sha) &&
              !known.get(c.sha)?.some((r) => r.verdict === 'impersonation' && sameIdentity(r, c)),
          )
        : [],
    );
    const fresh = known
      ? observed.commits.filter((c) => !known.has(c.sha) || disputed.has(c))
      : observed.commits;
    for (const c of disputed)
      runner.warning(
        `${who}: commit ${c.sha.slice(0, 12)} is recorded in an earlier ledger line as ${recordedAs(known?.get(c.sha) ?? [])}, but it is authored by ${c.author} <${c.authorEmail}> and committed by ${c.committer} <${c.committerEmail}>: listed again as impersonating (a line that is not Cordon's, or the record of another reading)`,
      );
    if (observed.partial?.length)
      runner.warning(
        `${who}: the run's commits were looked for only in part, so some may not be listed: ${observed.partial.map(shownWhy).join('; ')}`,
      );
    if (known && !fresh.length && !observed.partial?.length) {
      runner.info(`${who}: no commit made since the report`);
      return observed;
    }
    ledger.append('commits.observed', { ...observed, commits: fresh });
    const flagged = fresh.filter((c) => c.verdict === 'impersonation').length;
    runner.info(
      `${who}: ${fresh.length} new commit(s) since ${observed.base.slice(0, 12)}, ${flagged} impersonating`,
    );
    for (const c of fresh.filter((x) => x.controlCharacters)) {
      runner.warning(
        `${who}: commit ${c.sha.slice(0, 12)} names its author or committer with a control character (shown as \\xNN); it is not the agent's identity`,
      );
    }
    for (const c of fresh.filter((x) => x.ambiguousIdentity)) {
      runner.warning(
        `${who}: commit ${c.sha.slice(0, 12)} names two addresses for its author or committer (git reads the first, GitHub may read the last); it is not the agent's`,
      );
    }
    for (const c of fresh.filter((x) => x.objectMismatch)) {
      runner.warning(
        `${who}: commit ${c.sha.slice(0, 12)} is not what git holds under its name: its object was rewritten after it was made (what was pushed may name someone else), so it is not the agent's`,
      );
    }
    for (const c of fresh.filter((x) => x.hiddenFromHistory)) {
      runner.warning(
        `${who}: commit ${c.sha.slice(0, 12)} was left out of git's history by something written into the repository (.git/shallow, a rewritten object of the history before the run) and found through the commits' own objects; it is not the agent's`,
      );
    }
    if (unclassifiedCommits(observed))
      runner.warning(
        `${who}: more than ${MAX_COMMITS} commits were made since ${observed.base.slice(0, 12)}: those past the first ${MAX_COMMITS} were not checked for a human author or committer`,
      );
    for (const c of fresh.filter((x) => x.verdict === 'impersonation' && !disputed.has(x))) {
      runner.warning(
        `${who}: commit ${c.sha.slice(0, 12)} is authored by ${c.author} <${c.authorEmail}> and committed by ${c.committer} <${c.committerEmail}>, not by the agent's identity`,
      );
    }
    return observed;
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    // Start saw the recorded commit here: git failing now (a tag naming no object, output
    // past git's bound, a history it cannot walk) is the agent's to cause after committing as
    // a human, so it is no quieter than a repository that cannot be read (unchecked).
    const run = events.find((x) => x.type === 'run.recorded')?.data as RunRecorded | undefined;
    if (run?.workspace?.shaPresent === true)
      return notChecked(`git failed while listing them (${shownWhy(lastLine(message))})`);
    runner.warning(`${who}: could not list the run's commits: ${message}`);
    return undefined;
  }
}
