/** Secrets printed between terminal escapes or invisible characters: named, whatever the chunks. */
import { describe, expect, test } from '@jest/globals';
import { HiddenFormDetector } from '../../../src/platform/hidden-forms.js';
import { SecretRegistry, StreamScrubber } from '../../../src/platform/mask.js';

const VALUE = 'hidden-secret-value-5d2e9a';

function setup(): { registry: SecretRegistry; detector: HiddenFormDetector } {
  const registry = new SecretRegistry(() => {});
  registry.register(VALUE, { name: 'API_KEY' });
  registry.register('another-secret-0000', { name: 'OTHER' });
  return {
    registry,
    detector: new HiddenFormDetector(
      () => registry.matcher(),
      (i) => registry.nameOfForm(i),
    ),
  };
}

/** The value with `sep` between every two characters. */
const between = (v: string, sep: string): string => [...v].join(sep);

/** What the scrubber lets through, fed to the detector in chunks of `size` bytes. */
function run(text: string, size: number): { found: string[]; out: string } {
  const { registry, detector } = setup();
  const scrubber = new StreamScrubber(registry.matcher());
  const buf = Buffer.from(text, 'utf8');
  const out: Buffer[] = [];
  for (let at = 0; at < buf.length; at += size) {
    const o = scrubber.push(buf.subarray(at, at + size));
    detector.push(o);
    out.push(o);
  }
  const last = scrubber.flush();
  detector.push(last);
  out.push(last);
  return { found: detector.found, out: Buffer.concat(out).toString('utf8') };
}

describe('HiddenFormDetector', () => {
  const hidden: [string, string][] = [
    ['a colour reset between characters', between(VALUE, '\x1b[0m')],
    ['colour codes with parameters', between(VALUE, '\x1b[38;5;196m')],
    ['zero-width spaces', between(VALUE, '\u200b')],
    ['zero-width joiners and word joiners', between(VALUE, '\u200d\u2060')],
    ['byte order marks and soft hyphens', between(VALUE, '\ufeff\u00ad')],
    ["tput sgr0's reset (a charset escape, then SGR)", between(VALUE, '\x1b(B\x1b[m')],
    ['an OSC title between halves', `${VALUE.slice(0, 9)}\x1b]0;title\x07${VALUE.slice(9)}`],
    ['its hex, behind escapes', between(Buffer.from(VALUE).toString('hex'), '\x1b[m')],
  ];
  test.each(hidden)(
    'hostile: the value with %s passes the scrubber and is named, in any chunking',
    (_what, text) => {
      for (const size of [1, 2, 3, 7, 64, 4096]) {
        const { found, out } = run(`before ${text} after\n`, size);
        // The attack: the scrubber lets it through as written.
        expect(out).toContain(text);
        expect(found).toEqual(['API_KEY']);
      }
    },
  );

  test('the value written plainly is scrubbed and not named again; ordinary colour output names nothing', () => {
    expect(run(`x ${VALUE} y\n`, 5).found).toEqual([]);
    expect(run(`\x1b[32mok\x1b[0m \u200b done ${VALUE.slice(0, 8)}\n`, 3).found).toEqual([]);
  });

  test('an unterminated OSC ends after its bound and cannot blind what follows', () => {
    const text = `\x1b]0;${'x'.repeat(5000)}${between(VALUE, '\x1b[0m')}\n`;
    expect(run(text, 512).found).toEqual(['API_KEY']);
  });

  // The runner splits the log at line ends (LF, a lone CR): an escape left open on one line
  // does not hide the next line in the viewer, so it cannot hide it from the detector either.
  test.each([
    ['an OSC', '\x1b]0;'],
    ['an OSC at its ESC', '\x1b]0;\x1b'],
    ['a lone ESC', '\x1b'],
  ])('hostile: %s left open at a line end does not hide the next line', (_what, open) => {
    for (const end of ['\n', '\r']) {
      for (const size of [1, 5, 4096]) {
        const { found } = run(`${open}${end}${between(VALUE, '\x1b[0m')}\n`, size);
        expect(found).toEqual(['API_KEY']);
      }
    }
  });

  // Characters a browser draws as nothing, beyond the zero-width ones.
  test.each([
    ['left-to-right and right-to-left marks', '\u200e\u200f'],
    ['bidi embeddings and isolates', '\u202a\u202c\u2066\u2069'],
    ['invisible operators', '\u2061\u2062\u2063\u2064'],
    ['a combining grapheme joiner', '\u034f'],
    ['variation selectors', '\ufe0f'],
  ])('hostile: the value with %s between characters is named', (_what, sep) => {
    for (const size of [1, 3, 4096]) expect(run(`${between(VALUE, sep)}\n`, size).found).toEqual(['API_KEY']);
  });

  // A guard against a cost per byte that grows (it read 90 ms a megabyte before the trie, 20 after).
  test('ten megabytes of coloured, non-ASCII output are read in under two seconds', () => {
    const line = '\x1b[32m✓\x1b[0m test passed — “quoted” ─── ok\n';
    const text = line.repeat(Math.ceil(10_000_000 / Buffer.byteLength(line)));
    const { detector } = setup();
    const buf = Buffer.from(text, 'utf8');
    const t = process.hrtime.bigint();
    for (let at = 0; at < buf.length; at += 65536) detector.push(buf.subarray(at, at + 65536));
    const ms = Number(process.hrtime.bigint() - t) / 1e6;
    expect(detector.found).toEqual([]);
    expect(ms).toBeLessThan(2000);
  });
});
