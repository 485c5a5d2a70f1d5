/**
 * Egress benchmarks, run as root: `npx tsx bench/egress.ts`. In a runner/internet
 * namespace pair (the e2e tests' layout), with dnsmasq as the fast upstream:
 *  1. DNS latency (p50/p99, one query at a time) and throughput (dnsperf) of the same
 *     upstream asked directly, through a dnsmasq forwarder with its cache off and with its
 *     default cache, and through Cordon's proxy with its answer cache (the default) and
 *     without (`CORDON_EGRESS_DNS_CACHE=off`). dnsmasq is measured twice: with the fence
 *     down, and with the fence up beside the proxy, running as the proxy's user (the only
 *     one the fence lets ask the upstream), so the two pay the same firewall. Latency is
 *     measured interleaved (blocks of queries to each path in turn from one client), so
 *     the shared machine's drift falls on every path alike. A bare Node forwarder and a
 *     bare Node UDP echo under the same fence show what any Node proxy costs here;
 *  2. TCP throughput (iperf3) to an allowed address with and without the fence;
 *  3. setup: action start to fence enforced (the `setup-ms` output) and the whole step.
 * `BENCH_FLOOD=1` runs the flood mode instead (floodBench below): refused names flooded
 * from one socket while allowed names are looked up, through the proxy and through a
 * dnsmasq forwarder side by side; its results replace the `<!-- flood -->` section.
 * Writes bench/RESULTS-egress.md up to its `<!-- end of generated results -->` line; the
 * notes after it are kept.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Job, removeJobs } from '../src/devkit/run-action.js';
import { Netns, stop } from '../src/devkit/netns.js';
import { fenceId } from '../src/rootd/protocol.js';
import { BENCH_NEEDS, provide } from '../src/devkit/machine.js';
import { World } from '../test/e2e/egress-topology.js';

const UP = '203.0.113.53';
const WEB = '203.0.113.10';
const NAME = 'bench.a.test';
// The proxy's user (DNS_USER in src/rootd/main.ts, not imported: that module runs on import).
const PROXY_USER = 'cordon-dns';

function started(ns: Netns, argv: string[]): ChildProcess {
  const c = ns.spawn(argv);
  c.stderr!.on('data', () => undefined);
  c.stdout!.on('data', () => undefined);
  return c;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Target {
  server: string;
  port: number;
}

/** Queries the latency client sends to an echo inside itself before it measures anything. */
const CLIENT_WARMUP = 4000;

/**
 * One query at a time from one client inside the namespace, interleaved: `block` queries to
 * each target in turn, `rounds` times (the first 10 of each block dropped). Returns each
 * target's sorted latencies in microseconds.
 */
function latencies(ns: Netns, targets: Target[], rounds: number, block: number): number[][] {
  const script = `
    const dgram=require('dgram');const s=dgram.createSocket('udp4');
    const [nm,R,B,W,...ts]=process.argv.slice(1);const targets=ts.map(t=>t.split(' '));
    const q=Buffer.concat([Buffer.from([0,0,1,0,0,1,0,0,0,0,0,0]),...nm.split('.').map(l=>Buffer.concat([Buffer.from([l.length]),Buffer.from(l)])),Buffer.from([0,0,1,0,1])]);
    const out=targets.map(()=>[]);let r=0,ti=0,k=0,t=0n,id=0,rt,warm=+W;
    // First W queries to an echo inside this process: the client's own code is warm before
    // the first query is measured, so a pass's first queries are the server's first only.
    const e=dgram.createSocket('udp4');e.on('message',(m,ri)=>e.send(m,ri.port,ri.address));
    const fin=()=>{console.log(JSON.stringify(out));process.exit(0)};
    // A lost reply: the query is sent again (new id) after 500 ms, that wait not counted.
    const go=()=>{id=(id+1)&0xffff;q.writeUInt16BE(id,0);t=process.hrtime.bigint();clearTimeout(rt);rt=setTimeout(go,500);
      if(warm>0)s.send(q,e.address().port,'127.0.0.1');else s.send(q,+targets[ti][1],targets[ti][0]);};
    s.on('message',(m)=>{if(m.readUInt16BE(0)!==id)return;clearTimeout(rt);const d=Number(process.hrtime.bigint()-t)/1000;
      if(warm>0){warm--;return go();}
      if(k>=10)out[ti].push(d);if(++k>=+B){k=0;if(++ti>=targets.length){ti=0;if(++r>=+R)return fin();}}go();});
    setTimeout(fin,60000);e.bind(0,'127.0.0.1',go);`;
  const out = ns.exec(
    [
      process.execPath,
      '-e',
      script,
      NAME,
      String(rounds),
      String(block),
      String(CLIENT_WARMUP),
      ...targets.map((t) => `${t.server} ${t.port}`),
    ],
    { timeoutMs: 90000 },
  );
  return (JSON.parse(out) as number[][]).map((l) => l.sort((a, b) => a - b));
}

