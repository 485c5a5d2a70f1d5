/**
 * rootOnlyPath: the PATH root's daemon looks programs up in keeps only directories no one
 * but root can change. Needs root (directories of another uid).
 */
import { describe, expect, test } from '@jest/globals';
import { chmodSync, chownSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { rootOnlyDir, rootOnlyPath } from '../../../src/platform/root-path.js';
import { tempDir } from '../../harness/tmp.js';

const suite = process.getuid?.() === 0 ? describe : describe.skip;
/** A uid no user holds. */
const UID = 60998;

suite('rootOnlyPath', () => {
  test('hostile: a directory of another uid, one open to group or others, one under an open parent, a link to one, a relative or empty entry: all left out, order kept', () => {
    const base = tempDir('rootpath-');
    chmodSync(base, 0o755);
    const mk = (name: string, mode = 0o755, uid = 0): string => {
      const d = join(base, name);
      mkdirSync(d);
      chmodSync(d, mode);
      chownSync(d, uid, 0);
      return d;
    };
    const good = mk('good');
    const other = mk('other', 0o755, UID);
    const groupW = mk('group-w', 0o775);
    const open = mk('open', 0o777);
    const under = join(open, 'sub');
    mkdirSync(under);
    chmodSync(under, 0o755);
    const link = join(base, 'link');
    symlinkSync(other, link);
    const good2 = mk('good2');
    const path = ['', 'relative/bin', good, other, groupW, under, link, good2].join(':');
    expect(rootOnlyPath(path)).toBe(`${good}:${good2}`);
    expect(rootOnlyDir('/usr/bin')).toBe(true);
  });

  test('a root directory under a sticky open one (/tmp) is kept; the sticky one itself is not', () => {
    const base = tempDir('rootpath-');
    chmodSync(base, 0o1777);
    const d = join(base, 'bin');
    mkdirSync(d);
    chmodSync(d, 0o755);
    expect(rootOnlyPath(`${base}:${d}`)).toBe(d);
  });

  test('nothing left: the system directories that are root’s', () => {
    const p = rootOnlyPath('relative:');
    expect(p.split(':')).toContain('/usr/bin');
    expect(p.split(':').every((d) => rootOnlyDir(d))).toBe(true);
  });
});
