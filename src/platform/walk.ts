/** A bounded walk of a directory tree that never follows a link. */
import { lstatSync, readdirSync, type Stats } from 'node:fs';
import { join } from 'node:path';

export interface WalkOptions {
  /** Entries visited at most; past it the walk stops and says so. */
  limit: number;
  /** Leaves an entry of `dir` out (a directory is then not entered). */
  skip?: (dir: string, name: string) => boolean;
  /** Which regular files to return (default: all). */
  keep?: (path: string, st: Stats) => boolean;
}

/** Regular files under `root` (paths joined to it), links neither followed nor returned. */
export function walkFiles(root: string, opts: WalkOptions): { files: string[]; truncated: boolean } {
  const files: string[] = [];
  const stack = [root];
  let visited = 0;
  while (stack.length) {
    const dir = stack.pop() as string;
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const name of names) {
      if (++visited > opts.limit) return { files, truncated: true };
      if (opts.skip?.(dir, name)) continue;
      const p = join(dir, name);
      let st: Stats;
      try {
        st = lstatSync(p);
      } catch {
        continue; // Gone meanwhile.
      }
      if (st.isDirectory()) stack.push(p);
      else if (st.isFile() && (!opts.keep || opts.keep(p, st))) files.push(p);
    }
  }
  return { files, truncated: false };
}
