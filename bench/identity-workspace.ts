/**
 * Workspace hand-over to the agent's user and back: idmapped mount vs `chown -R`, at 1k and
 * 100k files (root only). Also the agent user's own cost: create, and sweep + remove.
 * `npx tsx bench/identity-workspace.ts [runs]`.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createAgentUser, privilegedExec, sweepAndRemove } from '../src/identity/user.js';
import { pinWorkspace, unpin } from '../src/identity/pinned.js';
import { lendWorkspace, type HandOverStrategy } from '../src/identity/workspace.js';

const runs = Math.min(Number(process.argv[2] ?? 5), 20);
const exec = privilegedExec('root', 600_000);
const pct = (xs: number[], p: number): string =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))].toFixed(1);

/** 100 files a directory, like a checkout's many small folders. */
function buildTree(dir: string, files: number): void {
  for (let d = 0; d < files / 100; d++) {
    const sub = join(dir, `d${d}`);
    mkdirSync(sub);
    for (let f = 0; f < 100; f++) writeFileSync(join(sub, `f${f}.txt`), 'x');
  }
}

const root = mkdtempSync(join(tmpdir(), 'cordon-bench-ws-'));
const homes = mkdtempSync(join(tmpdir(), 'cordon-bench-home-'));
const agent = { uid: 64000, gid: 64000 };
try {
  console.log('| what | files | runs | setup p50 ms | hand-back p50 ms | total p50 ms | total max ms |');
  console.log('|---|---|---|---|---|---|---|');
  for (const files of [1_000, 100_000]) {
    const dir = join(root, `t${files}`);
    mkdirSync(dir);
    buildTree(dir, files);
    for (const strategy of ['idmap', 'chown'] as HandOverStrategy[]) {
      // chown at 100k takes seconds; three runs say enough
      const n = strategy === 'chown' && files > 10_000 ? Math.min(runs, 3) : runs;
      const setup: number[] = [];
      const back: number[] = [];
      const total: number[] = [];
      for (let i = 0; i < n; i++) {
        let t = performance.now();
        const pinned = pinWorkspace(dir, 0);
        const loan = lendWorkspace({ dir: pinned, agent, strategy });
        setup.push(performance.now() - t);
        t = performance.now();
        loan.giveBack();
        unpin(pinned);
        back.push(performance.now() - t);
        total.push(setup[i] + back[i]);
      }
      console.log(
        `| ${strategy} | ${files} | ${n} | ${pct(setup, 50)} | ${pct(back, 50)} | ${pct(total, 50)} | ${pct(total, 100)} |`,
      );
    }
    rmSync(dir, { recursive: true, force: true });
  }
  const create: number[] = [];
  const remove: number[] = [];
  for (let i = 0; i < runs; i++) {
    let t = performance.now();
    const user = createAgentUser(exec, homes);
    create.push(performance.now() - t);
    t = performance.now();
    sweepAndRemove(exec, user);
    remove.push(performance.now() - t);
  }
  console.log(`| agent user: create | - | ${runs} | ${pct(create, 50)} | - | - | ${pct(create, 100)} |`);
  console.log(
    `| agent user: sweep + remove | - | ${runs} | - | ${pct(remove, 50)} | - | ${pct(remove, 100)} |`,
  );
} finally {
  rmSync(root, { recursive: true, force: true });
  rmSync(homes, { recursive: true, force: true });
}