/** The least any Node DNS forwarder does (no parsing, no checks), as the proxy's user. */
const NODE_FORWARDER = `
  const dgram=require('dgram');const s=dgram.createSocket('udp4');const u=dgram.createSocket('udp4');
  const pend=new Map();let next=1;
  s.on('message',(m,r)=>{next=(next+1)&0xffff;pend.set(next,[m.readUInt16BE(0),r.port,r.address]);m.writeUInt16BE(next,0);u.send(m)});
  u.on('message',(m)=>{const id=m.readUInt16BE(0);const p=pend.get(id);if(!p)return;pend.delete(id);m.writeUInt16BE(p[0],0);s.send(m,p[1],p[2])});
  u.connect(53,process.argv[2],()=>s.bind(+process.argv[1],'127.0.0.1'));`;
/** The least any Node UDP server does: each datagram sent back as it came, marked an answer. */
const NODE_ECHO = `
  const s=require('dgram').createSocket('udp4');
  s.on('message',(m,r)=>{m[2]|=0x80;s.send(m,r.port,r.address)});s.bind(+process.argv[1],'127.0.0.1');`;

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}

/** dnsperf for `seconds` with `clients` sockets; returns queries per second and lost. */
function qps(ns: Netns, server: string, port: number, seconds: number): { qps: number; lost: string } {
  const file = '/tmp/cordon-bench-egress-queries.txt';
  writeFileSync(file, `${NAME} A\n`);
  const out = ns.exec(
    [
      'dnsperf',
      '-d',
      file,
      '-s',
      server,
      '-p',
      String(port),
      '-l',
      String(seconds),
      '-c',
      // 16 sockets: one socket past the fence's per-socket limit (DNS_FLOOD_PER_SOURCE) loses the rest.
      '16',
      '-q',
      '500',
      '-T',
      '1',
    ],
    {
      timeoutMs: (seconds + 15) * 1000,
    },
  );
  return {
    qps: Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1] ?? 0),
    lost: /Queries lost:\s+(\S+ \([^)]*\))/.exec(out)?.[1] ?? '?',
  };
}

/** One iperf3 run's Gbit/s; a run iperf3 reports as failed (its server busy) is tried again, 3 times at most. */
function iperf(ns: Netns, seconds: number): number {
  let error = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const out = ns.exec(['iperf3', '-c', WEB, '-t', String(seconds), '-J'], {
      timeoutMs: (seconds + 15) * 1000,
      allowFail: true,
    });
    const j = JSON.parse(out || '{}') as {
      error?: string;
      end?: { sum_received?: { bits_per_second: number } };
    };
    const bps = j.end?.sum_received?.bits_per_second;
    if (bps !== undefined) return bps / 1e9;
    error = j.error ?? 'no result';
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
  }
  throw new Error(`iperf3 failed 3 times: ${error}`);
}

/**
 * Looks up the bench name every `everyMs` for `seconds`, each from a new socket (as
 * getaddrinfo does), sent again after 1 s without an answer (up to 5 times). Prints the
 * latencies in µs as JSON, -1 for a lookup never answered.
 */
