/**
 * Commit attribution for `start`'s post step: every commit made since the sha recorded at
 * start (on HEAD, local branches, tags written in the run, every ref update the reflogs hold
 * from the run, pushed refs, every commit object a `run` step saw created, reachable or not), who wrote it, who committed it, its co-authors and whether it
 * is signed, and a verdict. An agent never commits as a developer: with an agent identity
 * issued in the run, a commit whose author or committer is anyone else is impersonation.
 *
 * git runs hardened (src/platform/git.ts): the agent could write the repository's config.
 * Commits are read raw (`cat-file --batch`, length-prefixed), so no byte in a name or a
 * message can shift a field.
 */
import { createHash } from 'node:crypto';
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  openSync,
  readSync,
  statSync,
  type Stats,
} from 'node:fs';
import { join } from 'node:path';
import { gitBytes } from '../platform/git.js';
import { walkFiles } from '../platform/walk.js';
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

/**
 * Most commits listed and classified; a run that makes more is cut, and with an identity issued
 * the rest count as unproven: all of them would make a ledger line as large as the agent likes.
 */
export const MAX_COMMITS = 1000;

/** GitHub's own committer on commits made through the API or the web (web-flow). */
const WEB_FLOW_EMAIL = 'noreply@github.com';

/** Runs git in `cwd` (with `input` on its stdin); its stdout. Throws when git fails. */
export type GitRunner = (args: string[], cwd: string, input?: string) => Buffer;

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

/** C0 and C1 control characters and DEL: no real name or address holds one. */
function isControl(code: number): boolean {
  return code < 0x20 || (code >= 0x7f && code <= 0x9f);
}

function hasControl(v: string): boolean {
  return [...v].some((ch) => isControl(ch.charCodeAt(0)));
}

/** A value with its control characters shown as `\xNN`, so none is hidden or acts in the summary. */
function visible(v: string): string {
  return [...v]
    .map((ch) => (isControl(ch.charCodeAt(0)) ? `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}` : ch))
    .join('');
}

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

/**
 * Bounds on what is read to find the run's commits, every one the agent's to reach: refs
 * listed under `refs/tags` or `refs/remotes`, entries visited under each part of
 * `.git/logs/refs`, reflog files read (of those changed since start), bytes of one reflog
 * and of all, distinct commits the reflogs name. What is filtered (tags not written in the
 * run, reflogs not changed in it, remote-tracking refs no push moved) is filtered before
 * it is counted; a bound reached is said (`partial`), never a shorter list alone.
 */
const MAX_REFS_LISTED = 100_000;
/** Most tags and pushed refs named in `commits.observed`: every one is walked from. */
const MAX_REFS_NAMED = 200;
const MAX_LOG_ENTRIES = 100_000;
const MAX_REFLOGS = 10_000;
/** A reflog file larger than this is read from its end (its newest entries) up to it. */
const MAX_REFLOG_BYTES = 16 * 1024 * 1024;
const MAX_REFLOGS_BYTES = 64 * 1024 * 1024;
const MAX_REFLOG_SHAS = 200_000;

function text(git: GitRunner, args: string[], cwd: string, input?: string): string {
  return git(args, cwd, input).toString('utf8');
}

/** A name the agent chose (a ref, a path), short and with its control characters shown. */
function named(v: string): string {
  const s = visible(v);
  return s.length > 120 ? `${s.slice(0, 119)}…` : s;
}

/** `for-each-ref` of `prefix`: `[objectname, refname]`, at most MAX_REFS_LISTED, and whether there were more. */
function refsUnder(git: GitRunner, cwd: string, prefix: string): { refs: [string, string][]; more: boolean } {
  const lines = text(
    git,
    ['for-each-ref', '--format=%(objectname) %(refname)', `--count=${MAX_REFS_LISTED + 1}`, prefix],
    cwd,
  )
    .split('\n')
    .filter((l) => l !== '');
  const refs = lines.slice(0, MAX_REFS_LISTED).flatMap((l): [string, string][] => {
    const sp = l.indexOf(' ');
    return sp > 0 ? [[l.slice(0, sp), l.slice(sp + 1)]] : [];
  });
  return { refs, more: lines.length > MAX_REFS_LISTED };
}

