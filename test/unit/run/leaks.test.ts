import { describe, expect, test } from '@jest/globals';
import { mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SecretRegistry } from '../../../src/platform/mask.js';
import { findLeaks, scanWorkspace } from '../../../src/actions/run/leaks.js';
import { tempDir } from '../../harness/tmp.js';

const SECRET = 'leak-scan-secret-value-42';

function registry(): SecretRegistry {
  const reg = new SecretRegistry(() => undefined);
  reg.register(SECRET, { name: 'TOKEN' });
  return reg;
}

describe('leak scan', () => {
  test('reports path, line and name for each form, once per line', () => {
    const text = `a\nb ${SECRET} ${SECRET}\nc\n${Buffer.from(SECRET).toString('hex')}\n`;
    expect(findLeaks(Buffer.from(text), 'f.txt', registry())).toEqual([
      { secret: 'TOKEN', path: 'f.txt', line: 2 },
      { secret: 'TOKEN', path: 'f.txt', line: 4 },
    ]);
  });

  test('scans files changed since the start, skips the rest and names files too large', async () => {
    const ws = tempDir('cordon-run-leaks-');
    mkdirSync(join(ws, 'deep', 'er'), { recursive: true });
    writeFileSync(join(ws, 'old.txt'), SECRET);
    // File times come from the kernel's coarse clock, a few ms behind Date.now().
    await new Promise((r) => setTimeout(r, 100));
    const since = Date.now() - 40;
    writeFileSync(join(ws, 'deep', 'er', 'new.txt'), `x\n${SECRET}\n`);
    writeFileSync(join(ws, 'big.bin'), Buffer.alloc(2048, 'a'));
    // An old mtime does not hide a file: writing it set its ctime.
    writeFileSync(join(ws, 'backdated.txt'), SECRET);
    utimesSync(join(ws, 'backdated.txt'), new Date(0), new Date(0));
    const reg = registry();
    // old.txt predates the command: only files written after `since` are read.
    const scan = scanWorkspace({ workspace: ws, registry: reg, since: since, maxFileBytes: 1024 });
    expect(scan.leaks.sort((a, b) => a.path.localeCompare(b.path))).toEqual([
      { secret: 'TOKEN', path: 'backdated.txt', line: 1 },
      { secret: 'TOKEN', path: 'deep/er/new.txt', line: 2 },
    ]);
    expect(scan.skipped).toEqual(['big.bin (over 1024 bytes)']);
  });
});