const LOOKUPS = `
  const dgram=require('dgram');const [nm,port,secs,every]=process.argv.slice(1);
  const q=Buffer.concat([Buffer.from([0,0,1,0,0,1,0,0,0,0,0,0]),...nm.split('.').map(l=>Buffer.concat([Buffer.from([l.length]),Buffer.from(l)])),Buffer.from([0,0,1,0,1])]);
  const out=[];let id=0;const end=Date.now()+secs*1000;
  const one=()=>new Promise((res)=>{const s=dgram.createSocket('udp4');id=(id+1)&0xffff;q.writeUInt16BE(id,0);
    const t=process.hrtime.bigint();let tries=0,timer;
    const fin=(v)=>{clearTimeout(timer);s.close();res(v)};
    const go=()=>{if(++tries>5)return fin(-1);timer=setTimeout(go,1000);s.send(q,+port,'127.0.0.1')};
    s.on('message',(m)=>{if(m.readUInt16BE(0)===id)fin(Number(process.hrtime.bigint()-t)/1000)});go();});
  (async()=>{while(Date.now()<end){out.push(await one());await new Promise(r=>setTimeout(r,+every))}console.log(JSON.stringify(out))})();`;

/** Runs `argv` in `ns` to its end (killed after `timeoutMs`); its stdout. */
function output(ns: Netns, argv: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const c = ns.spawn(argv);
    let out = '';
    c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr!.on('data', () => undefined);
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('close', () => {
      clearTimeout(t);
      resolve(out);
    });
  });
}

/**
 * The flood mode: the fence up; a dnsmasq forwarder beside the proxy as the proxy's user,
 * set up as the issue measured it (the allowed zone forwarded, everything else NXDOMAIN
 * locally, no cache). For each path in turn (ABBA over FLOOD_ROUNDS rounds), one socket
 * sends refused names as fast as it can for FLOOD_SECS while the allowed name is looked
 * up every 300 ms; then both paths are measured without a flood, interleaved.
 */
