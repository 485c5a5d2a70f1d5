/**
 * What the command put into git, for the leak scan and the commit attribution: every object
 * created while it ran (loose or packed, reachable or dangling) and every object reachable
 * from a ref (branches, tags, stash, notes, remote-tracking) that was not reachable from one
 * before, in the workspace's repository and in the repositories under it, the ones the
 * command made included. The object set is listed before and after (`cat-file
 * --batch-all-objects`), so only new objects are read. git runs hardened
 * (src/platform/git.ts) with `--git-dir` named, so no repository above is found instead.
 */
import { readdirSync, lstatSync } from 'node:fs';
import { join, relative } from 'node:path';
import { gitBytes } from '../../platform/git.js';
import { objectMatches, readBatch } from '../../github/commit-objects.js';

export interface GitLimits {
  /** Directory levels under the workspace searched for repositories. */
  maxDepth: number;
  /** Repositories read at most. */
  maxRepos: number;
  /** Directories visited at most while searching. */
  maxDirs: number;
  /** New objects read at most, over all repositories. */
  maxObjects: number;
  /** An object larger than this is named as not scanned. */
  maxObjectBytes: number;
  /** Bytes of new objects read at most, over all repositories. */
  maxTotalBytes: number;
  /**
   * Seconds git may run in all, in each of the snapshot, the listing after the command and
   * the reading: a FIFO the command left where git reads (`objects/info/alternates`,
   * `packed-refs`) holds every git call until it is killed.
   */
  maxSeconds: number;
}

export const GIT_LIMITS: GitLimits = {
  maxDepth: 6,
  maxRepos: 50,
  maxDirs: 100_000,
  maxObjects: 200_000,
  maxObjectBytes: 64 * 1024 * 1024,
  maxTotalBytes: 1024 * 1024 * 1024,
  maxSeconds: 600,
};

/** Commits created in the run, listed at most (the attribution's own bound). */
const MAX_CREATED_COMMITS = 1000;
/** Objects per `cat-file --batch` call, and their bytes. */
const CHUNK_OBJECTS = 5000;
const CHUNK_BYTES = 64 * 1024 * 1024;

interface Repo {
  /** Where it is, relative to the workspace ('' for the workspace itself). */
  rel: string;
  gitDir: string;
  /** When git's time for this phase is up (ms since epoch). */
  deadline?: number;
}

/** git's time for the phase was up before a call. */
class GitOutOfTime extends Error {}

function withDeadline<T extends Repo>(repos: T[], limits: GitLimits): T[] {
  const deadline = Date.now() + limits.maxSeconds * 1000;
  return repos.map((r) => ({ ...r, deadline }));
}

/** Whether git failed for want of time (its own timeout, or the phase's). */
function outOfTime(e: unknown): boolean {
  return e instanceof GitOutOfTime || (e as { code?: string }).code === 'ETIMEDOUT';
}

interface RepoBefore {
  objects: Set<string>;
  /** What every ref and HEAD pointed at. */
  tips: string[];
}

/** The repositories under the workspace and their objects, before the command. */
export interface GitSnapshot {
  repos: Map<string, RepoBefore>;
  /** Repositories git could not read before the command (by `rel`). */
  unreadable: Set<string>;
  /**
   * With the scan off: only what the attribution needs, the commits created in the
   * workspace's own repository; no repository under it, no ref tips, no reachability.
   */
  commitsOnly?: boolean;
}

export interface NewObject {
  sha: string;
  type: string;
  size: number;
  /** Its path in a tree, when it is reachable from a ref. */
  path?: string;
}

export interface RepoObjects {
  rel: string;
  gitDir: string;
  objects: NewObject[];
}

export interface GitChanges {
  repos: RepoObjects[];
  /** Commit objects created in the workspace's own repository while the command ran. */
  commitsCreated: string[];
  notScanned: string[];
}

