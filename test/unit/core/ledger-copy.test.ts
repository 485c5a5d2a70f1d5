/**
 * The ledger's copy to the egress daemon, against a real Unix socket server standing in for
 * the daemon's `ledger.sock`, and a post step's check of its main's head through `runEntry`.
 */
import { afterAll, describe, expect, jest, test } from '@jest/globals';
import net from 'node:net';
import { appendFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runEntry, HEAD_STATE } from '../../../src/actions/entry.js';
import { flushLedgerCopy } from '../../../src/ledger/copy.js';
import { fenceId, ledgerCopyPaths } from '../../../src/rootd/protocol.js';
import { Ledger, parseLedgerText } from '../../../src/ledger/ledger.js';
import { checkOwnHead } from '../../../src/ledger/head.js';
import { SecretRegistry } from '../../../src/platform/mask.js';
import { Runner } from '../../../src/platform/runner.js';
import { appendAny } from '../../harness/ledger.js';
import { tempDir } from '../../harness/tmp.js';

const dirs: string[] = [];
function tmp(): string {
  const d = tempDir('cordon-copy-');
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A stand-in for the daemon's socket: collects every line it is sent. */
async function listen(path: string): Promise<{ lines: string[]; close: () => Promise<void> }> {
  const lines: string[] = [];
  const server = net.createServer((c) => {
    let buf = '';
    c.setEncoding('utf8');
    c.on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    });
  });
  await new Promise<void>((r) => server.listen(path, () => r()));
  return { lines, close: () => new Promise<void>((r) => server.close(() => r())) };
}

const quiet = (): SecretRegistry => new SecretRegistry(() => undefined);

describe('ledger copy', () => {
  test('every appended line reaches the socket in order, and flush waits for it', async () => {
    const dir = tmp();
    const sock = join(dir, 'ledger.sock');
    const daemon = await listen(sock);
    const ledger = new Ledger(join(dir, 'ledger.jsonl'), {
      action: 't',
      registry: quiet(),
      copySocket: sock,
    });
    const nonce = ledger.open();
    for (let i = 0; i < 20; i++) appendAny(ledger, 'e', { i }, nonce);
    const r = await flushLedgerCopy();
    expect(r).toEqual({ sent: 20, failed: false });
    expect(daemon.lines).toEqual(readFileSync(ledger.path, 'utf8').split('\n').filter(Boolean));
    await daemon.close();
  });

  test('seedCopy sends what was written before the daemon started, then appends follow', async () => {
    const dir = tmp();
    const sock = join(dir, 'ledger.sock');
    const ledger = new Ledger(join(dir, 'ledger.jsonl'), {
      action: 't',
      registry: quiet(),
      copySocket: sock,
    });
    const nonce = ledger.open();
    appendAny(ledger, 'before', {}, nonce);
    appendAny(ledger, 'before', {});
    const daemon = await listen(sock);
    expect(ledger.seedCopy()).toBe(2);
    appendAny(ledger, 'after', {});
    await flushLedgerCopy();
    expect(daemon.lines.map((l) => (JSON.parse(l) as { type: string }).type)).toEqual([
      'before',
      'before',
      'after',
    ]);
    await daemon.close();
  });

  test('no socket: nothing is sent; a stale socket fails the flush, never the append', async () => {
    const dir = tmp();
    const none = new Ledger(join(dir, 'a.jsonl'), {
      action: 't',
      registry: quiet(),
      copySocket: join(dir, 'none.sock'),
    });
    appendAny(none, 'e', {});
    expect(await flushLedgerCopy()).toEqual({ sent: 0, failed: false });
    // A socket file nobody listens on (the daemon died).
    const stale = join(dir, 'stale.sock');
    const d = await listen(stale);
    const server = d.close();
    await server;
    // net.Server removes its socket file on close; make a plain file in its place.
    writeFileSync(stale, '');
    const ledger = new Ledger(join(dir, 'b.jsonl'), { action: 't', registry: quiet(), copySocket: stale });
    expect(() => appendAny(ledger, 'e', {})).not.toThrow();
    const r = await flushLedgerCopy(1000);
    expect(r.failed).toBe(true);
  });

  test('the copy paths follow RUNNER_TEMP, with or without a trailing slash', () => {
    expect(fenceId('/tmp/job/')).toBe(fenceId('/tmp/job'));
    expect(ledgerCopyPaths('/tmp/job').socket).toBe(`/run/cordon/egress-${fenceId('/tmp/job')}/ledger.sock`);
  });
});