async function floodBench(
  w: World,
  job: Job,
  kids: ChildProcess[],
  dnsmasq: (port: number, extra: string[], user: string) => ChildProcess,
): Promise<void> {
  const FLOOD_ROUNDS = Number(process.env.BENCH_FLOOD_ROUNDS ?? 4);
  const FLOOD_SECS = 8;
  const inputs = { 'allowed-domains': '*.a.test', 'allowed-ips': WEB, preset: 'none' };
  const m = await job.run('egress', 'main', { inputs, wrap: w.runner.wrap, timeoutMs: 30000 });
  if (m.code !== 0) throw new Error(`main failed: ${m.stdout}`);
  const zone = [`--server=/a.test/${UP}`, '--address=/#/'];
  kids.push(dnsmasq(5302, ['--cache-size=0', ...zone], PROXY_USER), dnsmasq(5303, zone, PROXY_USER));
  await sleep(800);
  const paths: [string, number][] = [
    ['proxy', 53],
    ['dnsmasq', 5302],
  ];
  const during = new Map<string, number[]>(paths.map(([k]) => [k, []]));
  const rates = new Map<string, number[]>(paths.map(([k]) => [k, []]));
  const flooder = new URL('./dns-flood.py', import.meta.url).pathname;
  for (let r = 0; r < FLOOD_ROUNDS; r++) {
    for (const [k, port] of r % 2 === 0 ? paths : [...paths].reverse()) {
      const flood = output(
        w.runner,
        ['/usr/bin/python3', flooder, '127.0.0.1', String(port), String(FLOOD_SECS)],
        (FLOOD_SECS + 10) * 1000,
      );
      await sleep(300);
      const look = output(
        w.runner,
        [process.execPath, '-e', LOOKUPS, NAME, String(port), String(FLOOD_SECS - 1), '300'],
        (FLOOD_SECS + 30) * 1000,
      );
      const [sent, got] = await Promise.all([flood, look]);
      rates.get(k)!.push(Number(sent) / FLOOD_SECS);
      during.get(k)!.push(...(JSON.parse(got) as number[]));
      await sleep(1500);
    }
  }
  const report = w.runner.exec(['cat', '/proc/loadavg']).split(' ').slice(0, 3).join(' ');
  const calm = latencies(
    w.runner,
    [53, 5302, 5303].map((port) => ({ server: '127.0.0.1', port })),
    20,
    200,
  );
  const out: string[] = [];
  out.push(
    `Run ${new Date().toISOString()} (\`BENCH_FLOOD=1\`), Node ${process.version}, load average ${report} after the floods. ${FLOOD_ROUNDS} floods per path in ABBA order, each ${FLOOD_SECS} s from one UDP socket (bench/dns-flood.py: distinct refused names, as fast as it can), the allowed name looked up every 300 ms from a new socket meanwhile (sent again after 1 s unanswered, 5 tries). dnsmasq: the allowed zone forwarded, everything else NXDOMAIN locally, cache off, as the proxy's user beside it under the same fence (the fence's per-socket limit is on the proxy's ports only).`,
  );
  out.push('');
  out.push(
    '| during the flood | flood q/s sent (per flood) | lookups | answered | over 1 s | p50 µs | p99 µs | max µs |',
  );
  out.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const [k] of paths) {
    const l = during.get(k)!;
    const ok = l.filter((x) => x >= 0).sort((a, b) => a - b);
    out.push(
      `| ${k === 'proxy' ? 'Cordon proxy' : 'dnsmasq forwarder'} | ${rates
        .get(k)!
        .map((x) => x.toFixed(0))
        .join(
          ', ',
        )} | ${l.length} | ${ok.length} | ${l.filter((x) => x < 0 || x > 1e6).length} | ${pct(ok, 50).toFixed(0)} | ${pct(ok, 99).toFixed(0)} | ${ok[ok.length - 1].toFixed(0)} |`,
    );
  }
  out.push('');
  out.push('| without a flood (interleaved, 20 blocks of 200) | p50 µs | p99 µs |');
  out.push('| --- | ---: | ---: |');
  [
    'Cordon proxy (answer cache on, the default)',
    'dnsmasq forwarder, cache off',
    'dnsmasq forwarder, default cache',
  ].forEach((name, i) =>
    out.push(`| ${name} | ${pct(calm[i], 50).toFixed(0)} | ${pct(calm[i], 99).toFixed(0)} |`),
  );
  for (const l of out) console.log(l);
  const file = new URL('./RESULTS-egress.md', import.meta.url);
  const [OPEN, CLOSE] = ['<!-- flood -->', '<!-- end of flood -->'];
  const old = readFileSync(file, 'utf8');
  const section = `${OPEN}\n${out.join('\n')}\n${CLOSE}`;
  writeFileSync(
    file,
    old.includes(OPEN)
      ? old.slice(0, old.indexOf(OPEN)) + section + old.slice(old.indexOf(CLOSE) + CLOSE.length)
      : `${old}\n${section}\n`,
  );
}

const lines: string[] = [];
const log = (s: string): void => {
  console.log(s);
  lines.push(s);
};

