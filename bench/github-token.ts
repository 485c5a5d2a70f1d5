/**
 * github-token cold start: whole-program runs of dist/github-token/{main,post}.js through the
 * harness against the loopback GitHub API (every call verified as GitHub would: JWT signature,
 * claims). Prints the median and p90 wall time of main (JWT + 4 API calls + git config + ledger)
 * and post (revoke + confirm). Run: npx tsx bench/github-token.ts [runs]
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Job } from '../src/devkit/run-action.js';
import { makeAppKey, startGithubApi } from '../src/devkit/github-api.js';

const runs = Number(process.argv[2] ?? 20);
const key = makeAppKey();
const api = await startGithubApi({
  appId: 1,
  slug: 'bench-app',
  botId: 2,
  publicKey: key.publicKey,
  installations: [
    { id: 3, account: 'octo-org', repositories: ['octo-repo'], permissions: { contents: 'write' } },
  ],
});
const main: number[] = [];
const post: number[] = [];
for (let n = 0; n < runs; n++) {
  const job = new Job();
  job.env.GIT_CONFIG_GLOBAL = join(job.home, '.gitconfig');
  const m = await job.run('github-token', 'main', {
    inputs: {
      'app-id': '1',
      'private-key': key.pkcs1,
      'github-api-url': api.url,
      'permission-contents': 'write',
    },
  });
  if (m.code !== 0) throw new Error(m.stdout);
  const p = await job.run('github-token', 'post', { state: m.state });
  if (p.code !== 0) throw new Error(p.stdout);
  main.push(m.durationMs);
  post.push(p.durationMs);
  rmSync(job.root, { recursive: true, force: true });
}
await api.close();
const q = (xs: number[], f: number): number =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * f))];
console.log(`runs ${runs}`);
console.log(`main: median ${q(main, 0.5)} ms, p90 ${q(main, 0.9)} ms`);
console.log(`post: median ${q(post, 0.5)} ms, p90 ${q(post, 0.9)} ms`);
