/**
 * Where a Node DNS proxy's time goes (issue 20's p50 goal), on loopback with no fence:
 * `npx tsx bench/dns-hops.ts` (needs cc and dnsmasq). A client written in C asks one query
 * at a time, so no Node runs on the client's side to dilute the differences, interleaved
 * (blocks of 200 to each path in turn, the first 10 of each dropped) over:
 *  - a C upstream that answers every query itself (the floor: two datagrams);
 *  - a C echo and a Node echo (one datagram in and out: what one Node hop costs);
 *  - a bare Node forwarder and Cordon's proxy (bench/dns-hops-proxy.ts: src/fence/proxy.ts
 *    with its answer cache off and on) to the C upstream;
 *  - dnsmasq to the C upstream, its cache off and on.
 * Then the tail of a new process, as the daemon's first queries after it starts: a fresh
 * proxy (cache off) asked 3800 queries the same way, five starts a variant: V8's defaults,
 * flags that change when V8 compiles, and its threads other than the main one SCHED_IDLE.
 * Results replace the `<!-- hops -->` section of bench/RESULTS-egress.md.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { removeTempDirs, tempDir } from '../test/harness/tmp.js';

const dir = tempDir('cordon-bench-hops-');
const kids: ChildProcess[] = [];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The C parts: an upstream answering `A 10.9.8.7` to anything, an echo, the client. */
const C_UPSTREAM = `#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
int main(int c, char **v) {
  int s = socket(AF_INET, SOCK_DGRAM, 0); struct sockaddr_in a = {0};
  a.sin_family = AF_INET; a.sin_port = htons(atoi(v[1])); a.sin_addr.s_addr = htonl(0x7f000001);
  if (bind(s, (void *)&a, sizeof a)) return 1;
  int echo = c > 2; unsigned char b[4096];
  for (;;) {
    struct sockaddr_in r; socklen_t rl = sizeof r;
    ssize_t n = recvfrom(s, b, sizeof b - 64, 0, (void *)&r, &rl);
    if (n < 17) continue;
    if (echo) { b[2] |= 0x80; sendto(s, b, n, 0, (void *)&r, rl); continue; }
    unsigned char rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4, 10, 9, 8, 7};
    b[2] = 0x81; b[3] = 0x80; b[6] = 0; b[7] = 1; b[10] = 0; b[11] = 0;
    memcpy(b + n, rr, sizeof rr); sendto(s, b, n + sizeof rr, 0, (void *)&r, rl);
  }
}`;
const C_CLIENT = `#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <arpa/inet.h>
#include <sys/socket.h>
static int cmp(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }
int main(int argc, char **argv) {
  int R = atoi(argv[1]), B = atoi(argv[2]), n = argc - 3;
  int s = socket(AF_INET, SOCK_DGRAM, 0); struct timeval tv = {1, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  unsigned char q[] = {0,0,1,0,0,1,0,0,0,0,0,0,5,'b','e','n','c','h',1,'a',4,'t','e','s','t',0,0,1,0,1};
  double *lat = malloc(sizeof(double) * R * B * n); int *cnt = calloc(n, sizeof(int)), lost = 0;
  unsigned short id = 0; unsigned char buf[4096];
  for (int r = 0; r < R; r++) for (int t = 0; t < n; t++) {
    struct sockaddr_in a = {0}; a.sin_family = AF_INET; a.sin_port = htons(atoi(argv[3 + t]));
    a.sin_addr.s_addr = htonl(0x7f000001);
    for (int k = 0; k < B; k++) {
      id++; q[0] = id >> 8; q[1] = id & 255; struct timespec t0, t1; int got = 0;
      clock_gettime(CLOCK_MONOTONIC, &t0); sendto(s, q, sizeof q, 0, (void *)&a, sizeof a);
      for (int tries = 0; tries < 64; tries++) {
        ssize_t m = recv(s, buf, sizeof buf, 0); if (m < 0) break;
        if (m >= 2 && buf[0] == q[0] && buf[1] == q[1]) { got = 1; break; }
      }
      clock_gettime(CLOCK_MONOTONIC, &t1);
      if (!got) { lost++; continue; }
      if (k >= 10) lat[t * R * B + cnt[t]++] = (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3;
    }
  }
  printf("{\\"lost\\":%d,\\"paths\\":[", lost);
  for (int t = 0; t < n; t++) {
    double *l = lat + t * R * B; qsort(l, cnt[t], sizeof(double), cmp);
    printf("%s{\\"p50\\":%.1f,\\"p99\\":%.1f}", t ? "," : "", cnt[t] ? l[cnt[t] / 2] : -1, cnt[t] ? l[cnt[t] * 99 / 100] : -1);
  }
  printf("]}\\n"); return 0;
}`;
const NODE_ECHO = `const s=require('dgram').createSocket('udp4');
  s.on('message',(m,r)=>{m[2]|=0x80;s.send(m,r.port,r.address)});s.bind(+process.argv[1],'127.0.0.1');`;
