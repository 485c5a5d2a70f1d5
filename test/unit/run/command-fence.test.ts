/**
 * What `run` writes after and around the command's output so that its own workflow commands
 * still start lines: an open line the command left is ended, and a mask registered while the
 * command has a line open on stdout starts a line of its own.
 */
import { describe, expect, test } from '@jest/globals';
import { PassThrough, Readable } from 'node:stream';
import { endOpenLine, forward } from '../../../src/actions/run/output.js';
import { SecretRegistry, stdoutLine, stdoutMaskSink, type LineEnd } from '../../../src/platform/mask.js';

/** Everything written to a stream, in order. */
function stream(): { out: PassThrough; log: string[] } {
  const log: string[] = [];
  const out = new PassThrough();
  out.on('data', (d: Buffer) => log.push(d.toString()));
  return { out, log };
}

describe('the lines run writes after the command', () => {
  test('an open line the command left is ended once; an ended one gets nothing', async () => {
    const a = stream();
    const line: LineEnd = { ended: true };
    await forward(
      Readable.from([Buffer.from('done\n'), Buffer.from('::warning::open')]),
      a.out,
      undefined,
      line,
    );
    expect(line.ended).toBe(false);
    endOpenLine(a.out, line);
    endOpenLine(a.out, line);
    expect(a.log.join('')).toBe('done\n:\u200b:warning::open\n');
    const b = stream();
    const ended: LineEnd = { ended: true };
    await forward(Readable.from([Buffer.from('done\n')]), b.out, undefined, ended);
    endOpenLine(b.out, ended);
    expect(b.log.join('')).toBe('done\n');
  });

  test("hostile: a mask registered while the command's stdout line is open starts a line of its own", async () => {
    const written: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    // The registry's own sink writes to process.stdout, as the runner reads it.
    process.stdout.write = ((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    }) as typeof process.stdout.write;
    try {
      await forward(
        Readable.from([Buffer.from('the agent prints without a newline: ')]),
        process.stdout,
        undefined,
        stdoutLine,
      );
      expect(stdoutLine.ended).toBe(false);
      new SecretRegistry(stdoutMaskSink).register('refreshed-secret-value-1234', {
        name: 'broker credential',
      });
      new SecretRegistry(stdoutMaskSink).register('another-refreshed-value-5678', {
        name: 'broker credential',
      });
    } finally {
      process.stdout.write = write;
      stdoutLine.ended = true;
    }
    const text = written.join('');
    // As the runner splits it: each mask a line of its own, from its first byte.
    const lines = text.split('\n');
    expect(lines).toContain('::add-mask::refreshed-secret-value-1234');
    expect(lines).toContain('::add-mask::another-refreshed-value-5678');
    expect(lines[0]).toBe('the agent prints without a newline: ');
  });

  test("hostile: the command's bytes after a mask that broke its line are read as a line's start", async () => {
    const written: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string | Uint8Array) => {
      written.push(Buffer.from(chunk).toString());
      return true;
    }) as typeof process.stdout.write;
    const from = new PassThrough();
    try {
      const done = forward(from, process.stdout, undefined, stdoutLine);
      // The agent holds a line open, the broker's refresh registers a mask (run ends the line
      // for it), and the agent then prints a command: to the runner it starts a line.
      from.write('x');
      await new Promise((r) => setImmediate(r));
      new SecretRegistry(stdoutMaskSink).register('refreshed-secret-value-1234', {
        name: 'broker credential',
      });
      from.write(' \t::add-mask::CAUTION\n');
      await new Promise((r) => setImmediate(r));
      new SecretRegistry(stdoutMaskSink).register('another-refreshed-value-5678', {
        name: 'broker credential',
      });
      from.end('##[error]x\n');
      await done;
    } finally {
      process.stdout.write = write;
      stdoutLine.ended = true;
    }
    const lines = written.join('').split(/\r\n|\r|\n/);
    // Leading whitespace and controls, as the runner's TrimStart takes them (and more).
    // eslint-disable-next-line no-control-regex
    const lead = /^[\s\x00-\x20]+/;
    const commands = lines.filter((l) => l.replace(lead, '').startsWith('::') || l.includes('##['));
    // run's masks are read; the command's own two lines are not.
    expect(commands).toContain('::add-mask::refreshed-secret-value-1234');
    expect(commands).toContain('::add-mask::another-refreshed-value-5678');
    expect(lines.filter((l) => l.includes('CAUTION') || l.includes('[error]')).length).toBe(2);
    expect(commands.filter((l) => l.includes('CAUTION') || l.includes('[error]'))).toEqual([]);
  });
});
