/**
 * Main's reading of the daemon's READY line (src/actions/egress/launch.ts): `setup-ms` is the
 * action's start to the fence enforced, the daemon's `warmMs` taken off. READY is another
 * process's line: a `warmMs` that is not a whole, non-negative number of ms within the wait
 * must not turn `setup-ms` negative or NaN, nor reach the ledger line as it came.
 */
import { describe, expect, test } from '@jest/globals';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startFence } from '../../../src/actions/egress/launch.js';
import { parseEgressInputs } from '../../../src/actions/egress/inputs.js';
import type { Ledger } from '../../../src/ledger/ledger.js';
import { Runner } from '../../../src/platform/runner.js';
import { tempDir } from '../../harness/tmp.js';

/** Runs startFence against a stand-in daemon printing READY with `warmMs`; what it recorded. */
async function launched(
  warmMs: unknown,
): Promise<{ output: string; data: Record<string, unknown>; info: string }> {
  const dir = tempDir('cordon-launch-');
  const script = join(dir, 'daemon.mjs');
  const ready = { pid: 1, upstreams: ['127.0.0.53'], setupMs: 5, warmMs, ipv6: false, wildcard: true };
  writeFileSync(script, `console.log(${JSON.stringify(`READY ${JSON.stringify(ready)}`)});\n`);
  const outputs = new Map<string, string>();
  const infos: string[] = [];
  const runner = new (class extends Runner {
    override setOutput(name: string, value: string): void {
      outputs.set(name, value);
    }
    override saveState(): void {}
    override info(m: string): void {
      infos.push(m);
    }
    override warning(): void {}
  })({ RUNNER_TEMP: dir });
  const appended: Record<string, unknown>[] = [];
  const ledger = {
    seedCopy: () => 0,
    append: (_type: string, data: Record<string, unknown>) => void appended.push(data),
  } as unknown as Ledger;
  const settings = parseEgressInputs({ 'INPUT_ALLOWED-DOMAINS': 'example.com' });
  await startFence(settings, { runner, ledger, daemonScript: script, isRoot: true, timeoutMs: 10_000 });
  return { output: outputs.get('setup-ms') ?? '', data: appended[0], info: infos.join('\n') };
}

describe("the daemon's warmMs", () => {
  test('the control: a warm-up of 0 ms leaves setup-ms the time to READY, a whole number of ms', async () => {
    const r = await launched(0);
    expect(r.output).toMatch(/^\d+$/);
    expect(r.data.setupMs).toBe(Number(r.output));
    expect(r.data.warmUpMs).toBe(0);
  });

  test('the control: a warm-up within the wait is taken off setup-ms and recorded', async () => {
    const r = await launched(1);
    expect(r.output).toMatch(/^\d+$/);
    expect(r.data.warmUpMs).toBe(1);
    expect(r.info).toContain('warmed in 1 ms');
  });

  test.each([
    ['a string', 'slow'],
    ['a number as a string', '5'],
    ['more than the whole wait', 1e9],
    ['negative', -50],
    ['a fraction', 1.5],
    ['an object', { ms: 3 }],
    ['null', null],
  ])(
    'hostile: a READY whose warmMs is %s leaves setup-ms a whole non-negative number, and no warmUpMs',
    async (_, warm) => {
      const r = await launched(warm);
      expect(r.output).toMatch(/^\d+$/);
      expect(r.data.setupMs).toBe(Number(r.output));
      expect(r.data).not.toHaveProperty('warmUpMs');
      expect(r.info).not.toContain('warmed in');
    },
  );
});
