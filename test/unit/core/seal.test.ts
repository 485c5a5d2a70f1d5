import { describe, expect, test } from '@jest/globals';
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, statSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Ledger, ledgerPath } from '../../../src/ledger/ledger.js';
import {
  checkSeals,
  newSealKey,
  readSealKey,
  sealKeyPath,
  takeSealKey,
  writeSealKey,
} from '../../../src/ledger/seal.js';
import { openWindow, sealWindow } from '../../../src/actions/run/seal-window.js';
import { SecretRegistry } from '../../../src/platform/mask.js';
import type { Runner } from '../../../src/platform/runner.js';
import { appendAny } from '../../harness/ledger.js';
import { tempDir } from '../../harness/tmp.js';

const quiet = { info: () => {} } as Pick<Runner, 'info'> as Runner;

/** start's part: the ledger with run.recorded, the first key on disk; its public key and head. */
function started(): { ledger: Ledger; run: Ledger; publicKey: string; head: string; path: string } {
  const path = ledgerPath({ RUNNER_TEMP: tempDir('cordon-seal-') });
  const registry = new SecretRegistry(() => {});
  const ledger = new Ledger(path, { action: 'start', registry, copySocket: false });
  const nonce = ledger.open();
  const { hash } = appendAny(ledger, 'run.recorded', {}, nonce);
  const first = newSealKey(1);
  writeSealKey(sealKeyPath(path), first.key);
  const run = new Ledger(path, { action: 'run', registry, copySocket: false });
  return { ledger, run, publicKey: first.publicKey, head: hash, path };
}

/** One run step as run does it: open the window, close it, seal it. */
function oneRun(run: Ledger): void {
  const { sealKey } = openWindow(run, { commandSha256: 'x', shell: 'bash' } as never, quiet);
  appendAny(run, 'ledger.verified', { by: 'run', upTo: 1, duringRun: [] });
  appendAny(run, 'run.finished', { exitCode: 0 });
  sealWindow(run, sealKey);
}

function judge(s: ReturnType<typeof started>): { details: string[]; unproven: number[] } {
  return checkSeals(s.ledger.read(), {
    head: s.head,
    publicKey: s.publicKey,
    held: readSealKey(sealKeyPath(s.path)),
  });
}

