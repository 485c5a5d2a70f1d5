/**
 * cron and at run a job long after the command that registered it: a crontab line of the
 * agent's would run every minute as long as its user exists, and atd runs a job as the uid
 * that owns the job file, which a later agent may be given. While the agent's user exists
 * it is named in /etc/cron.deny and /etc/at.deny (where the tool is installed); before the
 * user is deleted root removes its crontab and at jobs from the spools; once it is deleted
 * the deny files are put back as they were. All file work is done by root, never through a
 * link.
 */
import {
  closeSync,
  constants,
  existsSync,
  fchmodSync,
  fchownSync,
  fstatSync,
  lstatSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname } from 'node:path';
import { CordonError, describeError } from '../platform/errors.js';
import { DIR_FLAGS, openDirBeneath } from '../platform/dir-fd.js';

export type SchedulerTool = 'cron' | 'at';

export interface Scheduler {
  tool: SchedulerTool;
  /** Where its user command is installed; none there: the tool is not, and nothing is done. */
  commands: readonly string[];
  /** When it exists only the users it names may use the tool, and the deny file is not read. */
  allow: string;
  deny: string;
  /**
   * With neither file, only root may use the tool (at), or everyone may (Debian's cron). A
   * deny file made for the agent where only root could would let every other user, the
   * runner's among them, schedule jobs while the agent runs: none is made.
   */
  neitherFile: 'root only' | 'everyone';
}

export const SCHEDULERS: readonly Scheduler[] = [
  {
    tool: 'cron',
    commands: ['/usr/bin/crontab'],
    allow: '/etc/cron.allow',
    deny: '/etc/cron.deny',
    neitherFile: 'everyone',
  },
  {
    tool: 'at',
    commands: ['/usr/bin/at'],
    allow: '/etc/at.allow',
    deny: '/etc/at.deny',
    neitherFile: 'root only',
  },
];

/**
 * The spools a job of the agent's can be in: Debian's and Ubuntu's cron and at, and
 * cronie's and at's elsewhere. In a crontab spool the file named after the user is its
 * crontab; in every spool a file the uid owns is a job (or a half-written one) of its own.
 */
export const SPOOLS: readonly { dir: string; crontabs: boolean }[] = [
  { dir: '/var/spool/cron/crontabs', crontabs: true },
  { dir: '/var/spool/cron', crontabs: true },
  { dir: '/var/spool/cron/atjobs', crontabs: false },
  { dir: '/var/spool/cron/atspool', crontabs: false },
  { dir: '/var/spool/at', crontabs: false },
  { dir: '/var/spool/at/spool', crontabs: false },
];

/** What was changed for one tool, to be undone. */
interface DenyEntry {
  tool: SchedulerTool;
  file: string;
  /** What was appended to the file. */
  added: string;
  /** The file did not exist: removed again when nothing else is in it. */
  created: boolean;
}

export interface SchedulerDenial {
  /** The tools the agent's user may not use: named in their deny file, or left out of their allow file. */
  denied: SchedulerTool[];
  /** Takes the user's name out of the deny files again; returns what went wrong. */
  undo(): string[];
}

const badFile = (file: string, why: string): CordonError =>
  new CordonError({
    what: `identity: ${file} cannot be used to deny the agent's user cron and at jobs`,
    why,
    fix: `make ${file} a regular file owned by root (or remove it) on this runner`,
  });

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** A file of root's, as it is (not through a link), or undefined when it is not there. */
function readRootFile(file: string): { text: string; st: Stats } | undefined {
  const st = lstatOrUndefined(file);
  if (!st) return undefined;
  if (!st.isFile()) throw badFile(file, 'it is a symbolic link or not a regular file');
  if (st.uid !== 0) throw badFile(file, `it is owned by uid ${st.uid}, not root`);
  const fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    // latin1: every byte one character and back, so a line that is not UTF-8 is written back as it was.
    return { text: readFileSync(fd, 'latin1'), st: fstatSync(fd) };
  } finally {
    closeSync(fd);
  }
}

const names = (text: string): string[] => text.split('\n').map((l) => l.trim());

/**
 * Denies `name` every scheduler installed here. Where an allow file exists it already
 * decides (a fresh name is not in it) and is left alone; so does the lack of both files
 * where that means root only (at). Throws a CordonError, with
 * nothing changed, when a file is not root's regular file or already names the user.
 */
