/**
 * Secret registry and scrubber benchmark (issue 5): registering 10k secrets with every
 * encoded form, and scrubbing an output stream with 1k secrets registered.
 * Run: npx tsx bench/secrets-mask.ts [register|scrub] [--before <dir>]
 *   (both parts when no part is named). With --before, each registration case runs the code
 *   under <dir>/src/platform (a copy of an older commit, e.g. `git archive <ref> src | tar -x
 *   -C <dir>`) and this tree's alternately, in this one process, and prints both.
 *
 * Registered means ready to scrub: every form computed, handed to the runner's mask sink
 * (a no-op here) and the matcher built, so the next scrub call does no more work.
 */
import { randomBytes } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { SecretRegistry, StreamScrubber } from '../src/platform/mask.js';

type Registry = Pick<SecretRegistry, 'register' | 'matcher' | 'size'>;
type MakeRegistry = () => Registry;

const noSink = (): void => undefined;

function secretValue(i: number, len: number): string {
  // Token-like values: a prefix and random URL-safe characters, as API keys look.
  return `tok${i}_${randomBytes(len).toString('base64url').slice(0, len)}`;
}

/** Best wall time of `runs`, and the CPU time of that run (other processes share the cores). */
function best(runs: number, fn: () => void): number {
  let min = Infinity;
  for (let r = 0; r < runs; r++) {
    const t = performance.now();
    fn();
    min = Math.min(min, performance.now() - t);
  }
  return min;
}

function cpuMs(fn: () => void): number {
  const c = process.cpuUsage();
  fn();
  const d = process.cpuUsage(c);
  return (d.user + d.system) / 1000;
}

function stats(xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  return `median ${s[Math.floor(s.length / 2)].toFixed(1)} ms, min ${s[0].toFixed(1)}`;
}

/**
 * Registers `count` values into a fresh registry of each implementation, `runs` times,
 * the implementations taking turns so that each sees the same load.
 */
function registerBench(
  impls: [string, MakeRegistry][],
  count: number,
  label: string,
  make: (i: number) => string,
  runs = 15,
): void {
  // Values as they arrive from JSON.parse or the environment: flat strings.
  const values = JSON.parse(JSON.stringify(Array.from({ length: count }, (_, i) => make(i)))) as string[];
  const forms = impls.map(() => 0);
  const wall = impls.map((): number[] => []);
  const cpu = impls.map((): number[] => []);
  for (let r = 0; r < runs; r++) {
    impls.forEach(([, fresh], k) => {
      const t = performance.now();
      const c = process.cpuUsage();
      const reg = fresh();
      for (let i = 0; i < values.length; i++) reg.register(values[i], { name: `S${i}` });
      reg.matcher();
      const d = process.cpuUsage(c);
      wall[k].push(performance.now() - t);
      cpu[k].push((d.user + d.system) / 1000);
      forms[k] = reg.size;
    });
  }
  impls.forEach(([name], k) => {
    console.log(
      `${name}register ${count} ${label} secrets (${forms[k]} forms) + build matcher, ${runs} runs: wall ${stats(wall[k])}; CPU ${stats(cpu[k])}`,
    );
  });
}

function logText(bytes: number): Buffer {
  // Log-like text: words, paths, numbers and newlines; no secret inside.
  const words = [
    'npm',
    'install',
    'error',
    'warning',
    'src/index.ts',
    'compiled',
    'Downloading',
    'https://registry.npmjs.org/',
    '200',
    'OK',
    'test',
    'passed',
    '{"level":"info"}',
    '\n',
  ];
  const parts: string[] = [];
  let n = 0;
  while (n < bytes) {
    const w = words[Math.floor(Math.random() * words.length)] + ' ';
    parts.push(w);
    n += w.length;
  }
  return Buffer.from(parts.join('').slice(0, bytes));
}

function scrubBench(count: number, valueLen: number, hits: number): void {
  const reg = new SecretRegistry(noSink);
  const values = Array.from({ length: count }, (_, i) => secretValue(i, valueLen));
  values.forEach((v, i) => reg.register(v, { name: `S${i}` }));
  const text = logText(64 * 1024 * 1024);
  for (let h = 0; h < hits; h++) {
    const at = Math.floor(Math.random() * (text.length - 200));
    Buffer.from(values[h % values.length]).copy(text, at);
  }
  const matcher = reg.matcher();
  const chunk = 64 * 1024;
  let scrubbed = 0;
  const once = (): void => {
    const s = new StreamScrubber(matcher);
    for (let off = 0; off < text.length; off += chunk) s.push(text.subarray(off, off + chunk));
    s.flush();
    scrubbed = s.scrubbed;
  };
  const ms = best(3, once);
  const cpu = Math.min(...Array.from({ length: 3 }, () => cpuMs(once)));
  const mb = text.length / 1e6;
  console.log(
    `scrub 64 MB in 64 KiB chunks, ${count} secrets (${matcher.size} needles, shortest ${matcher.minLength} B), ${hits} hits: ` +
      `${(mb / (ms / 1000)).toFixed(0)} MB/s wall, ${(mb / (cpu / 1000)).toFixed(0)} MB/s CPU (${scrubbed} bytes scrubbed)`,
  );
}

const load = (): string =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
const args = process.argv.slice(2);
const beforeAt = args.indexOf('--before');
const beforeDir = beforeAt === -1 ? undefined : args.splice(beforeAt, 2)[1];
const part = args[0];
const impls: [string, MakeRegistry][] = [];
if (beforeDir !== undefined) {
  const old = (await import(pathToFileURL(join(resolve(beforeDir), 'src/platform/mask.ts')).href)) as {
    SecretRegistry: new (sink: (v: string) => void) => Registry;
  };
  impls.push(['before: ', () => new old.SecretRegistry(noSink)]);
}
impls.push([beforeDir === undefined ? '' : 'after:  ', () => new SecretRegistry(noSink)]);
console.log(`load average: ${load()} on ${cpus().length} cores`);
if (part !== 'scrub') {
  registerBench(impls, 10000, 'token-like', (i) => secretValue(i, 24));
  registerBench(
    impls,
    10000,
    'password-like (URL/JSON/shell forms too)',
    (i) => `p@ss&<${i}>/"${randomBytes(12).toString('base64')}'`,
  );
  registerBench(
    impls,
    10000,
    'non-ASCII password-like (UTF-16, repr of bytes, C-locale shell forms too)',
    (i) => `pässwörd ${i}/漢字-🔑'"&<${randomBytes(9).toString('base64')}`,
  );
}
if (part !== 'register') {
  scrubBench(1000, 24, 0);
  scrubBench(1000, 24, 1000);
  scrubBench(1000, 8, 1000);
}
console.log(`load average after: ${load()}`);
