/**
 * actions/aws cold start: wall time from process start to credentials exported (the whole
 * process, `export: env`), against moto and the loopback OIDC issuer, as a ratio to a plain
 * unbundled Node script making the same ID-token fetch and STS call; and peak RSS
 * (/usr/bin/time -v). Runs are interleaved and the median kept. `npx tsx bench/aws.ts [runs]`.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startMoto } from '../src/devkit/moto.js';
import { startOidcIssuer } from '../src/devkit/oidc-issuer.js';
import { REPO_ROOT } from '../src/devkit/run-action.js';

const runs = Number(process.argv[2] ?? 15);
const moto = await startMoto();
const issuer = await startOidcIssuer();
const dir = mkdtempSync(join(tmpdir(), 'cordon-bench-aws-'));
const files = Object.fromEntries(
  ['GITHUB_ENV', 'GITHUB_OUTPUT', 'GITHUB_STATE', 'GITHUB_PATH'].map((k) => {
    const p = join(dir, k);
    writeFileSync(p, '');
    return [k, p];
  }),
);
const env: Record<string, string> = {
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: dir,
  RUNNER_TEMP: dir,
  GITHUB_RUN_ID: '1',
  GITHUB_RUN_ATTEMPT: '1',
  GITHUB_JOB: 'bench',
  AWS_REGION: 'us-east-1',
  AWS_ENDPOINT_URL_STS: moto.endpoint,
  ...issuer.env,
  ...files,
  'INPUT_ROLE-TO-ASSUME': 'arn:aws:iam::111122223333:role/bench',
  'INPUT_AWS-REGION': 'us-east-1',
  'INPUT_MASK-AWS-ACCOUNT-ID': 'false',
};

const cases: Record<string, { argv: string[]; env?: Record<string, string> }> = {
  'node -e 0': { argv: [process.execPath, '-e', '0'] },
  'plain script (unbundled client-sts)': { argv: [process.execPath, join(REPO_ROOT, 'bench/aws-plain.mjs')] },
  'cordon dist/aws/main.js (export: env)': { argv: [process.execPath, join(REPO_ROOT, 'dist/aws/main.js')] },
  'cordon dist/aws/main.js (export: profile)': {
    argv: [process.execPath, join(REPO_ROOT, 'dist/aws/main.js')],
    env: { INPUT_EXPORT: 'profile' },
  },
};

/** Async spawn: the OIDC issuer answers from this process, so it must not block. */
function once({
  argv,
  env: extra,
}: {
  argv: string[];
  env?: Record<string, string>;
}): Promise<{ ms: number; rssKiB: number }> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn('/usr/bin/time', ['-v', ...argv], {
      env: { ...env, ...extra },
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (code !== 0) return reject(new Error(`${argv.join(' ')} failed: ${out}\n${err}`));
      const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(err);
      resolve({ ms, rssKiB: Number(rss?.[1] ?? 0) });
    });
  });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

try {
  for (const c of Object.values(cases)) await once(c); // warm the page cache
  const samples: Record<string, { ms: number[]; rss: number[] }> = {};
  for (const name of Object.keys(cases)) samples[name] = { ms: [], rss: [] };
  for (let i = 0; i < runs; i++) {
    for (const [name, c] of Object.entries(cases)) {
      const r = await once(c);
      samples[name].ms.push(r.ms);
      samples[name].rss.push(r.rssKiB);
    }
  }
  const plain = median(samples['plain script (unbundled client-sts)'].ms);
  const bare = median(samples['node -e 0'].ms);
  console.log(
    `runs: ${runs} each, interleaved; node ${process.version}; load average ${(await import('node:os')).loadavg()[0].toFixed(2)}`,
  );
  console.log('| case | median ms | min ms | vs plain | vs node -e 0 | peak RSS MiB (median) |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const [name, s] of Object.entries(samples)) {
    const m = median(s.ms);
    console.log(
      `| ${name} | ${m.toFixed(0)} | ${Math.min(...s.ms).toFixed(0)} | ${(m / plain).toFixed(2)}x | ${(m / bare).toFixed(2)}x | ${(median(s.rss) / 1024).toFixed(1)} |`,
    );
  }
} finally {
  await issuer.close();
  await moto.stop();
}