describe('window seals', () => {
  test('no run, one run, two runs: every window proven, the key on disk is the next one', () => {
    const s = started();
    expect(judge(s).details).toEqual([]);
    oneRun(s.run);
    expect(judge(s).details).toEqual([]);
    oneRun(s.run);
    expect(judge(s)).toEqual({ details: [], unproven: [] });
    expect(readSealKey(sealKeyPath(s.path))?.window).toBe(3);
    expect(statSync(sealKeyPath(s.path)).mode & 0o777).toBe(0o600);
  });

  test('the key is off the disk while the command runs, and never in the ledger', () => {
    const s = started();
    const key = readFileSync(sealKeyPath(s.path), 'utf8');
    const { sealKey } = openWindow(s.run, { commandSha256: 'x', shell: 'bash' } as never, quiet);
    expect(existsSync(sealKeyPath(s.path))).toBe(false);
    sealWindow(s.run, sealKey);
    const text = readFileSync(s.path, 'utf8');
    expect(text).not.toContain(JSON.parse(key).privateKey);
    expect(text).not.toContain(JSON.parse(readFileSync(sealKeyPath(s.path), 'utf8')).privateKey);
  });

  test('run killed after run.started: closing lines without a seal, or with a seal signed by another key, are not proven', () => {
    const s = started();
    oneRun(s.run);
    // The second run is killed: its key is gone with it; the command writes the rest.
    openWindow(s.run, { commandSha256: 'y', shell: 'bash' } as never, quiet);
    const verified = appendAny(s.run, 'ledger.verified', { by: 'run', upTo: 1, duringRun: [] });
    appendAny(s.run, 'run.finished', { exitCode: 0 });
    const unsealed = judge(s);
    expect(unsealed.details.join('\n')).toMatch(/run never sealed it/);
    expect(unsealed.details.join('\n')).not.toMatch(/line 2 /);
    const verifiedLine = s.run.read().find((l) => l.hash === verified.hash)?.line as number;
    expect(unsealed.unproven).toContain(verifiedLine);
    // A seal with a key the command made: its signature does not verify with the one run left.
    const own = newSealKey(2);
    sealWindow(s.run, own.key);
    const forged = judge(s);
    expect(forged.details.join('\n')).toMatch(/its signature is not run's: it was forged/);
  });

  test("a line in run's name after its seal (a process that escaped the command's group) is not run's", () => {
    const s = started();
    oneRun(s.run);
    const late = appendAny(s.run, 'run.finished', { exitCode: 0 });
    // What the next run writes before its run.started is its own, not the last window's.
    appendAny(s.run, 'credentials.issued', { provider: 'aws' });
    const r = judge(s);
    const line = s.run.read().find((l) => l.hash === late.hash)?.line as number;
    expect(r.details).toEqual([
      `line ${line} claims to be run's but comes after run sealed the command started at line 2: it is not run's, and the record cannot be trusted`,
    ]);
    expect(r.unproven).toEqual([line]);
  });

  test('a window removed whole, or the key file replaced: the key left is not the last seal names', () => {
    const s = started();
    oneRun(s.run);
    writeSealKey(sealKeyPath(s.path), newSealKey(2).key);
    expect(judge(s).details.join('\n')).toMatch(/is not the one the last seal names/);
    takeSealKey(sealKeyPath(s.path));
    expect(judge(s).details.join('\n')).toMatch(/the key run leaves for the next command's seal is missing/);
  });

  test('a seal copied from an earlier window, or an earlier line changed, does not verify', () => {
    const s = started();
    oneRun(s.run);
    const lines = readFileSync(s.path, 'utf8').split('\n').filter(Boolean);
    // Line 1 changed and the rest re-chained: the seal's signature covers the old chain.
    const rechained = new Ledger(s.path, { action: 'run', copySocket: false });
    writeFileSync(s.path, '');
    const first = JSON.parse(lines[0]) as { data: Record<string, unknown> };
    appendAny(rechained, 'run.recorded', { ...first.data, repository: 'evil' });
    for (const raw of lines.slice(1)) {
      const e = JSON.parse(raw) as { type: string; data: Record<string, unknown> };
      appendAny(rechained, e.type, e.data);
    }
    const r = checkSeals(rechained.read(), {
      publicKey: s.publicKey,
      held: readSealKey(sealKeyPath(s.path)),
    });
    expect(r.details.join('\n')).toMatch(/its signature is not run's/);
  });

  test('the key file is never written or read through a symlink', () => {
    const s = started();
    const path = sealKeyPath(s.path);
    const elsewhere = join(tempDir('cordon-seal-elsewhere-'), 'stolen');
    writeFileSync(elsewhere, 'x');
    takeSealKey(path);
    symlinkSync(elsewhere, path);
    expect(readSealKey(path)).toBeUndefined();
    writeSealKey(path, newSealKey(1).key);
    expect(readFileSync(elsewhere, 'utf8')).toBe('x');
    expect(readSealKey(path)?.window).toBe(1);
  });

  test('a FIFO or an outsized file at the key path is no key, and never holds the reader', () => {
    const s = started();
    const path = sealKeyPath(s.path);
    const planted = join(tempDir('cordon-seal-fifo-'), 'key.json');
    writeFileSync(planted, JSON.stringify(newSealKey(1).key));
    takeSealKey(path);
    execFileSync('mkfifo', [path]);
    // A writer standing by to hand a key to whoever opens the FIFO for reading: a blocking
    // read would wait for it and take its key; the writer is killed when the test is done.
    const writer = spawn('sh', ['-c', 'sleep 1; cat "$1" > "$2"', 'sh', planted, path], {
      stdio: 'ignore',
      timeout: 10_000,
    });
    try {
      expect(readSealKey(path)).toBeUndefined();
      expect(takeSealKey(path)).toBeUndefined();
      expect(existsSync(path)).toBe(false);
    } finally {
      writer.kill('SIGKILL');
    }
    // A valid key padded past any key's size: refused, not read whole into memory.
    writeFileSync(path, JSON.stringify(newSealKey(1).key) + ' '.repeat(64 * 1024));
    expect(readSealKey(path)).toBeUndefined();
  });
});
