/**
 * Credential broker: cached fetch latency (p50/p99, keep-alive and a new connection per
 * request, as botocore does), the cost of a refresh (ID token + STS through moto) as the
 * command sees it, the broker's start time, and a fresh `actions/aws` run (dist/aws/main.js,
 * whole process) for comparison. `npx tsx bench/broker.ts [cachedRequests] [refreshes]`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { request, Agent } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAwsSessionInputs, type AwsSessionInputs } from '../src/aws/inputs.js';
import { startBroker } from '../src/broker/start.js';
import { Inputs } from '../src/platform/inputs.js';
import { startMoto } from '../src/devkit/moto.js';
import { startOidcIssuer } from '../src/devkit/oidc-issuer.js';
import { REPO_ROOT } from '../src/devkit/run-action.js';

const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
/** `--cached-only`: just the cached rows (for a run under `chrt -f`, which keeps other load off). */
const cachedOnly = process.argv.includes('--cached-only');
const cachedN = Number(args[0] ?? 5000);
const refreshN = Number(args[1] ?? 30);
const moto = await startMoto();
const issuer = await startOidcIssuer();
const dir = mkdtempSync(join(tmpdir(), 'cordon-bench-broker-'));
const env: Record<string, string> = {
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: dir,
  RUNNER_TEMP: dir,
  GITHUB_RUN_ID: '1',
  GITHUB_RUN_ATTEMPT: '1',
  GITHUB_JOB: 'bench',
  AWS_ENDPOINT_URL_STS: moto.endpoint,
  ...issuer.env,
};
const aws = parseAwsSessionInputs(
  new Inputs('run', {
    ...env,
    'INPUT_AWS-ROLE-TO-ASSUME': 'arn:aws:iam::111122223333:role/bench',
    'INPUT_AWS-REGION': 'us-east-1',
  }),
  { prefix: 'aws-' },
) as AwsSessionInputs;
const brokerScript = join(REPO_ROOT, 'dist', 'broker', 'main.js');

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

function getOnce(url: string, token: string, agent: Agent | false): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const req = request(url, { headers: { authorization: token }, agent }, (res) => {
      res.resume();
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`HTTP ${res.statusCode}`));
        else resolve(Number(process.hrtime.bigint() - t0) / 1e6);
      });
    });
    req.on('error', reject);
    req.end();
  });
}

async function series(url: string, token: string, n: number, agent: Agent | false): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < 50; i++) await getOnce(url, token, agent); // warm-up
  for (let i = 0; i < n; i++) out.push(await getOnce(url, token, agent));
  return out;
}

const rows: string[] = [];
const fmt = (xs: number[]): string =>
  `${pct(xs, 50).toFixed(3)} | ${pct(xs, 99).toFixed(3)} | ${Math.max(...xs).toFixed(3)}`;

// Broker start (spawn to READY, including the first exchange).
const startMs: number[] = [];
for (let i = 0; i < (cachedOnly ? 0 : 5); i++) {
  const t0 = Date.now();
  const b = await startBroker({ action: 'run', env, aws }, { brokerScript });
  startMs.push(Date.now() - t0);
  await b.stop();
}

/** A bare Node HTTP server answering a constant, in its own process: the floor under the same load. */
function startFloor(): Promise<{ url: string; kill: () => void }> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [
        '-e',
        "const s=require('http').createServer((q,r)=>r.end('{}'));s.listen(0,'127.0.0.1',()=>console.log(s.address().port))",
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    child.stdout.once('data', (d: Buffer) =>
      resolve({ url: `http://127.0.0.1:${d.toString().trim()}/`, kill: () => child.kill('SIGKILL') }),
    );
  });
}

// Cached fetches, in blocks interleaved with the floor so both see the same machine load.
const cached = await startBroker({ action: 'run', env, aws }, { brokerScript });
const floor = await startFloor();
const url = cached.env.AWS_CONTAINER_CREDENTIALS_FULL_URI;
const token = cached.env.AWS_CONTAINER_AUTHORIZATION_TOKEN;
const keepAlive: number[] = [];
const floorKeepAlive: number[] = [];
const fresh: number[] = [];
const floorFresh: number[] = [];
const agentB = new Agent({ keepAlive: true, maxSockets: 1 });
const agentF = new Agent({ keepAlive: true, maxSockets: 1 });
for (let block = 0; block < 10; block++) {
  keepAlive.push(...(await series(url, token, cachedN / 10, agentB)));
  floorKeepAlive.push(...(await series(floor.url, token, cachedN / 10, agentF)));
  fresh.push(...(await series(url, token, cachedN / 50, false)));
  floorFresh.push(...(await series(floor.url, token, cachedN / 50, false)));
}
// The same from a Python client (http.client), closer to what botocore does, and free of
// the Node client's own event-loop and GC pauses.
const py = spawnSync('python3', [join(REPO_ROOT, 'bench', 'broker-client.py')], {
  input: JSON.stringify({
    targets: [
      { name: 'broker', url, token },
      { name: 'floor', url: floor.url, token },
    ],
    n: cachedN,
    blocks: 10,
  }),
  encoding: 'utf8',
  timeout: 300000,
});
if (py.status !== 0) throw new Error(`python client failed: ${py.stderr}`);
const pyOut = JSON.parse(py.stdout) as Record<string, { keepalive: number[]; fresh: number[] }>;
floor.kill();
await cached.stop();

