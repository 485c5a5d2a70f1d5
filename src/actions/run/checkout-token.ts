/**
 * The checkout token `actions/checkout` leaves in the workspace's `.git/config` (and the
 * config files it includes): taken out while the command runs and put back after, by a new
 * file renamed over the old, never on a command line.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  existsSync,
  fchmodSync,
  fchownSync,
  fstatSync,
  fsyncSync,
  lstatSync,
  openSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { git } from '../../platform/git.js';
import { readRegularFile } from '../../platform/regular-file.js';
import { walkFiles } from '../../platform/walk.js';
import { NO_REPOSITORY } from './home.js';

export interface WithheldEntry {
  key: string;
  values: string[];
}

export interface CheckoutToken {
  /** What was taken out, as `<file>:<key>` (`.git/config:<key>` for the workspace's own). */
  withheld: string[];
  /** Secret values in them (the header, the token inside it) to mask and scrub. */
  secrets: string[];
  /** Puts the entries back; returns false when a file is gone or git refused. */
  restore(): boolean;
}

function gitFile(file: string, args: string[]): string {
  // Run outside the workspace: `--file` reads that file only, and no repository is discovered.
  return git(['config', '--file', file, ...args], { cwd: NO_REPOSITORY, timeoutMs: 5000 });
}

function configEntries(file: string, pattern: string): WithheldEntry[] {
  let out: string;
  try {
    out = gitFile(file, ['--null', '--get-regexp', pattern]);
  } catch {
    return [];
  }
  const byKey = new Map<string, string[]>();
  for (const rec of out.split('\0').filter(Boolean)) {
    const nl = rec.indexOf('\n');
    const key = nl < 0 ? rec : rec.slice(0, nl);
    const value = nl < 0 ? '' : rec.slice(nl + 1);
    byKey.set(key, [...(byKey.get(key) ?? []), value]);
  }
  return [...byKey].map(([key, values]) => ({ key, values }));
}

const AUTH = /authorization:\s*(basic|bearer|token)\s+(\S+)/i;

function secretsIn(value: string): string[] {
  const m = AUTH.exec(value);
  if (!m) return [];
  const out = [value, m[2]];
  if (m[1].toLowerCase() === 'basic') {
    const decoded = Buffer.from(m[2], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon >= 0) out.push(decoded, decoded.slice(colon + 1));
  }
  return out.filter((v) => v.length >= 8);
}
/** Entries taken out of one config file, and the file as it was (to put them back only into it). */
interface TakenFrom {
  file: string;
  label: string;
  owner: Stats;
  entries: WithheldEntry[];
  /** The real path of its folder when taken: a folder above swapped for a link is refused. */
  dir: string;
  /** The file's bytes before the entries were taken out, and right after. */
  before?: Buffer;
  after?: Buffer;
}

/** The bytes of a regular file, read without following a link; undefined when that fails. */
function fileBytes(file: string): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    return fstatSync(fd).isFile() ? readFileSync(fd) : undefined;
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * Replaces `file` with a new file holding `data`, owned and moded as `like`: written beside
 * it (O_EXCL, never through a link) and renamed over it, as git does. Never in place: a hard
 * link the command made to the file (its owner the runner's again once the workspace is
 * handed back) would get the token too, and a file cut short by a failure would lose the
 * rest of the config.
 */
