/**
 * Directories opened one component at a time through descriptors, never through a
 * symbolic link: what root uses where another user can rename or swap what lies on a path
 * while root works on it (the agent's workspace, spools, shared folders, a user's file).
 */
import { closeSync, constants, openSync } from 'node:fs';

/** A directory, read-only, and never a link to one. */
export const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

/**
 * Opens the directories `names`, each inside the one before, from `dirFd`, never through a
 * link; returns the last one (`dirFd` itself for none: the caller closes any other). Throws
 * when one is a link, missing, not a directory, or refused by `accept`.
 */
export function openDirBeneath(
  dirFd: number,
  names: readonly string[],
  accept: (fd: number) => boolean = () => true,
): number {
  let dir = dirFd;
  try {
    for (const name of names) {
      const next = openSync(`/proc/self/fd/${dir}/${name}`, DIR_FLAGS);
      if (dir !== dirFd) closeSync(dir);
      dir = next;
      if (!accept(dir)) throw new Error(`${name}: refused on the way`);
    }
    return dir;
  } catch (e) {
    if (dir !== dirFd) closeSync(dir);
    throw e;
  }
}
