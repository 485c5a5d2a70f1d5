import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** Every regular file under `dir` (bounded depth), for grepping a job's files for secrets. */
export function allFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, depth: number): void => {
    if (depth > 12) return;
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p, depth + 1);
      else if (st.isFile()) out.push(p);
    }
  };
  walk(dir, 0);
  return out;
}
