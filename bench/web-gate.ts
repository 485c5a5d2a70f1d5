/**
 * The agent's web gate (docs/egress.md), run as root: `npx tsx bench/web-gate.ts`. In the
 * egress tests' runner/internet namespaces, with the bundled daemon in block mode and an
 * HTTP server on one address: the same client, as an agent uid (its port 80 connections go
 * through the gate) and as root (the runner side, checked by address only), interleaved:
 *  1. new connections one at a time, each `GET /small` to the end: per-request latency
 *     (p50/p95), which for the agent holds the redirect, the map read through the
 *     daemon's nft shell, the name check and the gate's own connect;
 *  2. `GET /big` (64 MiB) on one connection: throughput through the gate's splice (server
 *     to client, not read);
 *  3. `POST /up` with a 64 MiB body, by Content-Length and chunked (1 MiB chunks), on one
 *     connection: throughput of the client's side, which the gate frames request by
 *     request on port 80 (counting a body through, never holding it).
 * Writes bench/RESULTS-webgate.md up to its `## Notes`, which are kept.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stop } from '../src/devkit/netns.js';
import { parseDomains } from '../src/fence/policy.js';
import { tempDir } from '../test/harness/tmp.js';
import { World, asUid, freeAgentUid, startDaemon, type Runs } from '../test/e2e/egress-topology.js';

const ADDRESS = '203.0.113.62';
const NAME = 'allowed.test';
const REQUESTS = 300;
const ROUNDS = 3;
const BIG = 64 << 20;

const SERVER = `
const http = require('node:http');
const big = Buffer.alloc(${BIG}, 120);
http.createServer((req, res) => {
  if (req.method !== 'POST') return res.end(req.url === '/big' ? big : 'ok');
  let n = 0;
  req.on('data', (d) => { n += d.length; });
  req.on('end', () => res.end(String(n)));
}).listen(80, '${ADDRESS}', () => console.log('ready'));
`;

/** The client: resolves the name once (the agent's proxy records it), then measures. */
const CLIENT = `
const net = require('node:net');
const dns = require('node:dns');
const get = (address, path) => new Promise((resolve, reject) => {
  const t = process.hrtime.bigint();
  let n = 0;
  const c = net.connect({ host: address, port: 80 }, () => c.write('GET ' + path + ' HTTP/1.1\\r\\nHost: ${NAME}\\r\\nConnection: close\\r\\n\\r\\n'));
  c.on('data', (d) => { n += d.length; });
  c.on('error', reject);
  c.on('end', () => resolve({ ms: Number(process.hrtime.bigint() - t) / 1e6, bytes: n }));
});
/** POSTs BIG bytes (by Content-Length, or chunked in 1 MiB chunks); the ms until the server's count came back. */
const up = (address, chunked) => new Promise((resolve, reject) => {
  const t = process.hrtime.bigint();
  const piece = Buffer.alloc(1 << 20, 121);
  let reply = '';
  const c = net.connect({ host: address, port: 80 }, async () => {
    c.write('POST /up HTTP/1.1\\r\\nHost: ${NAME}\\r\\nConnection: close\\r\\n' +
      (chunked ? 'Transfer-Encoding: chunked\\r\\n\\r\\n' : 'Content-Length: ${BIG}\\r\\n\\r\\n'));
    for (let i = 0; i < ${BIG >> 20}; i++) {
      const ok = chunked ? (c.write('100000\\r\\n'), c.write(piece), c.write('\\r\\n')) : c.write(piece);
      if (!ok) await new Promise((r) => c.once('drain', r));
    }
    if (chunked) c.write('0\\r\\n\\r\\n');
  });
  c.on('data', (d) => { reply += d; });
  c.on('error', reject);
  c.on('end', () => {
    if (!reply.endsWith('\\r\\n\\r\\n${BIG}')) return reject(new Error('upload reply ' + reply.slice(-40)));
    resolve(Number(process.hrtime.bigint() - t) / 1e6);
  });
});
dns.lookup('${NAME}', { family: 4 }, async (e, address) => {
  if (e) throw e;
  const small = [];
  for (let i = 0; i < ${REQUESTS}; i++) small.push((await get(address, '/small')).ms);
  const big = await get(address, '/big');
  if (big.bytes < ${BIG}) throw new Error('short body ' + big.bytes);
  const upMs = await up(address, false);
  const chunkedMs = await up(address, true);
  console.log(JSON.stringify({ small, bigMs: big.ms, upMs, chunkedMs }));
});
`;

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root');
  const user = `cbgate${process.pid % 100000}`;
  const uid = freeAgentUid(11);
  spawnSync('useradd', [
    '--uid',
    String(uid),
    '--user-group',
    '--no-create-home',
    '--shell',
    '/bin/sh',
    user,
  ]);
  const dir = tempDir('cordon-bench-gate-');
  const w = new World('b');
  let server: ChildProcess | undefined;
  let id = '';
  try {
    w.internet.addAddress('lo', `${ADDRESS}/32`);
    await w.serve({ zone: { [NAME]: [{ type: 'A', value: ADDRESS, ttl: 3600 }] } });
    server = w.internet.spawn([process.execPath, '-e', SERVER]);
    await new Promise<void>((resolve, reject) => {
      server!.stdout!.once('data', () => resolve());
      server!.once('exit', (c) => reject(new Error(`server exited ${c}`)));
    });
    id = await startDaemon(w, join(dir, 'config.json'), {
      id: `benchgate${process.pid}`,
      domains: parseDomains(NAME),
      agentDomains: parseDomains(NAME),
      minTtl: 3600,
    });
    const gid = Number(spawnSync('id', ['-g', user], { encoding: 'utf8' }).stdout.trim());
    const who: [string, Runs][] = [
      ['agent (gated)', asUid(w.runner, uid, gid)],
      ['runner (address only)', w.runner],
    ];
    const results = new Map<
      string,
      { small: number[]; mbps: number[]; upMbps: number[]; chunkedMbps: number[] }
    >(who.map(([n]) => [n, { small: [], mbps: [], upMbps: [], chunkedMbps: [] }]));
    for (let round = 0; round < ROUNDS; round++) {
      // ABBA: the machine's drift falls on both alike.
      for (const [name, ns] of round % 2 ? [...who].reverse() : who) {
        const r = ns.try([process.execPath, '-e', CLIENT], 300000);
        if (r.code !== 0) throw new Error(`${name}: ${r.stderr}`);
        const out = JSON.parse(r.stdout) as {
          small: number[];
          bigMs: number;
          upMs: number;
          chunkedMs: number;
        };
        // The first requests compile the client's and the gate's code: dropped.
        results.get(name)!.small.push(...out.small.slice(20));
        const mine = results.get(name)!;
        mine.mbps.push(BIG / 2 ** 20 / (out.bigMs / 1000));
        mine.upMbps.push(BIG / 2 ** 20 / (out.upMs / 1000));
        mine.chunkedMbps.push(BIG / 2 ** 20 / (out.chunkedMs / 1000));
      }
    }
    const load = w.runner.exec(['cat', '/proc/loadavg']).split(' ').slice(0, 3).join(' ');
    const each = (xs: number[]): string => xs.map((m) => m.toFixed(0)).join(', ');
    const rows = [...results].map(
      ([name, r]) =>
        `| ${name} | ${pct(r.small, 50).toFixed(2)} | ${pct(r.small, 95).toFixed(2)} | ${each(r.mbps)} | ${each(r.upMbps)} | ${each(r.chunkedMbps)} |`,
    );
    const [a, b] = [...results.values()];
    const text = [
      '# Web gate benchmark',
      '',
      `Run: \`npx tsx bench/web-gate.ts\` on ${new Date().toISOString()}, load ${load}, node ${process.version}, ${ROUNDS} rounds in ABBA order, ${REQUESTS} requests a round (the first 20 of each dropped), one ${BIG >> 20} MiB body each way a round (the upload once by Content-Length, once chunked).`,
      '',
      '| Client | new connection + small GET p50 (ms) | p95 (ms) | 64 MiB GET (MiB/s, each round) | 64 MiB POST, Content-Length (MiB/s) | 64 MiB POST, chunked (MiB/s) |',
      '| --- | --- | --- | --- | --- | --- |',
      ...rows,
      '',
      `Gate cost per new connection at the median: ${(pct(a.small, 50) - pct(b.small, 50)).toFixed(2)} ms; throughput ratio (median of rounds) GET ${(pct(a.mbps, 50) / pct(b.mbps, 50)).toFixed(2)}x, POST by length ${(pct(a.upMbps, 50) / pct(b.upMbps, 50)).toFixed(2)}x, POST chunked ${(pct(a.chunkedMbps, 50) / pct(b.chunkedMbps, 50)).toFixed(2)}x.`,
      '',
    ].join('\n');
    // The notes after the generated part are kept.
    const file = join(dirname(fileURLToPath(import.meta.url)), 'RESULTS-webgate.md');
    const old = existsSync(file) ? readFileSync(file, 'utf8') : '';
    const notes = old.indexOf('## Notes');
    writeFileSync(file, notes < 0 ? text : `${text}\n${old.slice(notes)}`);
    console.log(text);
  } finally {
    await stop(server);
    await w.destroy(id ? [id] : []);
    spawnSync('userdel', [user]);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
