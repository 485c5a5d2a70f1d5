import { readFileSync } from 'node:fs';

/** Whether `pid` runs: false when it is gone or a zombie (its state letter after the `)`). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}
