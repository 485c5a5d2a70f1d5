/**
 * Egress benchmarks, run as root: `npx tsx bench/egress.ts`. In a runner/internet
 * namespace pair (the e2e tests' layout), with dnsmasq as the fast upstream:
 *  1. DNS latency (p50/p99, one query at a time) and throughput (dnsperf) of the same
 *     upstream asked directly, through a dnsmasq forwarder with its cache off and with its
 *     default cache, and through Cordon's proxy with its answer cache (the default) and
 *     without (`CORDON_EGRESS_DNS_CACHE=off`);
 *  2. TCP throughput (iperf3) to an allowed address with and without the fence;
 *  3. setup: action start to fence enforced (the `setup-ms` output) and the whole step.
 * Writes bench/RESULTS-egress.md up to its `<!-- end of generated results -->` line; the
 * notes after it are kept.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
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
  const N = 2000;
  const SECS = 4;
  const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
  // BENCH_DNS_ONLY=1: the DNS paths only, printed, no results file (for trying changes).
  const dnsOnly = process.env.BENCH_DNS_ONLY === '1';
  // dnsmasq as a forwarder, queried only while the fence is down: without a cache (every
  // query forwarded) on 5300, with its default cache (150 names) on 5301.
  const dnsmasq = (port: number, extra: string[]): ChildProcess =>
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
      '--user=root',
      '--pid-file=',
      '--dns-forward-max=1000',
    ]);
  kids.push(dnsmasq(5300, ['--cache-size=0']), dnsmasq(5301, []));
  await sleep(500);
  type Sample = { p50: number; p99: number; qps: number };
  const paths: Record<string, Sample[]> = {
    direct: [],
    dnsmasq: [],
    dnsmasqCache: [],
    proxy: [],
    proxyNoCache: [],
  };
  const measure = (server: string, port: number): Sample => {
    const l = latency(w.runner, server, port, N);
    return { p50: pct(l, 50), p99: pct(l, 99), qps: qps(w.runner, server, port, SECS).qps };
  };
  const without: number[] = [];
  const withFence: number[] = [];
  const setups: number[] = [];
  const steps: number[] = [];
  job = new Job();
  // The web address is a static allowed IP, so the throughput phase does not depend on DNS.
  const inputs = { 'allowed-domains': '*.a.test', 'allowed-ips': WEB, preset: 'none' };
  for (let round = 0; round < ROUNDS; round++) {
    paths.direct.push(measure(UP, 53));
    paths.dnsmasq.push(measure('127.0.0.1', 5300));
    paths.dnsmasqCache.push(measure('127.0.0.1', 5301));
    for (const cache of [true, false]) {
      const env = cache ? {} : { CORDON_EGRESS_DNS_CACHE: 'off' };
      const m = await job.run('egress', 'main', { inputs, env, wrap: w.runner.wrap, timeoutMs: 30000 });
      if (m.code !== 0) throw new Error(`main failed: ${m.stdout}`);
      setups.push(Number(m.outputs['setup-ms']));
      steps.push(m.durationMs);
      (cache ? paths.proxy : paths.proxyNoCache).push(measure('127.0.0.1', 53));
      // Down again: stop the daemon, remove the table, put the resolver back.
      const st = JSON.parse(
        w.runner.exec(['cat', `/run/cordon/egress-${fenceId(job.runnerTemp)}/state.json`]),
      ) as { pid: number };
      process.kill(st.pid, 'SIGKILL');
      w.runner.exec(['nft', 'delete', 'table', 'inet', 'cordon']);
      writeFileSync(`/etc/netns/${w.runner.name}/resolv.conf`, `nameserver ${UP}\n`);
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
    const m = await job.run('egress', 'main', { inputs, wrap: w.runner.wrap, timeoutMs: 30000 });
    if (m.code !== 0) throw new Error(`main failed: ${m.stdout}`);
    const table = w.runner.exec(['nft', 'list', 'table', 'inet', 'cordon']);
    for (let i = 0; i < 5; i++) {
      withFence.push(iperf(w.runner, 3));
      w.runner.exec(['nft', 'delete', 'table', 'inet', 'cordon']);
      without.push(iperf(w.runner, 3));
      w.runner.exec(['nft', '-f', '-'], { input: table });
    }
    const st = JSON.parse(
      w.runner.exec(['cat', `/run/cordon/egress-${fenceId(job.runnerTemp)}/state.json`]),
    ) as { pid: number };
    process.kill(st.pid, 'SIGKILL');
    w.runner.exec(['nft', 'delete', 'table', 'inet', 'cordon']);
    writeFileSync(`/etc/netns/${w.runner.name}/resolv.conf`, `nameserver ${UP}\n`);
  }
  for (let i = 0; i < (dnsOnly ? 0 : 2); i++) {
    const m = await job.run('egress', 'main', { inputs, wrap: w.runner.wrap, timeoutMs: 30000 });
    if (m.code !== 0) throw new Error(`main failed: ${m.stdout}`);
    setups.push(Number(m.outputs['setup-ms']));
    steps.push(m.durationMs);
    const st = JSON.parse(
      w.runner.exec(['cat', `/run/cordon/egress-${fenceId(job.runnerTemp)}/state.json`]),
    ) as { pid: number };
    process.kill(st.pid, 'SIGKILL');
    w.runner.exec(['nft', 'delete', 'table', 'inet', 'cordon']);
    writeFileSync(`/etc/netns/${w.runner.name}/resolv.conf`, `nameserver ${UP}\n`);
  }

  if (!dnsOnly) {
    const med = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
    const load = w.runner.exec(['cat', '/proc/loadavg']).split(' ').slice(0, 3).join(' ');
    const dnsmasqVersion = /version (\S+)/.exec(w.runner.exec(['dnsmasq', '--version']))?.[1] ?? '?';
    log('# Egress benchmarks');
    log('');
    log(
      `Run ${new Date().toISOString()} on this machine (2 cores shared with other jobs; load average ${load} at the end, so expect wide spread), kernel ${w.runner.exec(['uname', '-r']).trim()}, Node ${process.version}, through a veth pair between two network namespaces. The upstream is dnsmasq answering \`${NAME}\` itself. ${ROUNDS} rounds, each measuring every path with the fence down then up (the proxy twice, its cache on then off). Every query asks the same name, so a cache answers all but the first: the cached rows are the best case for a cache, the uncached rows the worst. Latency: ${N} sequential queries of one name from a Node client (first 10% dropped), µs. Throughput: dnsperf, 4 sockets, up to 500 outstanding, ${SECS} s.`,
    );
    log('');
    log('| path | p50 µs (median of rounds) | p99 µs | queries/s | per round (p50 / q/s) |');
    log('| --- | ---: | ---: | ---: | --- |');
    const names: Record<string, string> = {
      direct: 'upstream asked directly',
      dnsmasq: `dnsmasq ${dnsmasqVersion} forwarder, cache off`,
      dnsmasqCache: `dnsmasq ${dnsmasqVersion} forwarder, default cache`,
      proxy: 'Cordon proxy, fence up, answer cache on (default)',
      proxyNoCache: 'Cordon proxy, fence up, answer cache off',
    };
    for (const [k, v] of Object.entries(paths)) {
      log(
        `| ${names[k]} | ${med(v.map((x) => x.p50)).toFixed(0)} | ${med(v.map((x) => x.p99)).toFixed(0)} | ${med(v.map((x) => x.qps)).toFixed(0)} | ${v.map((x) => `${x.p50.toFixed(0)} / ${x.qps.toFixed(0)}`).join(', ')} |`,
      );
    }
    log('');
    const p50 = (k: string): number => med(paths[k].map((x) => x.p50));
    const q = (k: string): number => med(paths[k].map((x) => x.qps));
    const verdict = (ok: boolean): string => (ok ? 'yes' : '**no**');
    log('| DNS goal | comparison | result | met |');
    log('| --- | --- | ---: | --- |');
    for (const [proxy, dnsmasq, what] of [
      ['proxy', 'dnsmasqCache', 'both caching (the default of each)'],
      ['proxyNoCache', 'dnsmasq', 'both cache off (every query forwarded)'],
      ['proxy', 'dnsmasq', 'proxy cache on, dnsmasq cache off'],
    ]) {
      const r = p50(proxy) / p50(dnsmasq);
      log(
        `| p50 <= 1.2x dnsmasq | ${what} | ${r.toFixed(2)}x (${p50(proxy).toFixed(0)} vs ${p50(dnsmasq).toFixed(0)} µs) | ${verdict(r <= 1.2)} |`,
      );
    }
    for (const k of ['proxy', 'proxyNoCache']) {
      log(`| >= 20k queries/s | ${names[k]} | ${q(k).toFixed(0)} | ${verdict(q(k) >= 20000)} |`);
    }
    log('');
    log('| TCP to an allowed address (iperf3, 3 s a run, alternating) | Gbit/s per run | median |');
    log('| --- | --- | ---: |');
    log(
      `| without the fence | ${without.map((b) => b.toFixed(2)).join(', ')} | ${med(without).toFixed(2)} |`,
    );
    log(
      `| with the fence | ${withFence.map((b) => b.toFixed(2)).join(', ')} | ${med(withFence).toFixed(2)} |`,
    );
    log('');
    log(`With/without = ${(med(withFence) / med(without)).toFixed(3)} (goal >= 0.97).`);
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
} finally {
  for (const k of kids) await stop(k);
  await w.destroy(job ? [fenceId(job.runnerTemp)] : []);
}
