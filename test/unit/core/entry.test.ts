import { afterEach, describe, expect, jest, test } from '@jest/globals';
import { runEntry, type EntryContext } from '../../../src/actions/entry.js';
import { Ledger } from '../../../src/ledger/ledger.js';
import { CordonError } from '../../../src/platform/errors.js';
import { secrets } from '../../../src/platform/mask.js';
import { Runner } from '../../../src/platform/runner.js';

afterEach(() => {
  process.exitCode = 0;
});

function capture(): { out: string[]; restore: () => void } {
  const out: string[] = [];
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: unknown) => {
    out.push(String(chunk));
    return true;
  });
  return { out, restore: () => spy.mockRestore() };
}

describe('entry', () => {
  test('a CordonError becomes one ::error:: with what, why and fix, and exit code 1', async () => {
    const c = capture();
    await runEntry(
      () => {
        throw new CordonError({ what: 'aws: input x is bad', why: 'because', fix: 'do y' });
      },
      { runner: new Runner({}) },
    );
    c.restore();
    const errors = c.out.filter((l) => l.startsWith('::error'));
    expect(errors).toEqual(['::error::aws: input x is bad — because. Fix: do y\n']);
    expect(process.exitCode).toBe(1);
  });

  test('an unexpected error keeps no stack and is scrubbed of registered secrets', async () => {
    const c = capture();
    secrets.register('sk-live-0123456789abcdef', { name: 'API_KEY' });
    await runEntry(
      () => {
        throw new Error('request failed: body={"key":"sk-live-0123456789abcdef"}');
      },
      { runner: new Runner({}) },
    );
    c.restore();
    const text = c.out.filter((l) => l.startsWith('::error')).join('');
    expect(text).toContain('unexpected error: request failed');
    expect(text).not.toContain('sk-live-0123456789abcdef');
    expect(text).not.toMatch(/\bat .*\.(ts|js):\d+/);
  });

  test('a main gets the runner, its env, the process registry and the ledger in one context', async () => {
    const runner = new Runner({ RUNNER_TEMP: '/tmp/cordon-entry-test' });
    let got: EntryContext | undefined;
    await runEntry(
      (ctx) => {
        got = ctx;
      },
      { runner },
    );
    expect(got?.runner).toBe(runner);
    expect(got?.env).toBe(runner.env);
    expect(got?.registry).toBe(secrets);
    expect(got?.ledger('aws').path).toBe(Ledger.forEnv(runner.env, { action: 'aws' }).path);
    expect(got?.bundled('daemon.js')).toMatch(/\/daemon\.js$/);
  });
});
