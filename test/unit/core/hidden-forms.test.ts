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
});
