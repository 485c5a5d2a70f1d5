/**
 * The ledger's lock as the runner user can plant it: a lock directory with a future mtime and
 * files inside never stops a step from writing; the step takes it over after the bound and
 * records that it did, so the verdict says the record was altered.
 */
import { afterAll, describe, expect, test } from '@jest/globals';
import { existsSync, mkdirSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Ledger, ledgerPath } from '../../../src/ledger/ledger.js';
import { verdictFor } from '../../../src/ledger/verify.js';
import { SecretRegistry } from '../../../src/platform/mask.js';
import { appendAny, appendAnyWithSnapshot } from '../../harness/ledger.js';
import { tempDir } from '../../harness/tmp.js';

const dirs: string[] = [];
function tempLedger(): { ledger: Ledger; path: string; lock: string } {
  const dir = tempDir('cordon-ledger-lock-');
  dirs.push(dir);
  const path = ledgerPath({ RUNNER_TEMP: dir });
  const ledger = new Ledger(path, { action: 'test', registry: new SecretRegistry(() => {}) });
  return { ledger, path, lock: `${path}.lock` };
}
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** What the runner user can do: `mkdir lock; touch lock/x; touch -d 2099 lock`. */
function plant(lock: string): void {
  mkdirSync(lock);
  writeFileSync(join(lock, 'x'), '');
  const future = new Date('2099-01-01T00:00:00Z');
  utimesSync(lock, future, future);
}

describe('ledger lock', () => {
  test('a clean append leaves no lock and records no tampering (control)', () => {
    const { ledger, path, lock } = tempLedger();
    appendAny(ledger, 'a', {}, ledger.open());
    expect(existsSync(lock)).toBe(false);
    expect(readdirSync(dirname(path))).toEqual(['ledger.jsonl']);
    expect(ledger.events().map((e) => e.type)).toEqual(['a']);
  });

  test('hostile: a planted lock (future mtime, not empty) is taken over, and the taking over is recorded before the line', () => {
    const { ledger, path, lock } = tempLedger();
    const nonce = ledger.open() as string;
    appendAny(ledger, 'a', {}, nonce);
    plant(lock);
    const { hash } = appendAny(ledger, 'b', { i: 2 });
    const lines = ledger.read();
    expect(lines.map((l) => l.event?.type)).toEqual(['a', 'ledger.tampered', 'b']);
    expect(lines[2].hash).toBe(hash);
    const notice = lines[1].event?.data as { by: string; details: string[] };
    expect(notice.by).toBe('test');
    expect(notice.details[0]).toMatch(
      /ledger\.jsonl\.lock was held for over \d+ ms when test came to write b/,
    );
    // The lock is gone, with what was put in it; nothing is left beside the ledger.
    expect(existsSync(lock)).toBe(false);
    expect(readdirSync(dirname(path))).toEqual(['ledger.jsonl']);
    // The chain is whole, and the verdict names the forced lock.
    const verdict = verdictFor(lines, { nonce, head: hash });
    expect(verdict.status).toBe('altered');
    expect(verdict.details.join('\n')).toContain('was taken over');
  }, 20000);

  test('hostile: planted again, the next append forces it too (sooner), and a snapshot counts the notice', () => {
    const { ledger, lock } = tempLedger();
    appendAny(ledger, 'a', {}, ledger.open());
    plant(lock);
    const { hashes } = appendAnyWithSnapshot(ledger, 'b', {});
    plant(lock);
    appendAny(ledger, 'c', {});
    const lines = ledger.read();
    expect(lines.map((l) => l.event?.type)).toEqual(['a', 'ledger.tampered', 'b', 'ledger.tampered', 'c']);
    expect(hashes).toEqual(lines.slice(0, 3).map((l) => l.hash));
    expect(existsSync(lock)).toBe(false);
  }, 20000);

  test('hostile: a file put into the lock while a step holds it does not fail the append nor leave the lock', () => {
    const { ledger, path, lock } = tempLedger();
    appendAny(ledger, 'a', {}, ledger.open());
    // appendBound's callback runs under the lock: stand in for a racing runner-user process.
    ledger.appendBound('run.sealed', () => {
      writeFileSync(join(lock, 'x'), '');
      mkdirSync(join(lock, 'd'));
      writeFileSync(join(lock, 'd', 'y'), '');
      return { window: 1, next: 'n', signature: 's' } as never;
    });
    expect(existsSync(lock)).toBe(false);
    expect(readdirSync(dirname(path))).toEqual(['ledger.jsonl']);
    expect(ledger.events().map((e) => e.type)).toEqual(['a', 'run.sealed']);
  });
});
