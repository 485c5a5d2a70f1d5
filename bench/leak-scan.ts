/**
 * The leak scan's git part on a repository of about 100k objects (100 commits of 1000 new
 * small blobs each, one pack, made by `git fast-import`): the snapshot before the command,
 * the listing after it when the command made nothing, and the whole scan when every object
 * is new (a repository the command made), with 10 secrets registered. Median of N runs.
 * `npx tsx bench/leak-scan.ts [runs]`.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gitChanges, snapshotGit } from '../src/actions/run/leaks-git.js';
import { scanWorkspace } from '../src/actions/run/leaks.js';
import { SecretRegistry } from '../src/platform/mask.js';

const runs = Number(process.argv[2] ?? 5);
const dir = mkdtempSync(join(tmpdir(), 'cordon-bench-leaks-'));
try {
  execFileSync('git', ['init', '-q', dir]);
  const lines: string[] = [];
  let mark = 0;
  for (let c = 0; c < 100; c++) {
    const files: string[] = [];
    for (let f = 0; f < 1000; f++) {
      const body = `commit ${c} file ${f}\n${'x'.repeat(200)}\n`;
      lines.push('blob', `mark :${++mark}`, `data ${Buffer.byteLength(body)}`, body);
      files.push(`M 100644 :${mark} d${c}/f${f}.txt`);
    }
    const msg = `commit ${c}\n`;
    lines.push(
      'commit refs/heads/main',
      `committer b <b@example.com> ${1700000000 + c} +0000`,
      `data ${msg.length}`,
      msg,
      ...files,
      '',
    );
  }
  execFileSync('git', ['-C', dir, 'fast-import', '--quiet'], {
    input: lines.join('\n') + '\n',
    maxBuffer: 1 << 28,
  });
  const count = execFileSync('git', ['-C', dir, 'count-objects', '-v'], { encoding: 'utf8' });
  const registry = new SecretRegistry(() => undefined);
  for (let i = 0; i < 10; i++)
    registry.register(`bench-secret-value-${i}-0123456789abcdef`, { name: `S${i}` });
  const median = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const time = (f: () => void): number => {
    const t = process.hrtime.bigint();
    f();
    return Number(process.hrtime.bigint() - t) / 1e6;
  };
  const snap: number[] = [];
  const after: number[] = [];
  const full: number[] = [];
  let objects = 0;
  for (let i = 0; i < runs; i++) {
    let before = snapshotGit(dir);
    snap.push(time(() => (before = snapshotGit(dir))));
    after.push(time(() => gitChanges(dir, before)));
    full.push(
      time(() => {
        const git = gitChanges(dir, { repos: new Map(), unreadable: new Set() });
        objects = git.repos.reduce((n, r) => n + r.objects.length, 0);
        scanWorkspace({ workspace: dir, registry, since: Date.now() + 60_000, git });
      }),
    );
  }
  console.log(
    count
      .trim()
      .split('\n')
      .filter((l) => /^(count|in-pack|size-pack)/.test(l))
      .join(', '),
  );
  console.log(
    `load ${execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).split(' ')[0]}, ${runs} runs`,
  );
  console.log(
    `snapshot before the command: median ${median(snap).toFixed(0)} ms (${snap.map((x) => x.toFixed(0)).join(', ')})`,
  );
  console.log(
    `listing after, nothing new: median ${median(after).toFixed(0)} ms (${after.map((x) => x.toFixed(0)).join(', ')})`,
  );
  console.log(
    `every object new (${objects} read and scanned): median ${median(full).toFixed(0)} ms (${full.map((x) => x.toFixed(0)).join(', ')})`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
