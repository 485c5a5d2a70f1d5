/** The summary's use of the egress daemon's copy: chain order restored, differences named. */
import { describe, expect, test } from '@jest/globals';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Ledger, parseLedgerText, type LedgerLine } from '../../src/ledger/ledger.js';
import { SecretRegistry } from '../../src/platform/mask.js';
import { compareWithCopy, orderByChain, verdictFor } from '../../src/ledger/verify.js';
import { appendAny } from '../harness/ledger.js';
import { tempDir } from '../harness/tmp.js';

function chain(n: number): { lines: LedgerLine[]; raw: string[]; nonce: string } {
  const dir = tempDir('cordon-copy-sum-');
  const l = new Ledger(join(dir, 'l.jsonl'), {
    action: 'start',
    registry: new SecretRegistry(() => undefined),
    copySocket: false,
  });
  const nonce = l.open() as string;
  for (let i = 0; i < n; i++) appendAny(l, `e${i}`, { i }, nonce);
  const raw = readFileSync(l.path, 'utf8').split('\n').filter(Boolean);
  rmSync(dir, { recursive: true });
  return { lines: parseLedgerText(raw.join('\n')), raw, nonce };
}

const parse = (raw: string[]): LedgerLine[] => parseLedgerText(raw.join('\n'));

describe('the daemon copy in the summary', () => {
  test('lines that arrived swapped are put back in chain order, duplicates dropped', () => {
    const { raw, nonce } = chain(5);
    const arrived = [raw[0], raw[2], raw[1], raw[1], raw[4], raw[3]];
    const { lines: ordered, unplaced } = orderByChain(parse(arrived));
    expect(ordered.map((l) => l.raw)).toEqual(raw);
    expect(ordered.map((l) => l.line)).toEqual([1, 2, 3, 4, 5]);
    expect(unplaced.size).toBe(0);
    expect(verdictFor(ordered, { nonce }).status).toBe('intact');
  });

  test('a line sent to the copy only, chained to an early line, is off the chain: named, and not to be rendered', () => {
    const { raw, nonce } = chain(4);
    const early = JSON.parse(raw[1]) as { prev: string };
    const forged = JSON.stringify({
      v: 1,
      time: '2026-11-25T00:00:00.000Z',
      action: 'egress',
      type: 'egress.report',
      data: { policy: 'block', allowed: [], blockedNames: [], blockedDestinations: [] },
      prev: early.prev,
    });
    const r = compareWithCopy(parse(raw), parse([raw[0], forged, ...raw.slice(1)]), { nonce });
    expect(r.lines.map((l) => l.raw).slice(0, 4)).toEqual(raw);
    expect([...r.untrusted]).toEqual([5]);
    expect(r.details).toEqual([
      "line 5 of the daemon's copy (egress.report, as egress) does not fit its chain: sent by someone other than a Cordon step",
    ]);
  });

  test('the same file and copy: no differences', () => {
    const { lines } = chain(4);
    expect(compareWithCopy(lines, lines).details).toEqual([]);
  });

  test('a line changed in the file: the copy keeps it, and both sides are named', () => {
    const { raw } = chain(4);
    const edited = [...raw];
    edited[1] = raw[1].replace('"i":1', '"i":9');
    const r = compareWithCopy(parse(edited), parse(raw));
    expect(r.lines.map((l) => l.raw)).toEqual(raw);
    expect(r.details).toEqual([
      "line 2 of the daemon's copy (e1, as start) is not in the ledger file: it was changed or removed there",
      "line 2 of the ledger file (e1, as start) never reached the daemon's copy: no Cordon step sent it while the daemon ran",
    ]);
  });

  test('a line removed from the file, and one only in the file', () => {
    const { raw } = chain(4);
    const file = [raw[0], raw[1], raw[3], raw[2].replace('e2', 'x2')];
    const r = compareWithCopy(parse(file), parse(raw));
    expect(r.details.join('\n')).toContain(
      "line 3 of the daemon's copy (e2, as start) is not in the ledger file",
    );
    expect(r.details.join('\n')).toContain('line 4 of the ledger file (x2, as start) never reached');
  });
});
