/**
 * Egress benchmarks, run as root: `npx tsx bench/egress.ts`. In a runner/internet
 * namespace pair (the e2e tests' layout), with dnsmasq as the fast upstream:
 *  1. DNS latency (p50/p99, one query at a time) and throughput (dnsperf) of the same
 *     upstream asked directly, through a dnsmasq forwarder, and through Cordon's proxy;
 *  2. TCP throughput (iperf3) to an allowed address with and without the fence;
 *  3. setup: action start to fence enforced (the `setup-ms` output) and the whole step.
 * Writes bench/RESULTS-egress.md.
 */
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { Job } from '../src/devkit/run-action.js';
import { Netns, stop } from '../src/devkit/netns.js';
import { fenceId } from '../src/egress/control.js';
import { World } from '../test/e2e/egress-topology.js';

const UP = '203.0.113.53';
const WEB = '203.0.113.10';
const NAME = 'bench.a.test';

function started(ns: Netns, argv: string[]): ChildProcess {
  const c = ns.spawn(argv);
  c.stderr!.on('data', () => undefined);
  c.stdout!.on('data', () => undefined);
  return c;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One query at a time from inside the namespace; returns sorted latencies in microseconds. */
function latency(ns: Netns, server: string, port: number, n: number): number[] {
  const script = `
    const dgram=require('dgram');const s=dgram.createSocket('udp4');
    const name=process.argv[3].split('.');
    const q=Buffer.concat([Buffer.from([0,0,1,0,0,1,0,0,0,0,0,0]),...name.map(l=>Buffer.concat([Buffer.from([l.length]),Buffer.from(l)])),Buffer.from([0,0,1,0,1])]);
    const n=+process.argv[4];const out=[];let i=0;let t=0n;
    const go=()=>{q.writeUInt16BE(i&0xffff,0);t=process.hrtime.bigint();s.send(q,+process.argv[2],process.argv[1]);};
    s.on('message',()=>{out.push(Number(process.hrtime.bigint()-t)/1000);if(++i<n)go();else{console.log(JSON.stringify(out));process.exit(0)}});
    setTimeout(()=>{console.log(JSON.stringify(out));process.exit(0)},20000);go();`;
  const out = ns.exec([process.execPath, '-e', script, server, String(port), NAME, String(n)], {
    timeoutMs: 30000,
  });
  return (JSON.parse(out) as number[]).slice(Math.floor(n / 10)).sort((a, b) => a - b);
}

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
      '4',
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

function iperf(ns: Netns, seconds: number): number {
  const out = ns.exec(['iperf3', '-c', WEB, '-t', String(seconds), '-J'], {
    timeoutMs: (seconds + 15) * 1000,
  });
  const j = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } };
  return j.end.sum_received.bits_per_second / 1e9;
}