provide(BENCH_NEEDS, 'the egress benchmark', (l) => console.log(`bench: ${l}`));
const w = new World('x');
const kids: ChildProcess[] = [];
let job: Job | undefined;
try {
  // The upstream: dnsmasq answering the bench name itself, fast enough not to be the limit.
  kids.push(
    started(w.internet, [
      'dnsmasq',
      '--keep-in-foreground',
      '--no-resolv',
      '--no-hosts',
      '--port=53',
      `--listen-address=${UP}`,
      '--bind-interfaces',
      `--address=/${NAME}/${WEB}`,
      // Answered with a TTL, as real names are (dnsmasq's own answers default to TTL 0,
      // which no cache keeps).
      '--local-ttl=300',
      '--cache-size=0',
      '--user=root',
      '--pid-file=',
      '--dns-forward-max=1000',
    ]),
  );
  kids.push(started(w.internet, ['iperf3', '-s', '-B', WEB]));
  await sleep(800);
  const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
  // Interleaved latency: LAT_ROUNDS blocks of LAT_BLOCK queries to each path of a phase.
  const LAT_ROUNDS = 20;
  const LAT_BLOCK = 200;
  const SECS = 4;
  // Data path: PAIRS pairs of iperf3 runs of IPERF_SECS each, with and without the fence.
  const PAIRS = 10;
  const IPERF_SECS = 2;
  // BENCH_DNS_ONLY=1: the DNS paths only, printed, no results file (for trying changes).
  const dnsOnly = process.env.BENCH_DNS_ONLY === '1';
  // dnsmasq as a forwarder: without a cache (every query forwarded) and with its default
  // cache (150 names). As root on 5300/5301, asked while the fence is down; as the proxy's
  // user on 5302/5303, asked while it is up (started once that user exists).
  const dnsmasq = (port: number, extra: string[], user: string): ChildProcess =>
    started(w.runner, [
      'dnsmasq',
      '--keep-in-foreground',
      '--no-resolv',
      '--no-hosts',
      `--port=${port}`,
      '--listen-address=127.0.0.1',
      '--bind-interfaces',
      `--server=${UP}`,
      ...extra,
      `--user=${user}`,
      '--pid-file=',
      '--dns-forward-max=1000',
    ]);
  kids.push(dnsmasq(5300, ['--cache-size=0'], 'root'), dnsmasq(5301, [], 'root'));
  await sleep(500);
  if (process.env.BENCH_FLOOD === '1') {
    job = new Job();
    await floodBench(w, job, kids, dnsmasq);
  } else {
    /** Steady: the second pass of a phase; cold: its first, the daemon's first queries since it started. */
    type Sample = { p50: number; p99: number; coldP50: number; coldP99: number; qps?: number };
    // Paths measured with the fence down, up with the proxy's cache on, up with it off.
    const down = { direct: UP, dnsmasq: 5300, dnsmasqCache: 5301 };
    const upOn = {
      proxy: 53,
      fencedDnsmasq: 5302,
      fencedDnsmasqCache: 5303,
      nodeForwarder: 5304,
      nodeEcho: 5305,
    };
    const upOff = { proxyNoCache: 53, fencedDnsmasqOff: 5302, nodeForwarderOff: 5304 };
    const withQps = new Set([
      'direct',
      'dnsmasq',
      'dnsmasqCache',
      'proxy',
      'fencedDnsmasq',
      'fencedDnsmasqCache',
      'proxyNoCache',
      'nodeForwarder',
      'nodeEcho',
      'nodeForwarderOff',
    ]);
    const paths: Record<string, Sample[]> = {};
    const measure = (phase: Record<string, string | number>): void => {
      const entries = Object.entries(phase).map(([k, v]) =>
        typeof v === 'string' ? { k, server: v, port: 53 } : { k, server: '127.0.0.1', port: v },
      );
      // Two passes: the first is each path's first queries since the fence (and the
      // daemon) started, the second the same once every path has answered thousands.
      const cold = latencies(w.runner, entries, LAT_ROUNDS, LAT_BLOCK);
      const lats = latencies(w.runner, entries, LAT_ROUNDS, LAT_BLOCK);
      entries.forEach((e, i) => {
        const sample: Sample = {
          p50: pct(lats[i], 50),
          p99: pct(lats[i], 99),
          coldP50: pct(cold[i], 50),
          coldP99: pct(cold[i], 99),
        };
        if (withQps.has(e.k)) sample.qps = qps(w.runner, e.server, e.port, SECS).qps;
        (paths[e.k] ??= []).push(sample);
      });
    };
    const without: number[] = [];
    const withFence: number[] = [];
    const setups: number[] = [];
    const steps: number[] = [];
    job = new Job();
    // The web address is a static allowed IP, so the throughput phase does not depend on DNS.
    const inputs = { 'allowed-domains': '*.a.test', 'allowed-ips': WEB, preset: 'none' };
    const steady = job;
    /** Starts the fence through the action, as a job's step does; records how long it took. */
    const fenceUp = async (env: Record<string, string> = {}, record = true): Promise<void> => {
      const m = await steady.run('egress', 'main', { inputs, env, wrap: w.runner.wrap, timeoutMs: 30000 });
      if (m.code !== 0) throw new Error(`main failed: ${m.stdout}`);
      if (!record) return;
      setups.push(Number(m.outputs['setup-ms']));
      steps.push(m.durationMs);
    };
    /** Down again: stop the daemon (by the pid it recorded), remove the table, put the resolver back. */
    const fenceDown = (): void => {
      const st = JSON.parse(
        w.runner.exec(['cat', `/run/cordon/egress-${fenceId(steady.runnerTemp)}/state.json`]),
      ) as { pid: number };
      process.kill(st.pid, 'SIGKILL');
      w.runner.exec(['nft', 'delete', 'table', 'inet', 'cordon']);
      writeFileSync(`/etc/netns/${w.runner.name}/resolv.conf`, `nameserver ${UP}\n`);
    };
    let fencedStarted = false;
    for (let round = 0; round < ROUNDS; round++) {
      measure(down);
      for (const cache of [true, false]) {
        await fenceUp(cache ? {} : { CORDON_EGRESS_DNS_CACHE: 'off' });
        if (!fencedStarted) {
          // The proxy's user exists once the fence has started.
          const asProxyUser = ['setpriv', `--reuid=${PROXY_USER}`, `--regid=${PROXY_USER}`, '--clear-groups'];
          kids.push(
            dnsmasq(5302, ['--cache-size=0'], PROXY_USER),
            dnsmasq(5303, [], PROXY_USER),
            started(w.runner, [...asProxyUser, process.execPath, '-e', NODE_FORWARDER, '5304', UP]),
            started(w.runner, [...asProxyUser, process.execPath, '-e', NODE_ECHO, '5305']),
          );
          fencedStarted = true;
          await sleep(800);
        }
        measure(cache ? upOn : upOff);
        fenceDown();
        await sleep(300);
      }
    }
    if (dnsOnly) {
      for (const [k, v] of Object.entries(paths)) console.log(k, JSON.stringify(v));
      console.log('load', w.runner.exec(['cat', '/proc/loadavg']));
    }
    // Data path: one fence, its table removed and loaded again between runs, so the two
    // sides alternate within seconds of each other (the web address is a static allowed IP).
    if (!dnsOnly) {
      await fenceUp({}, false);
      const table = w.runner.exec(['nft', 'list', 'table', 'inet', 'cordon']);
      // Pairs in ABBA order (with-without, then without-with), so a drift in the machine's
      // speed during a pair does not always favour the same side; each pair gives a ratio.
      for (let i = 0; i < PAIRS; i++) {
        for (const fenced of i % 2 === 0 ? [true, false] : [false, true]) {
          if (!fenced) w.runner.exec(['nft', 'delete', 'table', 'inet', 'cordon']);
          (fenced ? withFence : without).push(iperf(w.runner, IPERF_SECS));
          if (!fenced) w.runner.exec(['nft', '-f', '-'], { input: table });
        }
      }
      fenceDown();
    }
    for (let i = 0; i < (dnsOnly ? 0 : 2); i++) {
      await fenceUp();
      fenceDown();
    }

    if (!dnsOnly) {
      const med = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
      const load = w.runner.exec(['cat', '/proc/loadavg']).split(' ').slice(0, 3).join(' ');
      const dnsmasqVersion = /version (\S+)/.exec(w.runner.exec(['dnsmasq', '--version']))?.[1] ?? '?';
      log('# Egress benchmarks');
      log('');
      log(
        `Run ${new Date().toISOString()} on this machine (2 cores shared with other jobs; load average ${load} at the end, so expect wide spread), kernel ${w.runner.exec(['uname', '-r']).trim()}, Node ${process.version}, through a veth pair between two network namespaces. The upstream is dnsmasq answering \`${NAME}\` itself. ${ROUNDS} rounds, each measuring every path in three phases: fence down, fence up with the proxy's cache on, fence up with it off. Every query asks the same name, so a cache answers all but the first: the cached rows are the best case for a cache, the uncached rows the worst. Latency: sequential queries of one name from one Node client, interleaved within a phase (${LAT_ROUNDS} blocks of ${LAT_BLOCK} queries to each path in turn, the first 10 of each block dropped), µs, in two passes a phase: "first queries" are the first pass, begun as soon as the fence (so the proxy's daemon) had started, "steady" the second, right after it. Throughput: dnsperf, 16 sockets, up to 500 outstanding, ${SECS} s. "Fenced" dnsmasq runs beside the proxy while the fence is up, as the proxy's user (the only one the fence lets ask the upstream).`,
      );
      log('');
      log(
        '| path | p50 µs, steady (median of rounds) | p99 µs, steady | p50 µs, first queries | p99 µs, first queries | queries/s | per round (steady p50 / q/s) |',
      );
      log('| --- | ---: | ---: | ---: | ---: | ---: | --- |');
      const names: Record<string, string> = {
        direct: 'fence down: upstream asked directly',
        dnsmasq: `fence down: dnsmasq ${dnsmasqVersion} forwarder, cache off`,
        dnsmasqCache: `fence down: dnsmasq ${dnsmasqVersion} forwarder, default cache`,
        proxy: 'fence up: Cordon proxy, answer cache on (default)',
        fencedDnsmasq: 'fence up: dnsmasq, cache off (phase with the proxy cache on)',
        fencedDnsmasqCache: 'fence up: dnsmasq, default cache (phase with the proxy cache on)',
        nodeForwarder: 'fence up: bare Node forwarder, no checks (phase with the proxy cache on)',
        nodeEcho: 'fence up: bare Node UDP echo (phase with the proxy cache on)',
        proxyNoCache: 'fence up: Cordon proxy, answer cache off',
        fencedDnsmasqOff: 'fence up: dnsmasq, cache off (phase with the proxy cache off)',
        nodeForwarderOff: 'fence up: bare Node forwarder, no checks (phase with the proxy cache off)',
      };
      const qpsText = (x: Sample): string => (x.qps === undefined ? '' : ` / ${x.qps.toFixed(0)}`);
      for (const [k, v] of Object.entries(paths)) {
        const qs = v.filter((x) => x.qps !== undefined).map((x) => x.qps!);
        log(
          `| ${names[k]} | ${med(v.map((x) => x.p50)).toFixed(0)} | ${med(v.map((x) => x.p99)).toFixed(0)} | ${med(v.map((x) => x.coldP50)).toFixed(0)} | ${med(v.map((x) => x.coldP99)).toFixed(0)} | ${qs.length ? med(qs).toFixed(0) : '-'} | ${v.map((x) => `${x.p50.toFixed(0)}${qpsText(x)}`).join(', ')} |`,
        );
      }
      log('');
      const p50 = (k: string): number => med(paths[k].map((x) => x.p50));
      const p99 = (k: string, cold = false): number => med(paths[k].map((x) => (cold ? x.coldP99 : x.p99)));
      const q = (k: string): number => med(paths[k].map((x) => x.qps!));
      const verdict = (ok: boolean): string => (ok ? 'yes' : '**no**');
      log('| DNS goal | comparison | result | met |');
      log('| --- | --- | ---: | --- |');
      for (const [proxy, dnsmasq, what] of [
        [
          'proxyNoCache',
          'fencedDnsmasqOff',
          'every query forwarded (both cache off), same fence, interleaved, steady',
        ],
        [
          'proxy',
          'fencedDnsmasqCache',
          'both caching (the default of each), same fence, interleaved, steady',
        ],
        ['proxyNoCache', 'dnsmasq', 'every query forwarded, dnsmasq without the fence (other phase)'],
        ['proxy', 'dnsmasqCache', 'both caching, dnsmasq without the fence (other phase)'],
        ['nodeForwarder', 'fencedDnsmasq', 'for scale: a bare Node forwarder, same fence, interleaved'],
        ['nodeEcho', 'fencedDnsmasqCache', "for scale: a bare Node echo against dnsmasq's cache, same fence"],
      ]) {
        const r = p50(proxy) / p50(dnsmasq);
        log(
          `| p50 <= 1.2x dnsmasq | ${what} | ${r.toFixed(2)}x (${p50(proxy).toFixed(0)} vs ${p50(dnsmasq).toFixed(0)} µs) | ${verdict(r <= 1.2)} |`,
        );
      }
      for (const [proxy, dnsmasq, what, cold] of [
        ['proxyNoCache', 'fencedDnsmasqOff', 'every query forwarded, same fence, steady', false],
        ['proxy', 'fencedDnsmasqCache', 'both caching, same fence, steady', false],
        ['proxyNoCache', 'fencedDnsmasqOff', "every query forwarded, the daemon's first queries", true],
        ['proxy', 'fencedDnsmasqCache', "both caching, the daemon's first queries", true],
        ['nodeForwarder', 'fencedDnsmasq', 'for scale: a bare Node forwarder, steady', false],
      ] as const) {
        const r = p99(proxy, cold) / p99(dnsmasq, cold);
        log(
          `| p99 <= 2x dnsmasq | ${what} | ${r.toFixed(2)}x (${p99(proxy, cold).toFixed(0)} vs ${p99(dnsmasq, cold).toFixed(0)} µs) | ${verdict(r <= 2)} |`,
        );
      }
      for (const k of ['proxy', 'proxyNoCache']) {
        log(`| >= 20k queries/s | ${names[k]} | ${q(k).toFixed(0)} | ${verdict(q(k) >= 20000)} |`);
      }
      log('');
      log(
        `| TCP to an allowed address (iperf3, ${IPERF_SECS} s a run, ${PAIRS} pairs in ABBA order) | Gbit/s per run | median |`,
      );
      log('| --- | --- | ---: |');
      log(
        `| without the fence | ${without.map((b) => b.toFixed(2)).join(', ')} | ${med(without).toFixed(2)} |`,
      );
      log(
        `| with the fence | ${withFence.map((b) => b.toFixed(2)).join(', ')} | ${med(withFence).toFixed(2)} |`,
      );
      log('');
      const ratios = withFence.map((x, i) => x / without[i]);
      log(
        `With/without: median of the ${PAIRS} pairs' ratios ${med(ratios).toFixed(3)} (per pair ${ratios.map((r) => r.toFixed(2)).join(', ')}); ratio of the medians ${(med(withFence) / med(without)).toFixed(3)} (goal >= 0.97).`,
      );
      log('');
      log(
        `Setup, action start to fence enforced (\`setup-ms\`, ${setups.length} runs): ${setups.join(', ')} ms, median ${med(setups)} ms (goal <= 500). Whole main step including Node start: median ${med(steps)} ms.`,
      );
      const file = new URL('./RESULTS-egress.md', import.meta.url);
      const MARK = '<!-- end of generated results -->';
      const old = existsSync(file) ? readFileSync(file, 'utf8') : '';
      const kept = old.includes(MARK) ? old.slice(old.indexOf(MARK)) : `${MARK}\n`;
      writeFileSync(file, `${lines.join('\n')}\n\n${kept}`);
    }
  }
} finally {
  for (const k of kids) await stop(k);
  await w.destroy(job ? [fenceId(job.runnerTemp)] : []);
  // The jobs' folders, and dnsperf's query file: nothing of the bench is left in /tmp.
  removeJobs();
  rmSync('/tmp/cordon-bench-egress-queries.txt', { force: true });
}