function git(repo: Repo, args: string[], input?: string): Buffer {
  const left = (repo.deadline ?? Infinity) - Date.now();
  if (left <= 0) throw new GitOutOfTime('out of time');
  return gitBytes([`--git-dir=${repo.gitDir}`, ...args], {
    cwd: repo.gitDir,
    input,
    maxBuffer: 1024 * 1024 * 1024,
    timeoutMs: Math.min(300_000, Math.ceil(left)),
    // Nothing the configuration names runs, so a repository of the agent's user is read too.
    safeDirectory: '*',
  });
}

/**
 * The workspace's repository and those under it: a directory holding `.git` (a directory or
 * a file), or one that is itself a bare repository. Bounded in depth, directories and count.
 */
export function findRepos(
  workspace: string,
  limits: GitLimits = GIT_LIMITS,
): { repos: Repo[]; truncated: boolean } {
  const repos: Repo[] = [];
  const stack: [string, number][] = [[workspace, 0]];
  let dirs = 0;
  while (stack.length) {
    const [dir, depth] = stack.pop() as [string, number];
    if (++dirs > limits.maxDirs) return { repos, truncated: true };
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    const bare = names.includes('HEAD') && names.includes('objects') && names.includes('refs');
    if (bare || names.includes('.git')) {
      if (repos.length >= limits.maxRepos) return { repos, truncated: true };
      repos.push({ rel: relative(workspace, dir), gitDir: bare ? dir : join(dir, '.git') });
      if (bare) continue;
    }
    if (depth >= limits.maxDepth) continue;
    for (const name of names) {
      if (name === '.git') continue;
      const p = join(dir, name);
      try {
        if (lstatSync(p).isDirectory()) stack.push([p, depth + 1]);
      } catch {
        // Gone meanwhile.
      }
    }
  }
  return { repos, truncated: false };
}

/** Every object name of the repository (packed, loose, alternates): names only, which git lists without reading them. */
function allObjects(repo: Repo): Set<string> {
  const text = git(repo, ['cat-file', '--batch-all-objects', '--unordered', '--batch-check=%(objectname)']);
  return new Set(text.toString('latin1').split('\n').filter(Boolean));
}

/** Type and size of each of `shas` (missing ones left out). */
function kindsOf(repo: Repo, shas: string[]): Map<string, { type: string; size: number }> {
  const out = new Map<string, { type: string; size: number }>();
  if (!shas.length) return out;
  const text = git(
    repo,
    ['cat-file', '--batch-check=%(objectname) %(objecttype) %(objectsize)'],
    shas.join('\n') + '\n',
  ).toString('latin1');
  for (const line of text.split('\n')) {
    const [sha, type, size] = line.split(' ');
    if (sha && type && type !== 'missing') out.set(sha, { type, size: Number(size) });
  }
  return out;
}

function tips(repo: Repo): string[] {
  const refs = git(repo, ['for-each-ref', '--format=%(objectname)']).toString('latin1').split('\n');
  let head = '';
  try {
    head = git(repo, ['rev-parse', '--verify', '-q', 'HEAD']).toString('latin1').trim();
  } catch {
    // No commit yet.
  }
  return [...new Set([...refs, head].filter((s) => /^[0-9a-f]{40,64}$/.test(s)))];
}

/** The workspace's own repository only (depth 0), when only the attribution needs git. */
function reposToRead(
  workspace: string,
  limits: GitLimits,
  commitsOnly: boolean,
): ReturnType<typeof findRepos> {
  return commitsOnly
    ? findRepos(workspace, { ...limits, maxDepth: 0, maxRepos: 1 })
    : findRepos(workspace, limits);
}

/**
 * Before the command: each repository's objects and ref tips. A repository git cannot read
 * is left out. `commitsOnly` (the scan is off): the workspace's own repository's object names.
 */
