/**
 * CommandFence: the runner takes no workflow command from the command's output. What `run`
 * writes around it, in order, on two streams standing for its stdout and stderr.
 */
import { describe, expect, test } from '@jest/globals';
import { PassThrough, Readable } from 'node:stream';
import { CommandFence, forward } from '../../../src/actions/run/output.js';
import { SecretRegistry, stdoutMaskSink } from '../../../src/platform/mask.js';

/** Everything written to both streams, in the order written, each tagged with its stream. */
function streams(): { out: PassThrough; err: PassThrough; log: string[] } {
  const log: string[] = [];
  const out = new PassThrough();
  const err = new PassThrough();
  out.on('data', (d: Buffer) => log.push(`out:${d.toString()}`));
  err.on('data', (d: Buffer) => log.push(`err:${d.toString()}`));
  return { out, err, log };
}

const token = (log: string[]): string => /::stop-commands::(\S+)\n/.exec(log[0])?.[1] ?? 'none';

describe('CommandFence', () => {
  test("stop before the command, token back after it; an open line on either stream is ended first, stderr's given time", async () => {
    const { out, err, log } = streams();
    const fence = new CommandFence(out, err, 60);
    fence.open();
    await Promise.all([
      forward(
        Readable.from([Buffer.from('::add-mask::x\n'), Buffer.from('::warning::open')]),
        out,
        undefined,
        fence.stdoutLine,
      ),
      forward(Readable.from([Buffer.from('::error::open on stderr')]), err, undefined, fence.stderrLine),
    ]);
    const t0 = Date.now();
    let tokenAt = 0;
    out.on('data', (d: Buffer) => d.toString().includes('::cordon-') && (tokenAt = Date.now()));
    await fence.close();
    const t = token(log);
    expect(t).toMatch(/^cordon-[0-9a-f]{32}$/);
    // Each stream's open line ended, then the token on stdout, last.
    expect(log.indexOf('err:\n')).toBeGreaterThan(log.indexOf('err:::error::open on stderr'));
    expect(log.indexOf('out:\n')).toBeGreaterThan(log.indexOf('out:::warning::open'));
    expect(log.at(-1)).toBe(`out:::${t}::\n`);
    expect(log.indexOf('err:\n')).toBeLessThan(log.length - 1);
    // The runner's stderr thread got its time before the token.
    expect(tokenAt - t0).toBeGreaterThanOrEqual(50);
    // Lines that ended need nothing more, and no wait.
    const b = streams();
    const f2 = new CommandFence(b.out, b.err, 5000);
    f2.open();
    await forward(Readable.from([Buffer.from('done\n')]), b.out, undefined, f2.stdoutLine);
    const t1 = Date.now();
    await f2.close();
    expect(Date.now() - t1).toBeLessThan(1000);
    expect(b.log).toEqual([
      `out:::stop-commands::${token(b.log)}\n`,
      'out:done\n',
      `out:::${token(b.log)}::\n`,
    ]);
    // A new token each time.
    expect(token(b.log)).not.toBe(t);
  });

  test('masks registered while the fence is up wait and follow the token', async () => {
    const written: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    const { out, err, log } = streams();
    const fence = new CommandFence(out, err, 0);
    // The registry's own sink writes to process.stdout, as the runner reads it.
    process.stdout.write = ((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    }) as typeof process.stdout.write;
    try {
      fence.open();
      new SecretRegistry(stdoutMaskSink).register('refreshed-secret-value-1234', {
        name: 'broker credential',
      });
      expect(written).toEqual([]);
      out.on('data', () => written.push('<token>'));
      await fence.close();
    } finally {
      process.stdout.write = write;
    }
    expect(written[0]).toBe('<token>');
    expect(written.slice(1)).toContain('::add-mask::refreshed-secret-value-1234\n');
    expect(log.at(-1)).toMatch(/^out:::cordon-[0-9a-f]{32}::\n$/);
  });

  test('closing twice writes the token once', async () => {
    const { out, err, log } = streams();
    const fence = new CommandFence(out, err, 0);
    fence.open();
    fence.open();
    await fence.close();
    await fence.close();
    expect(log).toHaveLength(2);
    expect(log[1]).toBe(`out:::${token(log)}::\n`);
  });
});
