import { afterAll, describe, expect, test } from '@jest/globals';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import {
  checkChain,
  diffLedger,
  hashLine,
  lastLine,
  Ledger,
  ledgerPath,
  parseLedgerText,
} from '../../../src/ledger/ledger.js';
import { appendLedger, readLedgerText } from '../../../src/ledger/ledger-file.js';
import { SecretRegistry } from '../../../src/platform/mask.js';
import { CordonError } from '../../../src/platform/errors.js';
import { appendAny, appendAnyWithSnapshot } from '../../harness/ledger.js';
import { tempDir } from '../../harness/tmp.js';

const dirs: string[] = [];
function tempLedger(): { ledger: Ledger; registry: SecretRegistry; path: string } {
  const dir = tempDir('cordon-ledger-');
  dirs.push(dir);
  const registry = new SecretRegistry(() => {});
  const path = ledgerPath({ RUNNER_TEMP: dir });
  return { ledger: new Ledger(path, { action: 'test', registry }), registry, path };
}
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('ledger', () => {
  test('hostile: a FIFO or a link put in place of the ledger is refused at once, never waited on', () => {
    const fifo = tempLedger();
    mkdirSync(join(fifo.path, '..'), { recursive: true });
    expect(spawnSync('mkfifo', [fifo.path]).status).toBe(0);
    // Without the check, both would block forever: nobody writes to or reads the FIFO.
    expect(() => appendAny(fifo.ledger, 'tick', { i: 1 })).toThrow(/is a FIFO/);
    expect(() => fifo.ledger.read()).toThrow(/is a FIFO/);
    const link = tempLedger();
    mkdirSync(join(link.path, '..'), { recursive: true });
    symlinkSync('/dev/zero', link.path);
    expect(() => link.ledger.read()).toThrow(/is a symbolic link/);
  });

  test('hostile: the read and the append check what they opened, so a swap after the path check changes nothing', () => {
    const { path } = tempLedger();
    mkdirSync(join(path, '..'), { recursive: true });
    const victim = join(path, '..', 'victim');
    writeFileSync(victim, 'untouched\n');
    // No path check before these: each opens without following a link and checks the descriptor.
    symlinkSync(victim, path);
    expect(() => appendLedger(path, 'x\n')).toThrow(/is a symbolic link/);
    expect(() => readLedgerText(path)).toThrow(/is a symbolic link/);
    expect(() => lastLine(path)).toThrow(/is a symbolic link/);
    rmSync(path);
    expect(spawnSync('mkfifo', [path]).status).toBe(0);
    expect(() => appendLedger(path, 'x\n')).toThrow(/is a FIFO/);
    expect(() => readLedgerText(path)).toThrow(/is a FIFO/);
    expect(readFileSync(victim, 'utf8')).toBe('untouched\n');
  });

  test("hostile: a link swapped in and out of the ledger's place while steps append never gets a line written through it", async () => {
    const { ledger, path } = tempLedger();
    mkdirSync(join(path, '..'), { recursive: true });
    const victim = join(path, '..', 'victim');
    writeFileSync(victim, 'untouched\n');
    appendAny(ledger, 'first', {}, ledger.open());
    // The runner user's loop: the ledger and a link to the victim take turns in its place,
    // each for a random 20-200 µs (bounded: 20 s, 200k turns).
    const swap = [
      'import os, random, sys, time',
      'os.chdir(sys.argv[1]); end = time.time() + 20',
      'def hold():',
      '  t = time.perf_counter() + random.uniform(20e-6, 200e-6)',
      '  while time.perf_counter() < t: pass',
      'print("go", flush=True)',
      'for i in range(200000):',
      '  if time.time() > end: break',
      '  try:',
      '    os.rename("ledger.jsonl", "keep")',
      '    try: os.symlink("victim", "ledger.jsonl")',
      '    except FileExistsError: pass',
      '    hold(); os.rename("keep", "ledger.jsonl"); hold()',
      '  except OSError: pass',
    ].join('\n');
    const swapper = spawn('python3', ['-c', swap, join(path, '..')], { stdio: ['ignore', 'pipe', 'ignore'] });
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the swapper did not start in 10 s')), 10000);
      swapper.stdout!.once('data', () => {
        clearTimeout(t);
        resolve();
      });
    });
    let refused = 0;
    let written = 0;
    try {
      for (let i = 0; i < 1500; i++) {
        try {
          appendAny(ledger, 'tick', { i });
          written++;
        } catch {
          refused++;
        }
        if (i % 50 === 0) await new Promise((r) => setTimeout(r, 1));
      }
    } finally {
      swapper.kill('SIGKILL');
      await new Promise((r) => swapper.once('exit', r));
    }
    expect(written + refused).toBe(1500);
    expect(readFileSync(victim, 'utf8')).toBe('untouched\n');
  });

  test('appends events in order and reads them back with their fields', () => {
    const { ledger } = tempLedger();
    const nonce = ledger.open();
    expect(nonce).toMatch(/^[0-9a-f]{64}$/);
    appendAny(ledger, 'a.one', { n: 1 }, nonce);
    appendAny(ledger, 'a.two', { n: 2 });
    const events = ledger.events();
    expect(events.map((e) => e.type)).toEqual(['a.one', 'a.two']);
    expect(events[0]).toMatchObject({ v: 1, action: 'test', data: { n: 1 } });
    expect(Date.parse(events[0].time)).not.toBeNaN();
  });

  test('chains each line to the one before and to the nonce', () => {
    const { ledger } = tempLedger();
    const nonce = ledger.open() as string;
    appendAny(ledger, 'x', {}, nonce);
    const { hash } = appendAny(ledger, 'y', {});
    const lines = ledger.read();
    expect(lines[0].event?.prev).toBe(hashLine(nonce));
    expect(lines[1].event?.prev).toBe(lines[0].hash);
    expect(ledger.head()).toBe(hash);
    expect(checkChain(lines, { nonce, head: hash })).toEqual({ ok: true, broken: [], headFound: true });
  });

  test('an edited line breaks the chain at the line after it', () => {
    const { ledger, path } = tempLedger();
    const nonce = ledger.open() as string;
    appendAny(ledger, 'x', { v: 'a' }, nonce);
    const { hash } = appendAny(ledger, 'y', {});
    appendAny(ledger, 'z', {});
    const text = readFileSync(path, 'utf8').replace('"v":"a"', '"v":"b"');
    writeFileSync(path, text);
    const check = checkChain(ledger.read(), { nonce, head: hash });
    expect(check.ok).toBe(false);
    expect(check.broken).toEqual([2]);
  });

  test('a removed line is detected, and so is a missing head', () => {
    const { ledger, path } = tempLedger();
    const nonce = ledger.open() as string;
    appendAny(ledger, 'x', {}, nonce);
    appendAny(ledger, 'y', {});
    const { hash } = appendAny(ledger, 'z', {});
    const lines = readFileSync(path, 'utf8').split('\n');
    writeFileSync(path, [lines[0], lines[2]].join('\n') + '\n');
    expect(checkChain(ledger.read(), { nonce }).broken).toEqual([2]);
    writeFileSync(path, [lines[0], lines[1]].join('\n') + '\n');
    expect(checkChain(ledger.read(), { nonce, head: hash })).toMatchObject({ ok: false, headFound: false });
  });

  test('refuses an event holding a registered secret, in any form, without echoing it', () => {
    const { ledger, registry, path } = tempLedger();
    const secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
    registry.register(secret, { name: 'AWS_SECRET_ACCESS_KEY' });
    ledger.open();
    for (const data of [
      { key: secret },
      { nested: { b64: Buffer.from(secret).toString('base64') } },
      { hex: Buffer.from(secret).toString('hex') },
    ]) {
      let err: unknown;
      try {
        appendAny(ledger, 'credentials.issued', data);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CordonError);
      expect((err as Error).message).toContain('AWS_SECRET_ACCESS_KEY');
      expect((err as Error).message).not.toContain(secret);
    }
    let exists = true;
    try {
      readFileSync(path);
    } catch {
      exists = false;
    }
    if (exists) expect(readFileSync(path, 'utf8')).not.toContain(secret);
  });

  test('keeps every line whole and chained under concurrent writers', async () => {
    const { path } = tempLedger();
    const writers = 4;
    const each = 40;
    // Run real processes through tsx so the appends race for real.
    const tsx = join(process.cwd(), 'node_modules', '.bin', 'tsx');
    const worker = join(dirs[dirs.length - 1], 'writer.ts');
    writeFileSync(
      worker,
      `import { Ledger } from ${JSON.stringify(join(process.cwd(), 'src/ledger/ledger.ts'))};
       const l = new Ledger(process.argv[2], { action: 'w' + process.argv[3] });
       for (let i = 0; i < ${each}; i++) l.append('tick', { i, pad: 'x'.repeat(3000) });`,
    );
    await Promise.all(
      Array.from(
        { length: writers },
        (_, w) =>
          new Promise<void>((resolve, reject) => {
            const p = spawn(tsx, [worker, path, String(w)], { stdio: 'inherit' });
            const t = setTimeout(() => p.kill('SIGKILL'), 50000);
            p.on('exit', (code) => {
              clearTimeout(t);
              if (code === 0) resolve();
              else reject(new Error(`writer exited ${code}`));
            });
          }),
      ),
    );
    const ledger = new Ledger(path, { action: 'check' });
    const lines = ledger.read();
    expect(lines).toHaveLength(writers * each);
    expect(lines.every((l) => l.event)).toBe(true);
    expect(checkChain(lines).broken).toEqual([]);
  }, 60000);

  test('lastLine reads the tail however long the file, and an append chains to it', () => {
    const { ledger, path } = tempLedger();
    expect(lastLine(path)).toBeUndefined();
    const nonce = ledger.open();
    appendAny(ledger, 'big', { pad: 'x'.repeat(100_000) }, nonce);
    appendAny(ledger, 'small', { n: 1 });
    const raw = readFileSync(path, 'utf8').split('\n').filter(Boolean);
    expect(lastLine(path)).toBe(raw[1]);
    appendAny(ledger, 'after', { n: 2 });
    expect(checkChain(ledger.read(), { nonce }).ok).toBe(true);
  });

  test('a line written without its newline does not swallow the next append', () => {
    const { ledger, path } = tempLedger();
    const nonce = ledger.open();
    appendAny(ledger, 'a', {}, nonce);
    writeFileSync(path, readFileSync(path, 'utf8') + 'garbage-without-newline');
    appendAny(ledger, 'b', {});
    const lines = ledger.read();
    expect(lines.map((l) => l.event?.type ?? l.error)).toEqual(['a', 'not valid JSON', 'b']);
    expect(lines[2].event?.prev).toBe(hashLine('garbage-without-newline'));
  });

  test('appendWithSnapshot returns the hash of every line up to and including its own', () => {
    const { ledger } = tempLedger();
    const nonce = ledger.open();
    appendAny(ledger, 'a', {}, nonce);
    appendAny(ledger, 'b', {});
    const { hash, hashes } = appendAnyWithSnapshot(ledger, 'c', {});
    expect(hashes).toEqual(ledger.read().map((l) => l.hash));
    expect(hashes[2]).toBe(hash);
  });
});