export function snapshotGit(
  workspace: string,
  limits: GitLimits = GIT_LIMITS,
  opts: { commitsOnly?: boolean } = {},
): GitSnapshot {
  const commitsOnly = opts.commitsOnly === true;
  const repos = new Map<string, RepoBefore>();
  const unreadable = new Set<string>();
  for (const repo of withDeadline(reposToRead(workspace, limits, commitsOnly).repos, limits)) {
    try {
      repos.set(repo.rel, { objects: allObjects(repo), tips: commitsOnly ? [] : tips(repo) });
    } catch (e) {
      // Not a repository git reads (yet): everything in it after the command is new. One git
      // ran out of time on is not known to be unreadable: after the command, a failure is named.
      if (!outOfTime(e)) unreadable.add(repo.rel);
    }
  }
  return { repos, unreadable, commitsOnly };
}

/** Objects reachable from any ref or HEAD now and from none of `before` (sha to path). */
function newlyReachable(repo: Repo, before: string[]): Map<string, string> {
  const out = git(
    repo,
    ['rev-list', '--objects', '--all', '--ignore-missing', '--missing=allow-any', '--stdin'],
    before.map((t) => `^${t}`).join('\n') + '\n',
  ).toString('utf8');
  const paths = new Map<string, string>();
  for (const line of out.split('\n')) {
    const sp = line.indexOf(' ');
    if (sp < 0) {
      if (line) paths.set(line, '');
    } else paths.set(line.slice(0, sp), line.slice(sp + 1));
  }
  return paths;
}

/** The first line git wrote to stderr when it failed, or how it was stopped. */
function gitComplaint(e: unknown): string {
  const err = e as { stderr?: Buffer | string; code?: string; signal?: string };
  const first = String(err.stderr ?? '')
    .trim()
    .split('\n')[0];
  return first || (err.signal ? `stopped by ${err.signal}` : err.code || 'git failed');
}

/** After the command: what is new in each repository found now. */
export function gitChanges(
  workspace: string,
  before: GitSnapshot,
  limits: GitLimits = GIT_LIMITS,
): GitChanges {
  const commitsOnly = before.commitsOnly === true;
  const found = reposToRead(workspace, limits, commitsOnly);
  const notScanned: string[] = [];
  if (found.truncated)
    notScanned.push(
      `git repositories past the first ${limits.maxRepos} (or ${limits.maxDirs} directories, ${limits.maxDepth} levels)`,
    );
  const repos: RepoObjects[] = [];
  let commitsCreated: string[] = [];
  for (const repo of withDeadline(found.repos, limits)) {
    const name = repo.rel || 'the workspace repository';
    if (Date.now() >= (repo.deadline ?? Infinity)) {
      notScanned.push(`git repositories from ${name} on (past ${limits.maxSeconds} seconds of git)`);
      break;
    }
    const was = before.repos.get(repo.rel);
    let created: string[];
    try {
      created = [...allObjects(repo)].filter((sha) => !was?.objects.has(sha));
    } catch (e) {
      // Named unless git could not read it before either (something in the workspace that is no
      // repository): the command can damage a repository after putting a value into it (a HEAD
      // git refuses), and its objects are compressed, so reading its files as files finds nothing
      // (the workspace's own .git is not read as files at all).
      if (!before.unreadable.has(repo.rel) || outOfTime(e))
        notScanned.push(`${name}: git could not read its objects (${gitComplaint(e)})`);
      continue;
    }
    let reachable = new Map<string, string>();
    try {
      if (!commitsOnly) reachable = newlyReachable(repo, was?.tips ?? []);
    } catch (e) {
      notScanned.push(
        `${name}: objects reachable from its refs (${e instanceof Error ? e.message.split('\n')[0] : e})`,
      );
    }
    let kinds: Map<string, { type: string; size: number }>;
    try {
      kinds = kindsOf(repo, [...new Set([...created, ...reachable.keys()])]);
    } catch (e) {
      notScanned.push(
        `${name}: git could not read its objects (${outOfTime(e) ? `past ${limits.maxSeconds} seconds of git` : gitComplaint(e)})`,
      );
      continue;
    }
    const objects: NewObject[] = [];
    for (const [sha, kind] of kinds) {
      const path = reachable.get(sha);
      objects.push({ sha, ...kind, ...(path ? { path } : {}) });
    }
    if (repo.rel === '')
      commitsCreated = created
        .filter((sha) => kinds.get(sha)?.type === 'commit')
        .slice(0, MAX_CREATED_COMMITS);
    // Nothing is read for values with the scan off.
    if (!commitsOnly) repos.push({ rel: repo.rel, gitDir: repo.gitDir, objects });
  }
  return { repos, commitsCreated, notScanned };
}

