/** Data of `commits.observed`: the commits found in the run, each classified (src/github/commits.ts). */
export interface CommitObserved {
  sha: string;
  author: string;
  authorEmail: string;
  committer: string;
  committerEmail: string;
  coAuthors: string[];
  /** `signed, not verified by Cordon` or `unsigned`: Cordon runs no verifier the agent could have configured. */
  signature: string;
  subject: string;
  /** The author or committer holds a control character (shown as `\xNN`): never the agent's identity. */
  controlCharacters?: boolean;
  /**
   * The object git holds under this name does not hash to it: rewritten in place (the agent's
   * real commit pushed first), so what it says of the author is not the commit's. Never the agent's.
   */
  objectMismatch?: boolean;
  /** The author or committer names two addresses, read one way by git and another by GitHub: never the agent's. */
  ambiguousIdentity?: boolean;
  /**
   * git's walk from the refs left it out: something the agent wrote (`.git/shallow`, an
   * object of the recorded history rewritten to claim it as a parent) hid it, and it was
   * found by reading the commits' own objects. Never the agent's.
   */
  hiddenFromHistory?: boolean;
  verdict: 'agent' | 'impersonation' | 'unattributed' | 'human';
}

export interface CommitsObserved {
  base: string;
  head: string;
  commits: CommitObserved[];
  /** More commits were made than listed. */
  truncated?: boolean;
  /** Remote-tracking refs a push from the workspace moved (the first 200 named); their new commits are listed too. */
  pushedRefs?: string[];
  /** Tags written in the run (the first 200 named); their new commits are listed too. */
  tags?: string[];
  /**
   * Bounds reached while looking for the run's commits (refs, reflog files, a reflog's
   * size): what was not read. A commit only that held is not listed.
   */
  partial?: string[];
  /**
   * Why no commit could be listed though start saw the recorded commit in the workspace
   * repository: it was deleted, or the repository replaced or made unreadable since.
   */
  unchecked?: string;
}

/**
 * Whether commits went unlisted while the agent had an identity of its own: those were never
 * classified, so none of them can be shown to be the agent's, and a human-authored one can
 * hide behind the bot's. With an identity every listed commit is the agent's or impersonation.
 */
export function unclassifiedCommits(observed: CommitsObserved): boolean {
  return observed.truncated === true && observed.commits.some((c) => c.verdict !== 'unattributed');
}

/**
 * Every commit the `commits.observed` lines list, once each, in the order first listed. A
 * commit listed more than once is shown as the last entry that calls it `impersonation`,
 * over any other: a line that calls it the agent's, or names another author, may be the
 * agent's own (T27), and Cordon's later reading of the commit lists it again when it
 * disagrees (recordCommits).
 */
export function commitsListed(observed: readonly { commits: readonly CommitObserved[] }[]): CommitObserved[] {
  const bySha = new Map<string, CommitObserved>();
  for (const o of observed)
    for (const c of o.commits) if (!bySha.has(c.sha) || c.verdict === 'impersonation') bySha.set(c.sha, c);
  return [...bySha.values()];
}