const NODE_FORWARDER = `const dgram=require('dgram');const s=dgram.createSocket('udp4');const u=dgram.createSocket('udp4');
  const pend=new Map();let next=1;
  s.on('message',(m,r)=>{next=(next+1)&0xffff;pend.set(next,[m.readUInt16BE(0),r.port,r.address]);m.writeUInt16BE(next,0);u.send(m)});
  u.on('message',(m)=>{const id=m.readUInt16BE(0);const p=pend.get(id);if(!p)return;pend.delete(id);m.writeUInt16BE(p[0],0);s.send(m,p[1],p[2])});
  u.connect(+process.argv[2],'127.0.0.1',()=>s.bind(+process.argv[1],'127.0.0.1'));`;

function compile(name: string, source: string): string {
  const src = join(dir, `${name}.c`);
  const out = join(dir, name);
  writeFileSync(src, source);
  const r = spawnSync('cc', ['-O2', '-o', out, src], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cc ${name}: ${r.stderr || r.error?.message}`);
  return out;
}

function started(argv: string[]): ChildProcess {
  const c = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] });
  kids.push(c);
  return c;
}

/** Starts the proxy bundle; resolves once it says it serves (10 s at most). */
function proxy(
  bundle: string,
  port: number,
  cache: 'on' | 'off',
  flags: string[] = [],
): Promise<ChildProcess> {
  const c = started([process.execPath, ...flags, bundle, String(port), String(UPSTREAM), cache]);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`proxy on ${port} did not start`)), 10000);
    c.stdout!.on('data', (d: Buffer) => {
      if (!d.toString().includes('ready')) return;
      clearTimeout(t);
      resolve(c);
    });
  });
}

type Sample = { p50: number; p99: number };

/** `rounds` blocks of `block` queries to each port in turn; each port's p50 and p99 in µs. */
function ask(client: string, ports: number[], rounds = 20, block = 200): Sample[] {
  const r = spawnSync(client, [String(rounds), String(block), ...ports.map(String)], {
    encoding: 'utf8',
    timeout: 120000,
  });
  const out = JSON.parse(r.stdout) as { lost: number; paths: Sample[] };
  if (out.lost) console.warn(`${out.lost} queries unanswered within 1 s`);
  return out.paths;
}

async function stopKid(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const gone = new Promise<void>((r) => c.once('exit', () => r()));
  c.kill('SIGKILL');
  await gone;
}

const UPSTREAM = 25400;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const upstream = compile('upstream', C_UPSTREAM);
  const client = compile('client', C_CLIENT);
  const bundled = join(dir, 'proxy');
  const nccRun = spawnSync('npx', ['ncc', 'build', 'bench/dns-hops-proxy.ts', '-q', '-o', bundled], {
    encoding: 'utf8',
  });
  if (nccRun.status !== 0) throw new Error(`ncc: ${nccRun.stderr}`);
  const bundle = join(bundled, 'index.js');
  writeFileSync(join(bundled, 'package.json'), '{ "type": "module" }\n');

  const paths: [string, number][] = [
    ['C upstream, asked directly (answers itself)', UPSTREAM],
    ['C echo', 25401],
    ['Node echo', 25402],
    ['bare Node forwarder', 25403],
    ["Cordon's proxy, cache off", 25404],
    ["Cordon's proxy, cache on", 25405],
    ['dnsmasq 2.90, cache off', 25406],
    ['dnsmasq 2.90, default cache', 25407],
  ];
  started([upstream, String(UPSTREAM)]);
  started([upstream, '25401', 'echo']);
  started([process.execPath, '-e', NODE_ECHO, '25402']);
  started([process.execPath, '-e', NODE_FORWARDER, '25403', String(UPSTREAM)]);
  await proxy(bundle, 25404, 'off');
  await proxy(bundle, 25405, 'on');
  const dnsmasq = (port: number, extra: string[]): ChildProcess =>
    started([
      'dnsmasq',
      '--keep-in-foreground',
      '--no-resolv',
      '--no-hosts',
      `--port=${port}`,
      '--listen-address=127.0.0.1',
      '--bind-interfaces',
      `--server=127.0.0.1#${UPSTREAM}`,
      '--user=root',
      '--pid-file=',
      ...extra,
    ]);
  dnsmasq(25406, ['--cache-size=0']);
  dnsmasq(25407, []);
  await sleep(800);
  const ports = paths.map(([, p]) => p);
  // Warm every path (V8 compiles the Node ones), then three measured runs.
  ask(client, ports, 10);
  const runs = [ask(client, ports), ask(client, ports), ask(client, ports)];

  // A new process's first queries, five starts a variant.
  const variants: [string, string[], boolean][] = [
    ["V8's defaults", [], false],
    ['--no-concurrent-recompilation (optimize on the main thread)', ['--no-concurrent-recompilation'], false],
    ['--single-threaded', ['--single-threaded'], false],
    ['--interrupt-budget=8192 (tier up sooner)', ['--interrupt-budget=8192'], false],
    ['--max-opt=1 (no optimizing compiler)', ['--max-opt=1'], false],
    ['threads other than the main one SCHED_IDLE (chrt)', [], true],
  ];
  const cold: { name: string; first: Sample[]; after: Sample[] }[] = [];
  for (const [name, flags, idle] of variants) {
    const first: Sample[] = [];
    const after: Sample[] = [];
    for (let i = 0; i < 5; i++) {
      const c = await proxy(bundle, 25410, 'off', flags);
      if (idle)
        for (const t of readdirSync(`/proc/${c.pid}/task`))
          if (Number(t) !== c.pid) spawnSync('chrt', ['-i', '-p', '0', t]);
      first.push(ask(client, [25410])[0]);
      after.push(ask(client, [25410])[0]);
      await stopKid(c);
      kids.splice(kids.indexOf(c), 1);
    }
    cold.push({ name, first, after });
  }

  const load = loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  const f = (x: number): string => String(Math.round(x) || 0);
  const upstreamP50 = median(runs.map((r) => r[0].p50));
  const lines = [
    '<!-- hops -->',
    `Run ${new Date().toISOString()} (\`npx tsx bench/dns-hops.ts\`), Node ${process.version}, load average ${load} at the end. Loopback, no fence, one query at a time from a client written in C, interleaved (20 blocks of 200 to each path, first 10 of each dropped), after a warm-up pass; three runs, µs. "Over the floor" is the path's p50 less the C upstream's asked directly (${f(upstreamP50)} µs): what the hop in the middle adds.`,
    '',
    '| path | p50 per run | p99 per run | p50 over the floor (median) |',
    '| --- | --- | --- | ---: |',
    ...paths.map(([name], i) => {
      const p50s = runs.map((r) => r[i].p50);
      return `| ${name} | ${p50s.map(f).join(', ')} | ${runs.map((r) => f(r[i].p99)).join(', ')} | ${i === 0 ? '-' : f(median(p50s) - upstreamP50)} |`;
    }),
    '',
    "A new process's first 3800 queries (Cordon's proxy, cache off, started afresh five times a variant), then its next 3800:",
    '',
    '| variant | first queries p50 (median) | first queries p99 per start | next p50 (median) | next p99 (median) |',
    '| --- | ---: | --- | ---: | ---: |',
    ...cold.map(
      (c) =>
        `| ${c.name} | ${f(median(c.first.map((s) => s.p50)))} | ${c.first.map((s) => f(s.p99)).join(', ')} | ${f(median(c.after.map((s) => s.p50)))} | ${f(median(c.after.map((s) => s.p99)))} |`,
    ),
    '<!-- end of hops -->',
  ];
  const file = 'bench/RESULTS-egress.md';
  const text = readFileSync(file, 'utf8');
  const at = text.indexOf('<!-- hops -->');
  const end = text.indexOf('<!-- end of hops -->');
  const section = lines.join('\n');
  writeFileSync(
    file,
    at >= 0 && end > at
      ? text.slice(0, at) + section + text.slice(end + '<!-- end of hops -->'.length)
      : `${text.trimEnd()}\n\n## Where the time goes: loopback, a C client (issue 20): \`npx tsx bench/dns-hops.ts\`\n\n${section}\n`,
  );
  console.log(section);
}

try {
  await main();
} finally {
  for (const c of kids) await stopKid(c);
  removeTempDirs();
}