export function denySchedulers(name: string, tools: readonly Scheduler[] = SCHEDULERS): SchedulerDenial {
  const done: DenyEntry[] = [];
  const denied: SchedulerTool[] = [];
  const undo = (): string[] => done.splice(0).flatMap((e) => undoEntry(e, name));
  try {
    for (const t of tools) {
      if (!t.commands.some((c) => existsSync(c))) continue;
      const allow = readRootFile(t.allow);
      if (allow) {
        if (names(allow.text).includes(name))
          throw badFile(t.allow, `it names ${name}, the user just made for the agent`);
        denied.push(t.tool);
        continue;
      }
      const deny = readRootFile(t.deny);
      if (!deny && t.neitherFile === 'root only') {
        denied.push(t.tool);
        continue;
      }
      if (deny && names(deny.text).includes(name))
        throw badFile(t.deny, `it already names ${name}, the user just made for the agent`);
      const added = `${deny && deny.text && !deny.text.endsWith('\n') ? '\n' : ''}${name}\n`;
      const flags = constants.O_WRONLY | constants.O_APPEND | constants.O_NOFOLLOW;
      // A file made here is made only if still missing (O_EXCL), readable by the tool.
      const fd = deny
        ? openSync(t.deny, flags)
        : openSync(t.deny, flags | constants.O_CREAT | constants.O_EXCL, 0o644);
      try {
        done.push({ tool: t.tool, file: t.deny, added, created: !deny });
        // Readable by the tool whatever umask the launcher was started with (sudo keeps the caller's).
        if (!deny) fchmodSync(fd, 0o644);
        writeSync(fd, added, null, 'latin1');
      } finally {
        closeSync(fd);
      }
      denied.push(t.tool);
    }
  } catch (e) {
    const problems = undo();
    if (e instanceof CordonError && !problems.length) throw e;
    throw new CordonError({
      what: `identity: could not deny ${name} cron and at jobs`,
      why: [describeError(e), ...problems].join('; '),
      fix: 'check /etc/cron.deny, /etc/at.deny and their allow files on this runner',
    });
  }
  return { denied, undo };
}

/** Takes the name back out of a deny file: what was appended if it is still last, else its line. */
function undoEntry(e: DenyEntry, name: string): string[] {
  try {
    const now = readRootFile(e.file);
    if (!now) return [];
    const text = now.text.endsWith(e.added)
      ? now.text.slice(0, -e.added.length)
      : now.text
          .split('\n')
          .filter((l) => l.trim() !== name)
          .join('\n');
    if (e.created && !text.trim()) {
      unlinkSync(e.file);
      return [];
    }
    if (text === now.text) return [];
    replaceFile(e.file, text, now.st);
    return [];
  } catch (err) {
    return [`${name} could not be taken out of ${e.file}: ${describeError(err)}`];
  }
}

/** Writes `text` to a new file beside `file` with its owner and mode, then renames it over. */
function replaceFile(file: string, text: string, st: Stats): void {
  const tmp = `${dirname(file)}/.${basename(file)}.cordon-${randomBytes(4).toString('hex')}`;
  const fd = openSync(
    tmp,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o600,
  );
  try {
    writeSync(fd, text, null, 'latin1');
    fchownSync(fd, st.uid, st.gid);
    fchmodSync(fd, st.mode & 0o7777);
  } catch (e) {
    closeSync(fd);
    unlinkSync(tmp);
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, file);
}

export interface ScheduledRemoved {
  /** The spool files removed (a crontab, at jobs). */
  removed: string[];
  problems: string[];
}

/**
 * Removes the user's crontab and every spool file its uid owns. Each spool is opened from
 * `/` one directory at a time, none through a link, and each file is checked and removed
 * in that open directory, so nothing swapped in sends root elsewhere. Call once no process
 * of the uid is left, before the user is deleted.
 */
export function removeScheduled(
  user: { name: string; uid: number },
  spools: readonly { dir: string; crontabs: boolean }[] = SPOOLS,
): ScheduledRemoved {
  const out: ScheduledRemoved = { removed: [], problems: [] };
  const root = openSync('/', DIR_FLAGS);
  try {
    for (const spool of spools) {
      let dir: number;
      try {
        dir = openDirBeneath(root, spool.dir.split('/').filter(Boolean));
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT')
          out.problems.push(`the spool ${spool.dir} was not searched: ${describeError(e)}`);
        continue;
      }
      try {
        if (fstatSync(dir).uid === user.uid) {
          out.problems.push(`the spool ${spool.dir} is the agent's own; not searched`);
          continue;
        }
        for (const entry of readdirSync(`/proc/self/fd/${dir}`)) {
          const path = `/proc/self/fd/${dir}/${entry}`;
          const st = lstatOrUndefined(path);
          if (!st || st.isDirectory()) continue;
          if (st.uid !== user.uid && !(spool.crontabs && entry === user.name)) continue;
          try {
            // unlink removes a link itself, never what it points at.
            unlinkSync(path);
            out.removed.push(`${spool.dir}/${entry}`);
          } catch (e) {
            out.problems.push(
              `${spool.dir}/${entry} of the agent's could not be removed: ${describeError(e)}`,
            );
          }
        }
      } finally {
        closeSync(dir);
      }
    }
  } finally {
    closeSync(root);
  }
  return out;
}