describe('diffLedger', () => {
  const text = (ts: string[]): string =>
    ts.map((t) => JSON.stringify({ type: t, action: 'x', data: {} })).join('\n');
  const before = parseLedgerText(text(['a', 'b', 'c', 'd'])).map((l) => l.hash);

  test('nothing changed, and lines after the held ones are not part of it', () => {
    expect(diffLedger(before, parseLedgerText(text(['a', 'b', 'c', 'd', 'e'])))).toEqual({
      changed: [],
      removed: [],
      inserted: [],
    });
  });

  test('changed, removed and inserted lines by number', () => {
    expect(diffLedger(before, parseLedgerText(text(['a', 'B', 'c', 'd'])))).toEqual({
      changed: [2],
      removed: [],
      inserted: [],
    });
    expect(diffLedger(before, parseLedgerText(text(['a', 'c', 'd'])))).toEqual({
      changed: [],
      removed: [2],
      inserted: [],
    });
    expect(diffLedger(before, parseLedgerText(text(['a', 'b', 'x', 'y', 'c', 'd', 'e'])))).toEqual({
      changed: [],
      removed: [],
      inserted: [3, 4],
    });
    // The last held line gone: everything after the common prefix differs.
    expect(diffLedger(before, parseLedgerText(text(['a', 'b'])))).toEqual({
      changed: [],
      removed: [3, 4],
      inserted: [],
    });
  });
});
