/**
 * Ledger append with chaining (lock, tail read, hash, one write) at 10k events, plus the
 * checks run and start's post make over such a ledger. `npx tsx bench/ledger.ts [events]`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { checkChain, diffLedger, Ledger } from '../src/ledger/ledger.js';
import { SecretRegistry } from '../src/platform/mask.js';
import { checkRunWindow, verdictFor } from '../src/ledger/verify.js';
import { appendAny, appendAnyWithSnapshot } from '../test/harness/ledger.js';

const n = Number(process.argv[2] ?? 10000);
const dir = mkdtempSync(join(tmpdir(), 'cordon-bench-ledger-'));
const registry = new SecretRegistry(() => {});
// A registry with a few secrets, as in a real run: every line is checked against it.
for (let i = 0; i < 8; i++)
  registry.register(`bench-secret-value-${i}-${'x'.repeat(i * 4)}`, { name: `S${i}` });
const ledger = new Ledger(join(dir, 'ledger.jsonl'), { action: 'bench', registry });
const nonce = ledger.open();
const times: number[] = [];
const data = { name: 'exfil.evil.test', queries: 3, addresses: ['203.0.113.9'], note: 'x'.repeat(120) };
for (let i = 0; i < n; i++) {
  const t = performance.now();
  appendAny(ledger, 'bench.event', { ...data, i }, i === 0 ? nonce : undefined);
  times.push(performance.now() - t);
}
const pct = (xs: number[], p: number): number =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const row = (what: string, xs: number[]): string =>
  `| ${what} | ${xs.length} | ${pct(xs, 50).toFixed(3)} | ${pct(xs, 99).toFixed(3)} | ${Math.max(...xs).toFixed(3)} |`;
const once = (fn: () => unknown): number => {
  const t = performance.now();
  fn();
  return performance.now() - t;
};
const lines = ledger.read();
const held = lines.slice(0, n / 2).map((l) => l.hash);
console.log('| measurement | n | p50 ms | p99 ms | max ms |');
console.log('| --- | --- | --- | --- | --- |');
console.log(row('append with chaining (lock, tail read, SHA-256, secret check, write)', times));
console.log(
  row('appendWithSnapshot at the end of a 10k-line ledger (run.started)', [
    once(() => appendAnyWithSnapshot(ledger, 'run.started', {})),
  ]),
);
console.log(row(`read + parse ${lines.length} lines`, [once(() => ledger.read())]));
console.log(row('checkChain from the nonce (10k lines)', [once(() => checkChain(lines, { nonce }))]));
console.log(row('diffLedger, 5k held lines, nothing changed', [once(() => diffLedger(held, lines))]));
console.log(
  row('checkRunWindow, 5k lines written during the run', [once(() => checkRunWindow(held, lines))]),
);
console.log(row("verdictFor (start's post), 10k lines", [once(() => verdictFor(lines, { nonce }))]));
rmSync(dir, { recursive: true, force: true });