/** Refs found, with the objects they point at (what the walk starts from) and the bounds reached. */
export interface RefsFound {
  refs: string[];
  objects: string[];
  partial: string[];
}

/**
 * Remote-tracking refs a push from this workspace moved: git logs `update by push` in the
 * ref's reflog (`pushed`, from readReflogs). A commit pushed and then dropped locally is
 * still found through them.
 */
export function pushedRefs(git: GitRunner, cwd: string, pushed: ReadonlySet<string>): RefsFound {
  const { refs, more } = refsUnder(git, cwd, 'refs/remotes');
  const moved = refs.filter(([, r]) => !r.endsWith('/HEAD') && pushed.has(r));
  return {
    refs: moved.map(([, r]) => r),
    objects: moved.map(([o]) => o),
    partial: more ? [`more than ${MAX_REFS_LISTED} remote-tracking refs: those past them were not read`] : [],
  };
}

/** What the reflogs hold from the run: the commits they name, and the remote-tracking refs a push moved. */
export interface Reflogs {
  updates: string[];
  pushed: Set<string>;
  partial: string[];
}

/** Reads up to `max` bytes from the end of a regular file, opened without following a link or blocking. */
function tail(file: string, max: number): { body: string; size: number; read: number } | undefined {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return undefined;
    const n = Math.max(0, Math.min(st.size, max));
    const buf = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
      const r = readSync(fd, buf, got, n - got, st.size - n + got);
      if (r <= 0) break;
      got += r;
    }
    let body = buf.subarray(0, got).toString('utf8');
    // Started inside a line: that line is not whole.
    if (n < st.size) body = body.slice(body.indexOf('\n') + 1);
    return { body, size: st.size, read: got };
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * Every ref update the reflogs hold from `since` (seconds) on: commits made and then reset
 * away, amended, stashed, or on a branch deleted since (HEAD's reflog keeps them). A fetch
 * into a remote-tracking ref brings other people's commits: only pushes count there.
 * HEAD's reflog is read first, then the stash's, the local branches', the remote-tracking
 * refs' and the other refs'; only reflog files changed since `since` (ctime, which no
 * process sets back) are read, so reflogs from before the run do not count toward the bounds.
 */
export function readReflogs(gitDir: string, since: number): Reflogs {
  const logs = join(gitDir, 'logs');
  const partial: string[] = [];
  const changed = (st: Stats): boolean => st.ctimeMs >= since * 1000;
  const files: string[] = [];
  for (const f of [join(logs, 'HEAD'), join(logs, 'refs', 'stash')]) {
    try {
      const st = lstatSync(f);
      if (st.isFile() && changed(st)) files.push(f);
    } catch {
      // none
    }
  }
  const own = new Set(['heads', 'remotes', 'stash']);
  for (const [dir, skip] of [
    [join(logs, 'refs', 'heads'), undefined],
    [join(logs, 'refs', 'remotes'), undefined],
    [join(logs, 'refs'), (d: string, name: string) => d === join(logs, 'refs') && own.has(name)],
  ] as const) {
    const walked = walkFiles(dir, { limit: MAX_LOG_ENTRIES, keep: (_, st) => changed(st), skip });
    files.push(...walked.files);
    if (walked.truncated)
      partial.push(
        `${named(dir.slice(gitDir.length + 1))} holds more than ${MAX_LOG_ENTRIES} entries: reflogs past them were not read`,
      );
  }
  if (files.length > MAX_REFLOGS)
    partial.push(
      `${files.length} reflogs changed in the run: those past the first ${MAX_REFLOGS} were not read`,
    );
  const out = new Set<string>();
  const pushed = new Set<string>();
  let budget = MAX_REFLOGS_BYTES;
  for (const file of files.slice(0, MAX_REFLOGS)) {
    if (budget <= 0) {
      partial.push(
        `the reflogs changed in the run hold more than ${MAX_REFLOGS_BYTES} bytes: those past them were not read`,
      );
      break;
    }
    const ref = file.slice(logs.length + 1);
    const read = tail(file, Math.min(MAX_REFLOG_BYTES, budget));
    if (!read) continue;
    budget -= read.read;
    if (read.read < read.size)
      partial.push(
        `the reflog ${named(`logs/${ref}`)} is ${read.size} bytes: only its last ${read.read} were read`,
      );
    const remote = ref.startsWith('refs/remotes/');
    for (const line of read.body.split('\n')) {
      const tab = line.indexOf('\t');
      const head = (tab < 0 ? line : line.slice(0, tab)).split(' ');
      const message = tab < 0 ? '' : line.slice(tab + 1);
      if (remote && message.startsWith('update by push')) pushed.add(ref);
      const sha = head[1] ?? '';
      const time = Number(head[head.length - 2]);
      if (!/^[0-9a-f]{40,64}$/.test(sha) || /^0+$/.test(sha) || !(time >= since)) continue;
      if (remote && !message.startsWith('update by push')) continue;
      if (out.size >= MAX_REFLOG_SHAS) {
        partial.push(
          `the reflogs name more than ${MAX_REFLOG_SHAS} commits since start: those past them were not read`,
        );
        return { updates: [...out], pushed, partial };
      }
      out.add(sha);
    }
  }
  return { updates: [...out], pushed, partial };
}

/** The commits readReflogs finds. */
export function reflogUpdates(gitDir: string, since: number): string[] {
  return readReflogs(gitDir, since).updates;
}

/**
 * Tags written in the run (tags have no reflog): a loose tag whose file changed since `since`
 * (ctime, which no process sets back), or every tag when the packed refs changed.
 */
export function tagsWritten(git: GitRunner, cwd: string, gitDir: string, since: number): RefsFound {
  const changed = (p: string): boolean => {
    try {
      return lstatSync(p).ctimeMs >= since * 1000;
    } catch {
      return false;
    }
  };
  const all = changed(join(gitDir, 'packed-refs'));
  const { refs, more } = refsUnder(git, cwd, 'refs/tags');
  const written = refs.filter(([, r]) => r.startsWith('refs/tags/') && (all || changed(join(gitDir, r))));
  return {
    refs: written.map(([, r]) => r),
    objects: written.map(([o]) => o),
    partial: more ? [`more than ${MAX_REFS_LISTED} tags: those past them were not read`] : [],
  };
}

/** Of `shas`, those that name a commit or a tag in the repository (reflogs may name pruned ones). */
function commitish(git: GitRunner, cwd: string, shas: string[]): string[] {
  if (!shas.length) return [];
  return text(git, ['cat-file', '--batch-check=%(objectname) %(objecttype)'], cwd, shas.join('\n') + '\n')
    .split('\n')
    .map((l) => l.split(' '))
    .filter(([, type]) => type === 'commit' || type === 'tag')
    .map(([sha]) => sha);
}

interface RawCommit {
  author: string;
  authorEmail: string;
  committer: string;
  committerEmail: string;
  signed: boolean;
  message: string;
  /** The `parent` headers, in order. */
  parents: string[];
  /**
   * The author or committer line holds more than one `<` or `>`: git reads the first
   * `<...>` as the address, libgit2 (what GitHub reads commits with) the last. git never
   * writes such a line; whose commit it is depends on who reads it.
   */
  ambiguous: boolean;
}

/** `Name <email> time tz` as git splits it: the first `<`, the first `>` after it. */
function ident(line: string): [string, string] {
  const lt = line.indexOf('<');
  if (lt < 0) return [line.trim(), ''];
  const gt = line.indexOf('>', lt + 1);
  return [line.slice(0, lt).trim(), line.slice(lt + 1, gt < 0 ? line.length : gt)];
}

/** A raw commit object: its first author and committer headers, a signature header, the message. */
export function parseCommit(raw: Buffer): RawCommit {
  const end = raw.indexOf('\n\n');
  const headers = raw
    .subarray(0, end < 0 ? raw.length : end)
    .toString('utf8')
    .split('\n');
  const message = end < 0 ? '' : raw.subarray(end + 2).toString('utf8');
  let author: [string, string] | undefined;
  let committer: [string, string] | undefined;
  let signed = false;
  let ambiguous = false;
  const parents: string[] = [];
  const twice = (line: string): boolean => line.split('<').length > 2 || line.split('>').length > 2;
  for (const h of headers) {
    if (h.startsWith(' ')) continue;
    if (!author && !committer && h.startsWith('parent ')) parents.push(h.slice(7).trim());
    else if (!author && h.startsWith('author ')) {
      author = ident(h.slice(7));
      ambiguous ||= twice(h);
    } else if (!committer && h.startsWith('committer ')) {
      committer = ident(h.slice(10));
      ambiguous ||= twice(h);
    } else if (h.startsWith('gpgsig ') || h.startsWith('gpgsig-sha256 ')) signed = true;
  }
  return {
    author: author?.[0] ?? '',
    authorEmail: author?.[1] ?? '',
    committer: committer?.[0] ?? '',
    committerEmail: committer?.[1] ?? '',
    signed,
    message,
    ambiguous,
    parents,
  };
}

/**
 * `cat-file --batch` output: `<sha> <type> <size>\n<size bytes>\n` per object, read by length;
 * the objects of the types in `types`.
 */
export function readBatch(out: Buffer, types: readonly string[] = ['commit']): Map<string, Buffer> {
  const objects = new Map<string, Buffer>();
  let at = 0;
  while (at < out.length) {
    const nl = out.indexOf(10, at);
    if (nl < 0) break;
    const [sha, type, size] = out.subarray(at, nl).toString('utf8').split(' ');
    const n = Number(size);
    if (type === undefined || !Number.isInteger(n)) {
      at = nl + 1; // `<sha> missing`
      continue;
    }
    if (types.includes(type)) objects.set(sha, out.subarray(nl + 1, nl + 1 + n));
    at = nl + 1 + n + 1;
  }
  return objects;
}

/**
 * Whether `raw` is the commit object `sha` names: git hashes `commit <size>\0<content>`
 * (SHA-1, or SHA-256 for a 64-digit name). git reads a loose or packed object without
 * checking that, so an object file rewritten in place (the agent pushes its human-authored
 * commit, then writes the bot's identity into the same file) is read as it now says.
 */
export function objectMatches(sha: string, raw: Buffer): boolean {
  const h = createHash(sha.length === 64 ? 'sha256' : 'sha1');
  h.update(`commit ${raw.length}\0`);
  h.update(raw);
  return h.digest('hex') === sha.toLowerCase();
}

/** A commit object larger than this is not read, and named as not read (`partial`): a message is the agent's to size. */
const MAX_COMMIT_BYTES = 1024 * 1024;
/** Most bytes of objects one `cat-file --batch` is asked for (git's output is bounded). */
const BATCH_BYTES = 16 * 1024 * 1024;

/**
 * The commit objects of `shas` (raw), read in batches of bounded size; one larger than
 * MAX_COMMIT_BYTES is not read but put in `large` with its size. A missing one is left out.
 */
function readCommits(
  git: GitRunner,
  cwd: string,
  shas: readonly string[],
  large: Map<string, number>,
): Map<string, Buffer> {
  const objects = new Map<string, Buffer>();
  if (!shas.length) return objects;
  const sized = text(
    git,
    ['cat-file', '--batch-check=%(objectname) %(objecttype) %(objectsize)'],
    cwd,
    shas.join('\n') + '\n',
  )
    .split('\n')
    .map((l) => l.split(' '))
    .filter(([sha, type]) => type === 'commit' && /^[0-9a-f]{40,64}$/.test(sha));
  let chunk: string[] = [];
  let bytes = 0;
  const flush = (): void => {
    if (!chunk.length) return;
    for (const [sha, obj] of readBatch(git(['cat-file', '--batch'], cwd, chunk.join('\n') + '\n')))
      objects.set(sha, obj);
    chunk = [];
    bytes = 0;
  };
  for (const [sha, , size] of sized) {
    const n = Number(size);
    if (!(n <= MAX_COMMIT_BYTES)) {
      large.set(sha, n);
      continue;
    }
    if (bytes + n > BATCH_BYTES) flush();
    chunk.push(sha);
    bytes += n;
  }
  flush();
  return objects;
}

/** git's subject: the first paragraph's lines joined by a space. */
function subjectOf(message: string): string {
  const lines = message.replace(/^\n+/, '').split('\n');
  const para: string[] = [];
  for (const l of lines) {
    if (l.trim() === '') break;
    para.push(l.trim());
  }
  return para.join(' ');
}

/** Commits of the recorded sha's history read first, and at most, to confirm what git left out. */
const FIRST_HISTORY = 1000;
const MAX_HISTORY = 100_000;

/**
 * The commits of `base`'s history (its first `limit` as git walks it) joined to `base` by
 * objects that hash to their names. git takes a commit's parents from whatever holds its
 * name (a rewritten object, `.git/shallow`); an object checked here says what the commit did.
 */
function verifiedHistory(
  git: GitRunner,
  cwd: string,
  base: string,
  limit: number,
): { known: Set<string>; complete: boolean } {
  const walked = text(git, ['rev-list', `--max-count=${limit}`, base], cwd)
    .split('\n')
    .filter((l) => /^[0-9a-f]{40,64}$/.test(l));
  // A commit of the history too large to read is not confirmed: walked from, it is named.
  const objects = readCommits(git, cwd, walked, new Map());
  const parents = new Map<string, string[]>();
  for (const sha of walked) {
    const obj = objects.get(sha);
    if (obj && objectMatches(sha, obj)) parents.set(sha, parseCommit(obj).parents);
  }
  const known = new Set<string>();
  const queue = [base];
  while (queue.length) {
    const sha = queue.pop() as string;
    const up = parents.get(sha);
    if (known.has(sha) || !up) continue;
    known.add(sha);
    queue.push(...up);
  }
  return { known, complete: walked.length < limit };
}

/**
 * Of `candidates` (commits git did not list: the tips, the parents of listed commits), those
 * not confirmed to be in `base`'s history: git left them out only because something the agent
 * wrote said they were. The history is read further only while some are unconfirmed.
 */
function unconfirmed(
  git: GitRunner,
  cwd: string,
  base: string,
  candidates: string[],
): { left: string[]; known: Set<string> } {
  let limit = FIRST_HISTORY;
  for (;;) {
    let h: { known: Set<string>; complete: boolean };
    try {
      h = verifiedHistory(git, cwd, base, limit);
    } catch {
      h = { known: new Set(), complete: true };
    }
    const left = candidates.filter((c) => !h.known.has(c));
    if (!left.length || h.complete || limit >= MAX_HISTORY) return { left, known: h.known };
    limit = Math.min(limit * 8, MAX_HISTORY);
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
): Map<string, Buffer> {
  const found = new Map<string, Buffer>();
  let frontier = [...new Set(start)];
  while (frontier.length && found.size < budget) {
    const objects = readCommits(git, cwd, frontier, large);
    const next = new Set<string>();
    for (const sha of frontier) {
      const obj = objects.get(sha);
      if (!obj || found.size >= budget) continue;
      found.set(sha, obj);
      for (const p of parseCommit(obj).parents) if (!stop(p) && !found.has(p)) next.add(p);
    }
    frontier = [...next].filter((sha) => !found.has(sha));
  }
  return found;
}

export interface ObserveOptions {
  env: Env;
  git?: GitRunner;
}

/** The git directory's device and inode: another directory put in its place has others. */
function dirId(gitDir: string): string {
  const st = statSync(gitDir);
  return `${st.dev}:${st.ino}`;
}

/**
 * What `start`'s main sees of the workspace repository: whether the sha it records is a
 * commit there, and which directory is its `.git`. The post tells from it whether a
 * repository it cannot read is one the agent changed (a warning) or one there never was.
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
  try {
    return { shaPresent, gitDirId: dirId(gitDir) };
  } catch {
    return { shaPresent };
  }
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
  const since = Math.floor((recorded ? Date.parse(recorded.time) : 0) / 1000) - 60;
  const reflogs = readReflogs(gitDir, since);
  const pushed = pushedRefs(git, cwd, reflogs.pushed);
  const tags = tagsWritten(git, cwd, gitDir, since);
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
    const parents = [...raw.values()].flatMap((obj) => parseCommit(obj).parents);
    const candidates = commitish(
      git,
      cwd,
      [...new Set([...tips, ...parents])].filter((sha) => sha !== base && !inList.has(sha)),
    );
    if (candidates.length) {
      const { left, known } = unconfirmed(git, cwd, base, candidates);
      const found = walkHidden(
        git,
        cwd,
        left,
        (sha) => sha === base || inList.has(sha) || known.has(sha),
        MAX_COMMITS + 1 - shas.length,
        large,
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
    const p = parseCommit(obj);
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