const lines: string[] = [];
const log = (s: string): void => {
  console.log(s);
  lines.push(s);
};

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
      '--cache-size=0',
      '--user=root',
      '--pid-file=',
      '--dns-forward-max=1000',
    ]),
  );
  kids.push(started(w.internet, ['iperf3', '-s', '-B', WEB]));
  await sleep(800);
  const N = 3000;
  const SECS = 5;
  const rows: string[][] = [];
  // Direct.
  let l = latency(w.runner, UP, 53, N);
  let q = qps(w.runner, UP, 53, SECS);
  rows.push([
    'upstream asked directly',
    pct(l, 50).toFixed(0),
    pct(l, 99).toFixed(0),
    q.qps.toFixed(0),
    q.lost,
  ]);
  // dnsmasq as a forwarder (no cache, like the proxy).
  const fwd = started(w.runner, [
    'dnsmasq',
    '--keep-in-foreground',
    '--no-resolv',
    '--no-hosts',
    '--port=5300',
    '--listen-address=127.0.0.1',
    '--bind-interfaces',
    `--server=${UP}`,
    '--cache-size=0',
    '--user=root',
    '--pid-file=',
    '--dns-forward-max=1000',
  ]);
  kids.push(fwd);
  await sleep(500);
  l = latency(w.runner, '127.0.0.1', 5300, N);
  q = qps(w.runner, '127.0.0.1', 5300, SECS);
  rows.push([
    'dnsmasq 2.89 forwarder (cache off)',
    pct(l, 50).toFixed(0),
    pct(l, 99).toFixed(0),
    q.qps.toFixed(0),
    q.lost,
  ]);
  await stop(fwd);

  // Throughput without the fence.
  const before: number[] = [];
  for (let i = 0; i < 3; i++) before.push(iperf(w.runner, 4));

  // The fence.
  const setups: number[] = [];
  const steps: number[] = [];
  job = new Job();
  const inputs = { 'allowed-domains': '*.a.test', preset: 'none' };
  const main = await job.run('egress', 'main', { inputs, wrap: w.runner.wrap, timeoutMs: 30000 });
  if (main.code !== 0) throw new Error(`main failed: ${main.stdout}`);
  setups.push(Number(main.outputs['setup-ms']));
  steps.push(main.durationMs);
  l = latency(w.runner, '127.0.0.1', 53, N);
  q = qps(w.runner, '127.0.0.1', 53, SECS);
  rows.push([
    'Cordon proxy (fence up)',
    pct(l, 50).toFixed(0),
    pct(l, 99).toFixed(0),
    q.qps.toFixed(0),
    q.lost,
  ]);
  const after: number[] = [];
  for (let i = 0; i < 3; i++) after.push(iperf(w.runner, 4));
  // More setup samples: rerun main (it replaces the table and restarts the daemon).
  for (let i = 0; i < 4; i++) {
    const st = JSON.parse(
      w.runner.exec(['cat', `/run/cordon/egress-${fenceId(job.runnerTemp)}/state.json`]),
    ) as { pid: number };
    process.kill(st.pid, 'SIGKILL');
    w.runner.exec(['nft', 'delete', 'table', 'inet', 'cordon']);
    writeFileSync(`/etc/netns/${w.runner.name}/resolv.conf`, `nameserver ${UP}\n`);
    await sleep(200);
    const m = await job.run('egress', 'main', { inputs, wrap: w.runner.wrap, timeoutMs: 30000 });
    if (m.code !== 0) throw new Error(`main failed: ${m.stdout}`);
    setups.push(Number(m.outputs['setup-ms']));
    steps.push(m.durationMs);
  }

  const med = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  log('# Egress benchmarks');
  log('');
  log(
    `Run ${new Date().toISOString()} on this machine (2 shared cores, kernel ${w.runner.exec(['uname', '-r']).trim()}, Node ${process.version}), through a veth pair between two network namespaces. The upstream is dnsmasq answering \`${NAME}\` itself. Latency: ${N} sequential queries of one name from a Node client (first 10% dropped), microseconds. Throughput: dnsperf, 4 sockets, up to 500 outstanding, ${SECS} s.`,
  );
  log('');
  log('| path | p50 µs | p99 µs | queries/s | lost |');
  log('| --- | ---: | ---: | ---: | --- |');
  for (const r of rows) log(`| ${r.join(' | ')} |`);
  log('');
  const ratio = Number(rows[2][1]) / Number(rows[1][1]);
  log(`Proxy p50 / dnsmasq p50 = ${ratio.toFixed(2)} (goal <= 1.2). Proxy throughput goal >= 20k q/s.`);
  log('');
  log('| TCP to an allowed address (iperf3, 4 s, 3 runs) | Gbit/s |');
  log('| --- | --- |');
  log(
    `| without the fence | ${before.map((b) => b.toFixed(2)).join(', ')} (median ${med(before).toFixed(2)}) |`,
  );
  log(`| with the fence | ${after.map((b) => b.toFixed(2)).join(', ')} (median ${med(after).toFixed(2)}) |`);
  log('');
  log(`With/without = ${(med(after) / med(before)).toFixed(3)} (goal >= 0.97).`);
  log('');
  log(
    `Setup, action start to fence enforced (\`setup-ms\`, ${setups.length} runs): ${setups.join(', ')} ms, median ${med(setups)} ms (goal <= 500). Whole main step including Node start: median ${med(steps)} ms.`,
  );
  writeFileSync(new URL('./RESULTS-egress.md', import.meta.url), lines.join('\n') + '\n');
} finally {
  for (const k of kids) await stop(k);
  await w.destroy(job ? [fenceId(job.runnerTemp)] : []);
}