describe('a post step checks the head its main wrote', () => {
  function job(): { env: Record<string, string>; state: string } {
    const dir = tmp();
    const state = join(dir, 'state');
    writeFileSync(state, '');
    return { env: { RUNNER_TEMP: dir, GITHUB_STATE: state }, state };
  }

  function savedState(path: string): Record<string, string> {
    const out: Record<string, string> = {};
    const text = readFileSync(path, 'utf8');
    for (const m of text.matchAll(/^(\S+)<<(\S+)\n([\s\S]*?)\n\2$/gm)) out[m[1]] = m[3];
    return out;
  }

  async function mainThenPost(
    tamper: (ledgerPath: string) => void,
    opts: { before?: boolean } = {},
  ): Promise<{ types: string[]; warnings: string[]; data: Record<string, unknown> }> {
    const { env, state } = job();
    await runEntry(
      () => {
        const l = Ledger.forEnv(env, { action: 'aws', registry: quiet() });
        const nonce = l.open();
        if (opts.before) l.append('run.recorded', {}, nonce);
        appendAny(l, 'credentials.issued', { n: 1 }, nonce);
      },
      { runner: new Runner(env) },
    );
    const saved = savedState(state);
    expect(saved[HEAD_STATE]).toMatch(/^[0-9a-f]{64}$/);
    const path = Ledger.forEnv(env, { action: 'x' }).path;
    tamper(path);
    const out: string[] = [];
    const spy = jest.spyOn(process.stdout, 'write').mockImplementation((c: unknown) => {
      out.push(String(c));
      return true;
    });
    try {
      const state = Object.fromEntries(Object.entries(saved).map(([k, v]) => [`STATE_${k}`, v]));
      await runEntry(() => undefined, { runner: new Runner({ ...env, ...state }), post: 'aws' });
    } finally {
      spy.mockRestore();
    }
    const events = parseLedgerText(readFileSync(path, 'utf8')).map((l) => l.event);
    const last = events[events.length - 1];
    return {
      types: events.map((e) => e?.type ?? '?'),
      warnings: out.filter((l) => l.startsWith('::warning')),
      data: (last?.data ?? {}) as Record<string, unknown>,
    };
  }

  test('untouched: ledger.verified by "aws post"', async () => {
    const r = await mainThenPost(() => undefined);
    expect(r.types).toEqual(['credentials.issued', 'ledger.verified']);
    expect(r.data.by).toBe('aws post');
    expect(r.warnings).toEqual([]);
  });

  test('its line changed: ledger.tampered, a warning, and the finding', async () => {
    const r = await mainThenPost((p) => writeFileSync(p, readFileSync(p, 'utf8').replace('"n":1', '"n":2')));
    expect(r.types).toEqual(['credentials.issued', 'ledger.tampered']);
    expect(String(r.data.details)).toContain('no longer in the ledger');
    expect(r.warnings.join('')).toContain('altered after this step wrote to it');
  });

  test('a line appended after it that does not chain: ledger.tampered', async () => {
    const r = await mainThenPost((p) =>
      appendFileSync(
        p,
        JSON.stringify({ v: 1, type: 'forged', prev: 'x'.repeat(64), action: 'aws', time: '', data: {} }) +
          '\n',
      ),
    );
    expect(r.types[r.types.length - 1]).toBe('ledger.tampered');
    expect(String(r.data.details)).toContain('line 2 does not chain');
  });

  test('every line before its own removed: ledger.tampered (line 1 is not the first any more)', async () => {
    const r = await mainThenPost(
      (p) => writeFileSync(p, readFileSync(p, 'utf8').split('\n').slice(1).join('\n')),
      { before: true },
    );
    expect(r.types).toEqual(['credentials.issued', 'ledger.tampered']);
    expect(String(r.data.details)).toContain('line 1 is not the line the ledger started with');
  });

  test('checkOwnHead finds a removed head and broken lines', () => {
    const dir = tmp();
    const l = new Ledger(join(dir, 'l.jsonl'), { action: 't', registry: quiet() });
    const n = l.open();
    appendAny(l, 'a', {}, n);
    const head = appendAny(l, 'b', {}).hash;
    appendAny(l, 'c', {});
    expect(checkOwnHead(l.read(), head, 't post').ok).toBe(true);
    const lines = readFileSync(l.path, 'utf8').split('\n').filter(Boolean);
    writeFileSync(l.path, [lines[0], lines[2]].join('\n') + '\n');
    const r = checkOwnHead(l.read(), head, 't post');
    expect(r.ok).toBe(false);
    expect(r.details.join(' ')).toMatch(/no longer in the ledger.*line 2 does not chain/);
  });
});
