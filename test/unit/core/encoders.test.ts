/**
 * Scrubbing holds against real encoders (issue 17): Python's standard library, Node, bash and
 * jq are run on values holding every printable ASCII character, non-ASCII ones and token-like
 * ones, and every form they write is scrubbed from a log line, whole and split across every
 * chunk boundary of the stream scrubber. The encoders run live: a missing one (jq) fails the
 * test, never skips it (CI installs it, .ci/run). The fixture keeps the forms another machine's
 * versions wrote (regenerate: npx tsx test/harness/encoders.ts).
 */
import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { ENCODER_FIXTURE, ENCODER_VALUES, runEncoders, type EncodedForm } from '../../harness/encoders.js';
import { SecretRegistry, StreamScrubber } from '../../../src/platform/mask.js';

const live = runEncoders();
const fixture = JSON.parse(readFileSync(ENCODER_FIXTURE, 'utf8')) as {
  values: Record<string, string>;
  forms: EncodedForm[];
};

function registry(values: Record<string, string>): SecretRegistry {
  const reg = new SecretRegistry(() => undefined);
  for (const [name, v] of Object.entries(values)) reg.register(v, { name });
  return reg;
}

const BEFORE = 'log: token=';
const AFTER = '; next\n';
/**
 * What may be left of an encoder's output once scrubbed, none of it secret: the quotes and
 * prefixes it wraps the value in (repr's `b'...'`, bash's `$'...'`, JSON's quotes), a UTF-16
 * byte order mark, the zero byte of an ASCII value's first or last UTF-16 character (one form
 * covers both byte orders) and base32's `=` padding.
 */
const LEFT = /^(?:b|\$)?(?:fffe)?(?:00)?(['"]?)\*\*\*\1(?:00|=+)?$/;

/** The scrubbed output between BEFORE and AFTER, with adjacent `***` runs as one. */
function middle(scrubbed: string): string {
  expect(scrubbed.startsWith(BEFORE)).toBe(true);
  expect(scrubbed.endsWith(AFTER)).toBe(true);
  return scrubbed.slice(BEFORE.length, scrubbed.length - AFTER.length).replace(/(\*\*\*)+/g, '***');
}

/** Each form of `forms` that scrubbing a log line leaves more of than LEFT allows, described. */
function unscrubbed(forms: EncodedForm[], values: Record<string, string>): string[] {
  const reg = registry(values);
  return forms
    .map((f) => ({ f, left: middle(reg.scrub(`${BEFORE}${f.output}${AFTER}`)) }))
    .filter(({ left }) => !LEFT.test(left))
    .map(({ f, left }) => `${label(f)}: ${JSON.stringify(f.output)} left ${JSON.stringify(left)}`);
}

function label(f: EncodedForm): string {
  return `${f.encoder} of ${f.value}`;
}

describe('every form a real encoder writes is scrubbed', () => {
  it('runs every encoder (python3, node, bash, jq) on every value', () => {
    const encoders = new Set(live.map((f) => f.encoder.split(' ')[0]));
    expect([...encoders].sort()).toEqual(['bash', 'jq', 'node', 'python']);
    // 18 Python forms, 8 Node, 4 bash (two locales), 4 jq for each value.
    expect(live.length).toBe(Object.keys(ENCODER_VALUES).length * 34);
    // The corpus changes the value: a form equal to it would test nothing new.
    const changed = live.filter((f) => f.output !== ENCODER_VALUES[f.value]);
    expect(changed.length).toBeGreaterThan(live.length * 0.8);
  });

  it('scrubs each live form from a log line, leaving only its quotes', () => {
    expect(unscrubbed(live, ENCODER_VALUES)).toEqual([]);
  });

  it('scrubs each fixture form from a log line, leaving only its quotes', () => {
    expect(unscrubbed(fixture.forms, fixture.values)).toEqual([]);
  });

  it('scrubs each live form split across two chunks, at its first and last bytes and between', () => {
    const reg = registry(ENCODER_VALUES);
    const matcher = reg.matcher();
    const failed: string[] = [];
    for (const f of live) {
      const line = Buffer.from(`${BEFORE}${f.output}${AFTER}`);
      const start = Buffer.byteLength(BEFORE);
      const end = line.length - Buffer.byteLength(AFTER);
      // Every cut in the first and last 8 bytes, and about 24 between (each cut is a new stream).
      const step = Math.max(1, Math.floor((end - start) / 24));
      const cuts = new Set<number>();
      for (let cut = start; cut <= end; cut += step) cuts.add(cut);
      for (let i = 0; i <= 8; i++) cuts.add(Math.min(end, start + i)).add(Math.max(start, end - i));
      for (const cut of cuts) {
        const s = new StreamScrubber(matcher);
        const out = Buffer.concat([s.push(line.subarray(0, cut)), s.push(line.subarray(cut)), s.flush()]);
        const left = middle(out.toString('utf8'));
        if (!LEFT.test(left)) {
          failed.push(`${label(f)} cut at ${cut - start}: left ${JSON.stringify(left)}`);
          break;
        }
      }
    }
    expect(failed).toEqual([]);
  });

  it('finds each live form with the leak scan (findIn names the secret)', () => {
    const reg = registry(ENCODER_VALUES);
    const missed = live.filter((f) => reg.findIn(`x ${f.output} y`) === undefined).map(label);
    expect(missed).toEqual([]);
  });

  it('does not scrub the text around a form', () => {
    const reg = registry(ENCODER_VALUES);
    expect(reg.scrub("log: token=ghp_ and b'' and fffe0000 and %20%21; next")).toBe(
      "log: token=ghp_ and b'' and fffe0000 and %20%21; next",
    );
  });
});
