/**
 * `actions/run`'s overhead as a whole program (dist/run/main.js through the harness): from
 * the step's start to the command's first line, and from the command's last line to the
 * step's end, for `user: runner` against `user: agent` (both `home: fresh`), over a ledger
 * that start opened, next to the floor (node running an empty script). Interleaved: each
 * round runs every variant once, in forward order on even rounds and reversed on odd ones,
 * so each sees the same machine state. As root, `user: agent` goes through the launcher
 * directly; where useradd and runuser are there, the same two run again as a non-root
 * "runner" user with passwordless sudo (made here, removed by name at the end), so the
 * agent goes through `sudo -n`. `npx tsx bench/run-overhead.ts [runs]` (at most 50).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Job } from '../src/devkit/run-action.js';

const n = Math.min(Math.max(Number(process.argv[2] ?? 15), 1), 50);
const pct = (xs: number[], p: number): number =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

interface Runner {
  name: string;
  /** In front of node: hands the job root to the user (the harness made its files as root), then runs as it. */
  wrap(root: string): string[];
  remove(): void;
}

/** A non-root runner user with passwordless sudo, as test/harness/users.ts makes one. */
function makeSudoRunner(): Runner | undefined {
  if (process.getuid?.() !== 0 || !existsSync('/usr/sbin/useradd') || !existsSync('/usr/sbin/runuser'))
    return;
  const name = `cbench${process.pid % 100000}`;
  const sudoers = `/etc/sudoers.d/cordon-bench-${name}`;
  const remove = (): void => {
    rmSync(sudoers, { force: true });
    spawnSync('pkill', ['-KILL', '-u', name], { stdio: 'ignore' });
    spawnSync('userdel', ['-r', name], { stdio: 'ignore' });
  };
  remove(); // one left by a killed earlier run of the same pid
  execFileSync('useradd', ['--create-home', '--shell', '/bin/bash', name], { stdio: 'ignore' });
  writeFileSync(sudoers, `${name} ALL=(ALL) NOPASSWD:ALL\n`, { mode: 0o440 });
  return {
    name,
    // sh + chown + runuser rather than the tests' node wrapper: a few ms, not a second node start
    wrap: (root) => [
      'sh',
      '-c',
      'u=$1 r=$2; shift 2; chown -R "$u": "$r" && exec runuser -u "$u" -- "$@"',
      'sh',
      name,
      root,
    ],
    remove,
  };
}

interface Sample {
  before: number;
  after: number;
  total: number;
}

async function runOnce(user: 'runner' | 'agent', runner?: Runner): Promise<Sample> {
  const job = new Job();
  try {
    // the agent's user writes the marks here
    chmodSync(job.root, 0o1777);
    const wrap = runner?.wrap(job.root);
    const s = await job.run('start', 'main', { wrap });
    if (s.code !== 0) throw new Error(`start failed: ${s.stdout}${s.stderr}`);
    const marks = join(job.root, 'marks');
    const started = Date.now();
    const r = await job.run('run', 'main', {
      inputs: { run: `date +%s%3N > ${marks}; date +%s%3N >> ${marks}`, home: 'fresh', user },
      wrap,
    });
    const ended = Date.now();
    if (r.code !== 0) throw new Error(`run (user: ${user}) failed: ${r.stdout}${r.stderr}`);
    const [first, last] = readFileSync(marks, 'utf8').trim().split('\n').map(Number);
    return { before: first - started, after: ended - last, total: ended - started };
  } finally {
    rmSync(job.root, { recursive: true, force: true });
  }
}

/** The floor: node running an empty script through the same harness. */
async function floorOnce(): Promise<Sample> {
  const job = new Job();
  try {
    writeFileSync(join(job.root, 'noop.js'), '');
    const t = Date.now();
    await job.run('noop', 'main', { script: join(job.root, 'noop.js') });
    return { before: NaN, after: NaN, total: Date.now() - t };
  } finally {
    rmSync(job.root, { recursive: true, force: true });
  }
}

const sudoRunner = makeSudoRunner();
try {
  const variants: { what: string; once: () => Promise<Sample> }[] = [
    { what: 'floor: the harness running an empty script with node', once: floorOnce },
    { what: 'as root, user: runner', once: () => runOnce('runner') },
    { what: 'as root, user: agent (launcher directly)', once: () => runOnce('agent') },
  ];
  if (sudoRunner)
    variants.push(
      { what: 'runner user with sudo, user: runner', once: () => runOnce('runner', sudoRunner) },
      {
        what: 'runner user with sudo, user: agent (launcher via sudo -n)',
        once: () => runOnce('agent', sudoRunner),
      },
    );
  else console.warn('no useradd/runuser or not root: the sudo path is not measured');
  const samples = variants.map(() => [] as Sample[]);
  for (let i = 0; i < n; i++) {
    const order = variants.map((_, k) => k);
    if (i % 2 === 1) order.reverse();
    for (const k of order) samples[k].push(await variants[k].once());
  }
  const cell = (xs: number[]): string =>
    xs.some(Number.isNaN) ? '- | - | -' : `${pct(xs, 50)} | ${pct(xs, 99)} | ${Math.max(...xs)}`;
  console.log(
    `| variant (home: fresh, ms, ${n} runs each, interleaved) | start to command p50 | p99 | max | command end to step end p50 | p99 | max | whole step p50 | p99 | max |`,
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  variants.forEach((v, k) => {
    const s = samples[k];
    console.log(
      `| ${v.what} | ${cell(s.map((x) => x.before))} | ${cell(s.map((x) => x.after))} | ${cell(s.map((x) => x.total))} |`,
    );
  });
} finally {
  sudoRunner?.remove();
}
