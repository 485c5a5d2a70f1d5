/**
 * The `PATH` a root process looks programs up in: only directories no one but root can
 * change. sudo gives root its `secure_path`, which puts `/usr/local/sbin` and
 * `/usr/local/bin` first, and on some images one of them is the runner user's (T31): a
 * program of its own there named `nft` would be what root runs by that name.
 */
import { lstatSync, realpathSync } from 'node:fs';
import { dirname, isAbsolute } from 'node:path';

/** What is left when no directory of `PATH` is root's alone. */
const SYSTEM_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * Whether nobody but root can put or replace a file in `dir`: it and every directory above
 * it (as named, and as its links resolve) are root's and not writable by group or others,
 * except an ancestor with the sticky bit (`/tmp`), where others cannot rename root's entry.
 */
export function rootOnlyDir(dir: string): boolean {
  if (!isAbsolute(dir)) return false;
  try {
    const real = realpathSync(dir);
    return [dir, real].every((path) => {
      for (let p = path, leaf = true; ; p = dirname(p), leaf = false) {
        const st = lstatSync(p);
        if (st.uid !== 0) return false;
        const sticky = (st.mode & 0o1000) !== 0;
        if (!st.isSymbolicLink() && st.mode & 0o022 && (leaf || !sticky)) return false;
        if (p === '/') return true;
      }
    });
  } catch {
    return false;
  }
}

/** `path`'s directories that are root's alone (rootOnlyDir), in order; the system's when none is. */
export function rootOnlyPath(path: string | undefined): string {
  const kept = (path ?? '').split(':').filter(rootOnlyDir);
  return kept.length ? kept.join(':') : SYSTEM_PATH.split(':').filter(rootOnlyDir).join(':');
}