/** How a git object is named in a report: `[repo:]path@sha` or `[repo:]type@sha`. */
export function objectLabel(rel: string, o: NewObject): string {
  return `${rel ? `${rel}:` : ''}${o.path ?? o.type}@${o.sha.slice(0, 12)}`;
}

/**
 * Reads the new objects' bytes (raw: commits, tags and trees as git stores them, without
 * zlib) and hands each to `visit`, within the limits. Returns what was not read.
 */
export function readObjects(
  changes: GitChanges,
  visit: (label: string, data: Buffer) => void,
  limits: GitLimits = GIT_LIMITS,
): string[] {
  const notScanned: string[] = [];
  let count = 0;
  let bytes = 0;
  for (const repo of withDeadline(changes.repos, limits)) {
    let chunk: NewObject[] = [];
    let chunkBytes = 0;
    /** False when git could not read the chunk: named, with every object after it (none is read). */
    const flush = (): boolean => {
      if (!chunk.length) return true;
      let out: Buffer;
      try {
        out = git(repo, ['cat-file', '--batch'], chunk.map((o) => o.sha).join('\n') + '\n');
      } catch (e) {
        notScanned.push(
          `git objects from ${objectLabel(repo.rel, chunk[0])} on (${outOfTime(e) ? `past ${limits.maxSeconds} seconds of git` : gitComplaint(e)})`,
        );
        return false;
      }
      const raw = readBatch(out, ['blob', 'commit', 'tag', 'tree']);
      for (const o of chunk) {
        const data = raw.get(o.sha);
        if (data) {
          // A pack index or multi-pack-index the command wrote can name one object's bytes
          // with another's name, and git reads them unchecked. What else reads the store
          // (publish's push, from a repository whose alternates name this one, without the
          // multi-pack-index) may find the real object, with the value, under that name.
          if (!objectMatches(o.sha, data, o.type))
            notScanned.push(
              `${objectLabel(repo.rel, o)} (the bytes git gave for it do not hash to its name: a pack index or object file was rewritten)`,
            );
          visit(objectLabel(repo.rel, o), data);
        } else notScanned.push(`${objectLabel(repo.rel, o)} (gone before it was read)`);
      }
      chunk = [];
      chunkBytes = 0;
      return true;
    };
    for (const o of repo.objects) {
      if (o.size > limits.maxObjectBytes) {
        notScanned.push(`${objectLabel(repo.rel, o)} (over ${limits.maxObjectBytes} bytes)`);
        continue;
      }
      if (++count > limits.maxObjects || bytes + o.size > limits.maxTotalBytes) {
        notScanned.push(
          `git objects past the first ${limits.maxObjects} or ${limits.maxTotalBytes} bytes (from ${objectLabel(repo.rel, o)} on)`,
        );
        flush();
        return notScanned;
      }
      bytes += o.size;
      if ((chunk.length >= CHUNK_OBJECTS || chunkBytes + o.size > CHUNK_BYTES) && !flush()) return notScanned;
      chunk.push(o);
      chunkBytes += o.size;
    }
    if (!flush()) return notScanned;
  }
  return notScanned;
}