function replaceFile(file: string, data: Buffer, like: Stats): void {
  const tmp = join(dirname(file), `.${basename(file)}.cordon-${randomBytes(6).toString('hex')}`);
  const fd = openSync(
    tmp,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o600,
  );
  try {
    try {
      if (process.getuid?.() !== like.uid || process.getgid?.() !== like.gid)
        fchownSync(fd, like.uid, like.gid);
      fchmodSync(fd, like.mode & 0o777);
      writeSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** A value or subsection in git config's double quotes (`\\`, `\"`, and `\n`/`\t` in values). */
function quoted(v: string): string {
  return `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n').replace(/\t/g, '\\t')}"`;
}

/**
 * `entries` as git config text, a section header for each: the key `http.<url>.extraheader`
 * as git lists it (section and name lower-cased, the subsection as written) is split at its
 * first and last dots.
 */
function configText(entries: WithheldEntry[]): string {
  let out = '';
  for (const e of entries) {
    const first = e.key.indexOf('.');
    const last = e.key.lastIndexOf('.');
    const section = e.key.slice(0, first);
    const name = e.key.slice(last + 1);
    const head = last > first ? `[${section} ${quoted(e.key.slice(first + 1, last))}]` : `[${section}]`;
    out += `${head}\n${e.values.map((v) => `\t${name} = ${quoted(v)}\n`).join('')}`;
  }
  return out;
}

function headerEntries(file: string): { entries: WithheldEntry[]; secrets: string[] } {
  const entries: WithheldEntry[] = [];
  const secrets: string[] = [];
  for (const e of configEntries(file, '^http\\..*\\.extraheader$')) {
    const s = e.values.flatMap(secretsIn);
    if (s.length) {
      entries.push(e);
      secrets.push(...s);
    }
  }
  return { entries, secrets };
}

/** Puts `t`'s entries back, only into the regular file they came from, owned as it was. */
function putBack(t: TakenFrom): boolean {
  // git follows a link the command planted, and would write the token wherever it points.
  let now: Stats;
  try {
    now = lstatSync(t.file);
  } catch {
    return false;
  }
  if (!now.isFile() || now.uid !== t.owner.uid || (now.mode & ~t.owner.mode & 0o022) !== 0) return false;
  // lstat looks at the last name only: a folder above it (`.git/modules/<name>`, or
  // RUNNER_TEMP) swapped for a link would send the token into another folder's `config`.
  try {
    if (realpathSync(dirname(t.file)) !== t.dir) return false;
  } catch {
    return false;
  }
  // The values go into the file, never onto git's command line, where every process on the
  // runner could read the token in /proc/<pid>/cmdline while git ran. The file as it was
  // right after they were taken out (gitguard puts .git/config back so): its bytes before.
  const bytes = fileBytes(t.file);
  try {
    if (bytes && t.before && t.after?.equals(bytes)) {
      replaceFile(t.file, t.before, t.owner);
      return true;
    }
  } catch {
    return false;
  }
  for (const e of t.entries) {
    try {
      gitFile(t.file, ['--unset-all', e.key]);
    } catch {
      // Nothing to unset: the command did not put any back.
    }
  }
  try {
    const rest = fileBytes(t.file);
    if (!rest) return false;
    const nl = rest.length && rest[rest.length - 1] !== 10 ? '\n' : '';
    replaceFile(t.file, Buffer.concat([rest, Buffer.from(nl + configText(t.entries), 'utf8')]), t.owner);
    return true;
  } catch {
    return false;
  }
}

/**
 * The workspace's git configuration files: its own, then each submodule's under
 * `.git/modules` (checkout v4 and v5 with `submodules: true` put the header there too),
 * found without following a link; bounded like the rest of the workspace's walks.
 */
function configFiles(gitDir: string): string[] {
  const modules = walkFiles(join(gitDir, 'modules'), {
    limit: 100000,
    skip: (_dir, name) => ['objects', 'refs', 'logs', 'hooks', 'info'].includes(name),
    keep: (p) => basename(p) === 'config',
  });
  return [join(gitDir, 'config'), ...modules.files.sort()];
}

/** An included config file read for the checkout token at most: far above checkout's few lines. */
const MAX_INCLUDE_BYTES = 1024 * 1024;

/**
 * Finds credentials `actions/checkout` persisted for the workspace and takes them out while
 * the command runs: an `http.<url>.extraheader` with an Authorization header in
 * `.git/config` or a submodule's config (checkout v4, v5), or in a file one includes (v6 writes
 * `$RUNNER_TEMP/git-credentials-<uuid>.config`, 0644, where the command could `cat` it
 * whatever `.git/config` says). An included file is edited only when it is a regular file
 * of `.git/config`'s owner; otherwise its include is taken out instead, which hides the
 * path but leaves the file. `git config --file` reads that file only: no repository
 * discovery, no hooks, nothing of the workspace's runs.
 */
export function withholdCheckoutToken(workspace: string): CheckoutToken | undefined {
  const gitDir = join(workspace, '.git');
  if (!existsSync(join(gitDir, 'config'))) return undefined;
  const secrets: string[] = [];
  const taken: TakenFrom[] = [];
  const seen = new Set<string>();
  for (const file of configFiles(gitDir)) {
    const owner = lstatSync(file);
    const own = headerEntries(file);
    secrets.push(...own.secrets);
    const includes: WithheldEntry[] = [];
    for (const e of configEntries(file, '^include(if\\..*)?\\.path$')) {
      for (const target of e.values) {
        const p = target.startsWith('~/') || !isAbsolute(target) ? resolve(dirname(file), target) : target;
        if (seen.has(p)) continue;
        seen.add(p);
        let st: Stats;
        let text = '';
        try {
          st = lstatSync(p);
          // The path is the config's, and a submodule's config is the last agent's (T43): a
          // FIFO there would hold this step, /dev/zero fill its memory. A regular file only.
          text = readRegularFile(p, {
            reader: 'run',
            maxBytes: MAX_INCLUDE_BYTES,
            expected: 'a git config file',
          });
        } catch {
          continue;
        }
        if (!/extraheader/i.test(text)) continue;
        const held = headerEntries(p);
        if (!held.entries.length) continue;
        secrets.push(...held.secrets);
        if (st.isFile() && st.uid === owner.uid)
          taken.push({ file: p, label: p, owner: st, entries: held.entries, dir: realpathSync(dirname(p)) });
        else if (!includes.includes(e)) includes.push(e);
      }
    }
    const entries = [...own.entries, ...includes];
    if (entries.length)
      taken.push({
        file,
        label: relative(workspace, file),
        owner,
        entries,
        dir: realpathSync(dirname(file)),
      });
  }
  if (!taken.length) return undefined;
  // Taken out file by file; a failure part way (a stale lock) puts back what was taken and
  // fails, rather than leaving the token out of the files for the rest of the job.
  for (let i = 0; i < taken.length; i++) {
    try {
      taken[i].before = fileBytes(taken[i].file);
      for (const e of taken[i].entries) gitFile(taken[i].file, ['--unset-all', e.key]);
      taken[i].after = fileBytes(taken[i].file);
    } catch (e) {
      for (const t of taken.slice(0, i + 1)) putBack(t);
      throw e;
    }
  }
  let restored: boolean | undefined;
  // Put back when run exits, also when it fails before the command ends.
  const onExit = (): void => {
    if (restored === undefined) token.restore();
  };
  process.once('exit', onExit);
  const token: CheckoutToken = {
    withheld: taken.flatMap((t) => t.entries.map((e) => `${t.label}:${e.key}`)),
    secrets: [...new Set(secrets)],
    restore() {
      if (restored !== undefined) return restored;
      process.removeListener('exit', onExit);
      restored = taken.map(putBack).every(Boolean);
      return restored;
    },
  };
  return token;
}
