/**
 * `actions/run`'s overhead as a whole program (dist/run/main.js through the harness): from
 * the step's start to the command's first line, and from the command's last line to the
 * step's end, with `home: fresh` + cgroup (root) against `home: keep`, over a ledger that
 * start opened. `npx tsx bench/run-overhead.ts [runs]`.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Job } from '../src/devkit/run-action.js';

const n = Number(process.argv[2] ?? 15);
const pct = (xs: number[], p: number): number =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

async function measure(
  home: 'fresh' | 'keep',
): Promise<{ before: number[]; after: number[]; total: number[] }> {
  const before: number[] = [];
  const after: number[] = [];
  const total: number[] = [];
  for (let i = 0; i < n; i++) {
    const job = new Job();
    await job.run('start', 'main');
    const marks = join(job.root, 'marks');
    const started = Date.now();
    const r = await job.run('run', 'main', {
      inputs: { run: `date +%s%3N > ${marks}; date +%s%3N >> ${marks}`, home },
    });
    const ended = Date.now();
    if (r.code !== 0) throw new Error(`run failed: ${r.stdout}${r.stderr}`);
    const [first, last] = readFileSync(marks, 'utf8').trim().split('\n').map(Number);
    before.push(first - started);
    after.push(ended - last);
    total.push(ended - started);
    rmSync(job.root, { recursive: true, force: true });
  }
  return { before, after, total };
}

/** The floor: node running an empty script through the same harness. */
async function floor(): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const job = new Job();
    writeFileSync(join(job.root, 'noop.js'), '');
    const t = Date.now();
    await job.run('noop', 'main', { script: join(job.root, 'noop.js') });
    out.push(Date.now() - t);
    rmSync(job.root, { recursive: true, force: true });
  }
  return out;
}

console.log(`| measurement (ms, ${n} runs each) | p50 | p99 | max |`);
console.log('| --- | --- | --- | --- |');
for (const home of ['fresh', 'keep'] as const) {
  const m = await measure(home);
  const row = (what: string, xs: number[]): void =>
    console.log(`| ${what} | ${pct(xs, 50)} | ${pct(xs, 99)} | ${Math.max(...xs)} |`);
  row(`home: ${home}: step start to command start`, m.before);
  row(`home: ${home}: command end to step end`, m.after);
  row(`home: ${home}: whole step (command ~5 ms)`, m.total);
}
const f = await floor();
console.log(
  `| floor: the harness running an empty script with node | ${pct(f, 50)} | ${pct(f, 99)} | ${Math.max(...f)} |`,
);
