/**
 * The cgroup's own cost: create, start `true` in it, kill and remove (root only).
 * `npx tsx bench/run-cgroup.ts [runs]`.
 */
import { performance } from 'node:perf_hooks';
import { createCgroup } from '../src/actions/run/cgroup.js';
import { launchCommand } from '../src/actions/run/spawn.js';

const n = Number(process.argv[2] ?? 30);
const pct = (xs: number[], p: number): string =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))].toFixed(2);
for (const kind of ['cgroup', 'process-group'] as const) {
  const create: number[] = [];
  const launch: number[] = [];
  const finish: number[] = [];
  for (let i = 0; i < n; i++) {
    let t = performance.now();
    const containment = kind === 'cgroup' ? createCgroup() : { kind, reason: 'bench' };
    if (containment.kind !== kind) throw new Error(`no cgroup: ${containment.reason}`);
    create.push(performance.now() - t);
    t = performance.now();
    const proc = await launchCommand({
      argv: ['true'],
      env: { PATH: process.env.PATH ?? '' },
      cwd: '/',
      containment,
    });
    proc.stdout.resume();
    proc.stderr.resume();
    await proc.exited;
    launch.push(performance.now() - t);
    t = performance.now();
    proc.finish();
    finish.push(performance.now() - t);
  }
  console.log(`| ${kind}: create | ${n} | ${pct(create, 50)} | ${pct(create, 99)} |`);
  console.log(`| ${kind}: spawn \`true\` to its exit | ${n} | ${pct(launch, 50)} | ${pct(launch, 99)} |`);
  console.log(`| ${kind}: kill, wait empty, remove | ${n} | ${pct(finish, 50)} | ${pct(finish, 99)} |`);
}