// Forced refresh on every fetch: refresh-before above the 900 s lifetime.
const forced = await startBroker({ action: 'run', env, aws, refreshBeforeSeconds: 1000 }, { brokerScript });
const refresh: number[] = [];
for (let i = 0; i < (cachedOnly ? 0 : refreshN); i++)
  refresh.push(
    await getOnce(
      forced.env.AWS_CONTAINER_CREDENTIALS_FULL_URI,
      forced.env.AWS_CONTAINER_AUTHORIZATION_TOKEN,
      false,
    ),
  );
const forcedReport = await forced.stop();

// A fresh actions/aws run, whole process, export: env.
function awsRun(): Promise<number> {
  const files = Object.fromEntries(
    ['GITHUB_ENV', 'GITHUB_OUTPUT', 'GITHUB_STATE', 'GITHUB_PATH'].map((k) => {
      const p = join(dir, `${k}-${Math.random()}`);
      writeFileSync(p, '');
      return [k, p];
    }),
  );
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(process.execPath, [join(REPO_ROOT, 'dist/aws/main.js')], {
      env: {
        ...env,
        ...files,
        'INPUT_ROLE-TO-ASSUME': 'arn:aws:iam::111122223333:role/bench',
        'INPUT_AWS-REGION': 'us-east-1',
        'INPUT_MASK-AWS-ACCOUNT-ID': 'false',
      },
      stdio: 'ignore',
    });
    child.on('close', (code) =>
      code === 0
        ? resolve(Number(process.hrtime.bigint() - t0) / 1e6)
        : reject(new Error(`aws main exited ${code}`)),
    );
  });
}
const awsMs: number[] = [];
for (let i = 0; i < (cachedOnly ? 0 : 10); i++) awsMs.push(await awsRun());

rows.push('| measurement | n | p50 ms | p99 ms | max ms |', '| --- | --- | --- | --- | --- |');
rows.push(`| cached fetch, keep-alive connection | ${keepAlive.length} | ${fmt(keepAlive)} |`);
rows.push(`| floor: bare Node HTTP server, keep-alive | ${floorKeepAlive.length} | ${fmt(floorKeepAlive)} |`);
rows.push(`| cached fetch, new connection each (botocore's way) | ${fresh.length} | ${fmt(fresh)} |`);
rows.push(
  `| floor: bare Node HTTP server, new connection each | ${floorFresh.length} | ${fmt(floorFresh)} |`,
);
rows.push(
  `| Python client: cached fetch, keep-alive | ${pyOut.broker.keepalive.length} | ${fmt(pyOut.broker.keepalive)} |`,
);
rows.push(
  `| Python client: floor, keep-alive | ${pyOut.floor.keepalive.length} | ${fmt(pyOut.floor.keepalive)} |`,
);
rows.push(
  `| Python client: cached fetch, new connection each | ${pyOut.broker.fresh.length} | ${fmt(pyOut.broker.fresh)} |`,
);
rows.push(
  `| Python client: floor, new connection each | ${pyOut.floor.fresh.length} | ${fmt(pyOut.floor.fresh)} |`,
);
if (!cachedOnly) {
  rows.push(
    `| refresh (ID token + STS via moto), as the command sees it | ${refresh.length} | ${fmt(refresh)} |`,
  );
  rows.push(`| fresh actions/aws run (node dist/aws/main.js) | ${awsMs.length} | ${fmt(awsMs)} |`);
  rows.push(`| broker start (spawn to READY, first exchange) | ${startMs.length} | ${fmt(startMs)} |`);
}
console.log(rows.join('\n'));
console.log(
  `load average at the end: ${(await import('node:os'))
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}`,
);
console.log(`forced broker: ${forcedReport.awsRefreshes} refreshes recorded`);

await moto.stop();
await issuer.close();
rmSync(dir, { recursive: true, force: true });
