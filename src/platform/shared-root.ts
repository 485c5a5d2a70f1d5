/**
 * A root-owned directory that several of Cordon's parts may be using at once, each keeping
 * its own entry in it (a fence's state directory in /run/cordon, an agent's HOME in
 * /run/cordon-home): made by the first that needs it, removed by whichever leaves it empty.
 * Which one made it does not matter: they overlap (two jobs on one runner, a test's two
 * fences or agents), and the one that made it may end first, while another's entry is
 * still there, so only the maker removing it left it behind, empty.
 */
import { lstatSync, rmdirSync } from 'node:fs';

/**
 * What marks such a directory as made by Cordon: the sticky bit, set by the mkdir that
 * makes it. On a directory only root can write it changes nothing (no one else can
 * create, rename or remove an entry there, and the kernel's protected_* rules apply to
 * world- or group-writable sticky directories only); it tells Cordon's parts that the
 * directory is theirs to remove. One without the mark (made by something else, or by an
 * older Cordon) is never removed.
 */
export const SHARED_ROOT_MARK = 0o1000;

/**
 * Removes `dir` when Cordon made it (its mark, `SHARED_ROOT_MARK`) and nothing is left in
 * it: `rmdir` only, which refuses a directory that is not empty (another's entry is there;
 * it removes the directory when done), so never a race. `rmdir` is how it is removed:
 * this process's own rmdir(2) unless given (the identity module's root commands).
 */
export function removeSharedRoot(dir: string, rmdir: (dir: string) => void = rmdirSync): void {
  try {
    const st = lstatSync(dir);
    if (st.isDirectory() && (st.mode & SHARED_ROOT_MARK) !== 0) rmdir(dir);
  } catch {
    // Another's entry is there (it goes when that one is done), or gone already.
  }
}
