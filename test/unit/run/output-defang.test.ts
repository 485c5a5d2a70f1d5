/** The command's output reaches the runner with no workflow command of its own left in it. */
import { describe, expect, test } from '@jest/globals';
import { PassThrough, Writable } from 'node:stream';
import { CommandDefang, forward } from '../../../src/actions/run/output.js';
import { SecretRegistry, StreamScrubber } from '../../../src/platform/mask.js';

/**
 * Whether the runner would read `line` as a command (its two parsers, ActionCommand.cs),
 * taking more as leading whitespace than .NET's TrimStart does: every control too.
 */
function isCommand(line: string): boolean {
  // eslint-disable-next-line no-control-regex
  return line.replace(/^[\s\x00-\x20\x85]+/, '').startsWith('::') || line.includes('##[');
}
/** Lines as the runner reads them: CR, LF or CR LF end one. */
const lines = (s: string): string[] => s.split(/\r\n|\r|\n/);

function defang(text: string, chunk = 0): string {
  const d = new CommandDefang();
  const bytes = Buffer.from(text, 'utf8');
  if (!chunk) return d.push(bytes).toString('utf8');
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += chunk) out.push(d.push(bytes.subarray(i, i + chunk)));
  return Buffer.concat(out).toString('utf8');
}

const hostile = [
  '::add-mask::IMPERSONATION',
  '   \t::add-mask::ALTERED',
  'x\r::add-mask::CAUTION',
  'x\r\n::stop-commands::tok',
  '\u00a0\u2003::warning::nbsp',
  '\u0085::error title=Cordon::Record intact',
  '\x1c::notice::fs',
  'text ##[add-mask]findings',
  '###[error]x',
  '\ufeff::add-mask::bom',
].join('\n');

describe('workflow commands in the output', () => {
  test('hostile: every line the runner would read as a command is defanged, whole or one byte at a time', () => {
    expect(lines(hostile).filter(isCommand).length).toBe(10);
    for (const chunk of [0, 1, 2, 3, 7]) {
      const out = defang(hostile, chunk);
      expect(lines(out).filter(isCommand)).toEqual([]);
      // Nothing but the zero-width spaces is added.
      expect(out.replace(/\u200b/g, '')).toBe(hostile);
    }
  });

  test('text that only looks like a command is left byte for byte', () => {
    const plain = 'a::b\nhttp://x.test\n## [x] heading\n#[1]\n: one colon\nC:\\dir\n日本語 ok\n';
    expect(defang(plain, 1)).toBe(plain);
    expect(defang(plain)).toBe(plain);
  });

  test('forward scrubs first, then defangs: a secret split by the marker would still be caught', async () => {
    const registry = new SecretRegistry(() => {});
    registry.register('s3cr3t-value-1234', { name: 'SECRET' });
    const from = new PassThrough();
    const got: Buffer[] = [];
    const to = new Writable({
      write(c: Buffer, _e, cb) {
        got.push(c);
        cb();
      },
    });
    const done = forward(from, to, new StreamScrubber(registry.matcher()));
    from.end('::add-mask::s3cr3t-value-1234\n##[error]s3cr3t-value-1234\n');
    await done;
    const out = Buffer.concat(got).toString('utf8');
    expect(out).not.toContain('s3cr3t-value-1234');
    expect(lines(out).filter(isCommand)).toEqual([]);
  });
});
