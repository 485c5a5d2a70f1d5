/**
 * denySchedulers and removeScheduled on files made here standing for /etc/cron.deny,
 * /etc/at.deny, their allow files and the spools: the deny files come back byte for byte,
 * a file made for the denial goes again, a bad file is refused with nothing changed, and
 * only the uid's spool files go, never through a link. Needs root (files of another uid).
 */
import { describe, expect, test } from '@jest/globals';
import {
  chmodSync,
  chownSync,
  existsSync,
  lchownSync,
  mkdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { denySchedulers, removeScheduled, type Scheduler } from '../../../src/identity/schedulers.js';
import { CordonError } from '../../../src/platform/errors.js';
import { tempDir } from '../../harness/tmp.js';

const root = process.getuid?.() === 0;
const suite = root ? describe : describe.skip;
const NAME = 'cordon-agent-c0ffee';
/** A uid no user holds, in no range Cordon gives out. */
const UID = 60999;

/** Both tools "installed" (the command is a file made here), their files under `etc`. */
function tools(etc: string): Scheduler[] {
  writeFileSync(join(etc, 'cmd'), '');
  return (['cron', 'at'] as const).map((tool) => ({
    tool,
    commands: [join(etc, 'missing'), join(etc, 'cmd')],
    allow: join(etc, `${tool}.allow`),
    deny: join(etc, `${tool}.deny`),
    neitherFile: tool === 'at' ? ('root only' as const) : ('everyone' as const),
  }));
}

suite('denySchedulers', () => {
  test('names the user in each deny file while it exists; undo puts each back as it was, and removes one it made', () => {
    const etc = tempDir('sched-');
    const t = tools(etc);
    // No newline at the end: the name still goes on a line of its own, and comes off with it.
    writeFileSync(t[1].deny, 'daemon\nnobody', { mode: 0o640 });
    chownSync(t[1].deny, 0, 1);
    const d = denySchedulers(NAME, t);
    expect(d.denied).toEqual(['cron', 'at']);
    expect(readFileSync(t[0].deny, 'utf8')).toBe(`${NAME}\n`);
    expect(readFileSync(t[1].deny, 'utf8')).toBe(`daemon\nnobody\n${NAME}\n`);
    expect(d.undo()).toEqual([]);
    expect(existsSync(t[0].deny)).toBe(false);
    expect(readFileSync(t[1].deny, 'utf8')).toBe('daemon\nnobody');
    const st = statSync(t[1].deny);
    expect([st.mode & 0o777, st.uid, st.gid]).toEqual([0o640, 0, 1]);
  });

  test('a line added after the name stays when the name is taken out', () => {
    const etc = tempDir('sched-');
    const t = tools(etc);
    writeFileSync(t[0].deny, 'games\n');
    const d = denySchedulers(NAME, t.slice(0, 1));
    writeFileSync(t[0].deny, 'later\n', { flag: 'a' });
    expect(d.undo()).toEqual([]);
    expect(readFileSync(t[0].deny, 'utf8')).toBe('games\nlater\n');
  });

  test('an allow file decides: it is left alone, and the tool counts as denied', () => {
    const etc = tempDir('sched-');
    const t = tools(etc);
    writeFileSync(t[0].allow, 'root\n');
    const d = denySchedulers(NAME, t);
    expect(d.denied).toEqual(['cron', 'at']);
    expect(existsSync(t[0].deny)).toBe(false);
    expect(readFileSync(t[0].allow, 'utf8')).toBe('root\n');
    d.undo();
    expect(existsSync(t[1].deny)).toBe(false);
  });

  test('hostile: at with neither file (root only): no deny file is made, which would let every other user, the runner too, use at while the agent runs', () => {
    const etc = tempDir('sched-');
    const t = tools(etc);
    const d = denySchedulers(NAME, t);
    expect(d.denied).toEqual(['cron', 'at']);
    expect(existsSync(t[1].deny)).toBe(false);
    expect(existsSync(t[1].allow)).toBe(false);
    expect(readFileSync(t[0].deny, 'utf8')).toBe(`${NAME}\n`);
    expect(d.undo()).toEqual([]);
    expect(existsSync(t[0].deny)).toBe(false);
  });

  test("hostile: started under umask 077 (sudo keeps the caller's), a deny file made here is still readable by the tool (0644)", () => {
    const etc = tempDir('sched-');
    const t = tools(etc);
    const old = process.umask(0o077);
    try {
      denySchedulers(NAME, t.slice(0, 1));
    } finally {
      process.umask(old);
    }
    expect(statSync(t[0].deny).mode & 0o777).toBe(0o644);
  });

  test('a deny file that is not UTF-8 comes back byte for byte, whichever way the name is taken out', () => {
    const etc = tempDir('sched-');
    const t = tools(etc).slice(0, 1);
    const bytes = Buffer.from([0x67, 0x61, 0x6d, 0x65, 0x73, 0xff, 0xfe, 0x0a, 0xe9, 0x74, 0xe9]);
    writeFileSync(t[0].deny, bytes);
    expect(denySchedulers(NAME, t).undo()).toEqual([]);
    expect(readFileSync(t[0].deny)).toEqual(bytes);
    const d = denySchedulers(NAME, t);
    // A line added after the name: the name's line goes, the rest stays as it is.
    const later = Buffer.from([0x6c, 0xfc, 0x0a]);
    writeFileSync(t[0].deny, later, { flag: 'a' });
    expect(d.undo()).toEqual([]);
    expect(readFileSync(t[0].deny)).toEqual(Buffer.concat([bytes, Buffer.from([0x0a]), later]));
  });

  test('a tool not installed is left alone', () => {
    const etc = tempDir('sched-');
    const t = tools(etc).map((s) => ({ ...s, commands: [join(etc, 'missing')] }));
    expect(denySchedulers(NAME, t).denied).toEqual([]);
    expect(existsSync(t[0].deny)).toBe(false);
  });

  test.each([
    ['a link as the deny file', (t: Scheduler[]) => symlinkSync('/etc/passwd', t[1].deny), /symbolic link/],
    [
      'a deny file of another uid',
      (t: Scheduler[]) => {
        writeFileSync(t[1].deny, '');
        chownSync(t[1].deny, UID, UID);
      },
      /uid 60999/,
    ],
    [
      'an allow file naming the user',
      (t: Scheduler[]) => writeFileSync(t[1].allow, `${NAME}\n`),
      /names cordon-agent/,
    ],
  ])('%s: a CordonError naming the file, and nothing half-applied', (_what, plant, why) => {
    const etc = tempDir('sched-');
    const t = tools(etc);
    writeFileSync(t[0].deny, 'games\n');
    plant(t);
    let err: unknown;
    try {
      denySchedulers(NAME, t);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CordonError);
    expect((err as Error).message).toContain(etc);
    expect((err as Error).message).toMatch(why);
    // The first tool's denial was taken back.
    expect(readFileSync(t[0].deny, 'utf8')).toBe('games\n');
  });
});

suite('removeScheduled', () => {
  test("removes the user's crontab and the uid's at jobs, nothing of anyone else's, never through a link", () => {
    const spool = tempDir('spool-');
    const crontabs = join(spool, 'crontabs');
    const atjobs = join(spool, 'atjobs');
    mkdirSync(crontabs);
    mkdirSync(atjobs);
    chmodSync(atjobs, 0o1770);
    writeFileSync(join(crontabs, NAME), '* * * * * true\n');
    writeFileSync(join(crontabs, 'root'), '* * * * * true\n');
    writeFileSync(join(atjobs, 'a0000101'), 'job');
    writeFileSync(join(atjobs, 'a0000202'), 'job');
    writeFileSync(join(atjobs, '.SEQ'), '3');
    lchownSync(join(atjobs, 'a0000101'), UID, UID);
    // A link of the uid's to someone else's file: the link goes, the file stays.
    const target = join(spool, 'target');
    writeFileSync(target, 'x');
    symlinkSync(target, join(atjobs, 'link'));
    lchownSync(join(atjobs, 'link'), UID, UID);
    // A spool reached through a link is not searched.
    symlinkSync(atjobs, join(spool, 'via-link'));
    const r = removeScheduled({ name: NAME, uid: UID }, [
      { dir: crontabs, crontabs: true },
      { dir: atjobs, crontabs: false },
      { dir: join(spool, 'via-link'), crontabs: false },
      { dir: join(spool, 'missing'), crontabs: false },
    ]);
    expect(r.removed.sort()).toEqual([join(atjobs, 'a0000101'), join(atjobs, 'link'), join(crontabs, NAME)]);
    expect(r.problems).toEqual([expect.stringContaining(`${join(spool, 'via-link')} was not searched`)]);
    for (const kept of [join(crontabs, 'root'), join(atjobs, 'a0000202'), join(atjobs, '.SEQ'), target])
      expect(existsSync(kept)).toBe(true);
  });
});
