/**
 * Secret registration: every value is masked with the runner (`::add-mask::`) and kept in
 * Cordon's own registry, with the encoded forms the runner's masker misses, so that
 * Cordon's scrubber, ledger and error paths can refuse or redact them.
 */
import { CordonError } from './errors.js';
import {
  LINE_START,
  Matcher,
  REDACTED,
  lineStateAt,
  mergeRanges,
  redact,
  scanWrapped,
  type LineState,
  type Range,
} from './match.js';
import { FormBytes, MIN_SECRET_LENGTH, PEM_ARMOR, secretForms } from './secret-forms.js';

export interface RegisterOptions {
  /** Name shown in place of the value (`GH_TOKEN`, `aws session token`). */
  name: string;
  /** The caller says the value is not secret: short values are then skipped, not refused. */
  notSecret?: boolean;
}

/** Where `::add-mask::` lines go; the runner reads them from stdout. */
export type MaskSink = (value: string) => void;

/** Whether the last byte written to a stream ended a line. */
export interface LineEnd {
  ended: boolean;
}

/**
 * The step's stdout, as `run` forwards the command's output to it: a mask line written while
 * the command has a line open there would land inside that line, and the runner would take
 * no mask from it (and show the value it was to hide). `stdoutMaskSink` ends the line first.
 */
export const stdoutLine: LineEnd = { ended: true };

export function stdoutMaskSink(value: string): void {
  const escaped = value.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
  process.stdout.write(`${stdoutLine.ended ? '' : '\n'}::add-mask::${escaped}\n`);
  stdoutLine.ended = true;
}

export interface SecretHit {
  start: number;
  end: number;
  /** The name the secret was registered under, never its value. */
  name: string;
}

export class SecretRegistry {
  /** Values registered, so that registering one again costs one lookup. */
  private readonly values = new Set<string>();
  /**
   * Every form's UTF-8 bytes back to back (form i is data[starts[i], starts[i + 1])), ready
   * for the matcher, and the index in `names` of the secret it came from. Kept as bytes, not
   * strings: 100k+ live form strings made every young-generation GC copy them all, which
   * cost more than computing them.
   */
  private data: Buffer = Buffer.allocUnsafe(64 * 1024);
  private used = 0;
  private starts = new Int32Array(4096);
  private owner = new Int32Array(4096);
  private count = 0;
  private readonly names: string[] = [];
  /** The byte count of each form of the value being registered, filled by `secretForms`. */
  private readonly formBytes = new FormBytes();
  /** Scratch lists for `storeSplit`. */
  private readonly asciiForms: string[] = [];
  private readonly wideForms: string[] = [];
  private matcherCache: Matcher | undefined;
  private foldedCache: Matcher | undefined;

  constructor(private readonly sink: MaskSink = stdoutMaskSink) {}

  /**
   * Masks `value` with the runner and remembers it and its forms. Throws when the value is
   * too short to mask safely, unless it was declared not secret (then nothing is masked).
   */
  register(value: string, opts: RegisterOptions): string[] {
    if (value.length < MIN_SECRET_LENGTH) {
      if (opts.notSecret) return [];
      throw new CordonError({
        what: `secret ${opts.name} is ${value.length === 0 ? 'empty' : `only ${value.length} character(s) long`}`,
        why: `values shorter than ${MIN_SECRET_LENGTH} characters cannot be masked without hiding ordinary text`,
        fix: 'check that the secret exists and has a value, or mark it as not secret if it is not one',
      });
    }
    const forms = secretForms(value, this.formBytes);
    if (this.values.has(value)) return forms;
    this.values.add(value);
    // A form shared with another secret is kept twice: one more needle costs less than a
    // lookup per form, and the first registered name wins in reports.
    this.names.push(opts.name);
    this.store(forms, this.names.length - 1);
    // Only a value with a newline has forms with one (text encodings escape it).
    const multiline = value.includes('\n');
    for (const f of forms) {
      // The runner masks line by line, so a multi-line value is registered one line at a time.
      if (!multiline || !f.includes('\n')) {
        this.sink(f);
        continue;
      }
      for (const line of f.split(/\r?\n/)) {
        const t = line.trim();
        if (t.length >= MIN_SECRET_LENGTH && !PEM_ARMOR.test(t)) this.sink(t);
      }
    }
    this.matcherCache = undefined;
    this.foldedCache = undefined;
    return forms;
  }

  /** Appends the UTF-8 bytes of `forms`, all from secret `secret`. */
  private store(forms: string[], secret: number): void {
    const bytes = this.formBytes;
    if (bytes.known && bytes.wide) {
      this.storeSplit(forms, bytes.counts, secret);
      return;
    }
    const joined = forms.join('');
    // UTF-8 takes at most 3 bytes per UTF-16 unit.
    this.reserve(joined.length * 3, forms.length);
    let at = this.used;
    const written = this.data.write(joined, at);
    // Only an ASCII value has forms whose lengths are their byte counts. Otherwise each form's
    // byte count is measured; if they do not add up to what was written, a surrogate split
    // between two forms paired up, and each form is encoded on its own.
    const ascii = written === joined.length;
    let lengths: number[] | undefined;
    if (!ascii) {
      lengths = forms.map((f) => Buffer.byteLength(f));
      if (lengths.reduce((a, b) => a + b, 0) !== written) lengths = undefined;
    }
    for (let i = 0; i < forms.length; i++) {
      const len = ascii ? forms[i].length : lengths ? lengths[i] : this.data.write(forms[i], at);
      this.add(at, secret);
      at += len;
    }
    this.starts[this.count] = at;
    this.used = at;
  }

  /**
   * The forms of a value with non-ASCII characters, whose byte counts are known: the ASCII
   * ones first, copied as one string a byte a character, then the others as UTF-8. Encoding
   * all of them as UTF-8 in one string cost as much as making them; which of a secret's forms
   * comes first among the needles changes nothing (a hit names the secret, not the form).
   */
  private storeSplit(forms: string[], counts: Int32Array, secret: number): void {
    const ascii = this.asciiForms;
    const wide = this.wideForms;
    ascii.length = 0;
    wide.length = 0;
    let wideBytes = 0;
    for (let i = 0; i < forms.length; i++) {
      const f = forms[i];
      if (counts[i] === f.length) {
        ascii.push(f);
      } else {
        wide.push(f);
        wideBytes += counts[i];
      }
    }
    const a = ascii.join('');
    const w = wide.join('');
    this.reserve(a.length + wideBytes, forms.length);
    let at = this.used;
    this.data.write(a, at, 'latin1');
    this.data.write(w, at + a.length);
    for (const f of ascii) {
      this.add(at, secret);
      at += f.length;
    }
    for (let i = 0; i < forms.length; i++) {
      if (counts[i] === forms[i].length) continue;
      this.add(at, secret);
      at += counts[i];
    }
    this.starts[this.count] = at;
    this.used = at;
  }

  /** Records that a form of `secret` starts at `at`. */
  private add(at: number, secret: number): void {
    this.starts[this.count] = at;
    this.owner[this.count] = secret;
    this.count++;
  }

  /** Room for `bytes` more bytes and `forms` more forms (the data is copied when it grows). */
  private reserve(bytes: number, forms: number): void {
    if (this.used + bytes > this.data.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.data.length * 2, this.used + bytes));
      this.data.copy(grown, 0, 0, this.used);
      this.data = grown;
    }
    if (this.count + forms + 1 > this.starts.length) {
      const size = Math.max(this.starts.length * 2, this.count + forms + 1);
      const starts = new Int32Array(size);
      starts.set(this.starts.subarray(0, this.count + 1));
      this.starts = starts;
      const owner = new Int32Array(size);
      owner.set(this.owner.subarray(0, this.count));
      this.owner = owner;
    }
  }

  /** The name of the secret whose form has index `i` in the matcher. */
  nameOfForm(i: number): string {
    return this.names[this.owner[i]];
  }

  /** Number of forms registered. */
  get size(): number {
    return this.count;
  }

  /**
   * The matcher over every form registered so far. A later `register` makes a new one; one
   * already handed out keeps seeing the bytes it was built on (they are never written again).
   */
  matcher(): Matcher {
    // A view, not a copy: the entries up to `count` are never written again (a later form
    // starts where the last one ended), and growing makes new arrays.
    this.matcherCache ??= new Matcher({
      data: this.data.subarray(0, this.used),
      starts: this.starts.subarray(0, this.count + 1),
    });
    return this.matcherCache;
  }

  /** Every registered form in `buf`, longest at each position, with the secret's name. */
  findAll(buf: Buffer): SecretHit[] {
    if (this.count === 0) return [];
    const names = this.names;
    const owner = this.owner;
    const raw: [number, number, number][] = [];
    const collect = (start: number, end: number, i: number): void => {
      raw.push([start, end, i]);
    };
    const matcher = this.matcher();
    matcher.scan(buf, collect);
    scanWrapped(matcher, buf, LINE_START, collect);
    // At one position the longest form wins, then the first registered.
    raw.sort((a, b) => a[0] - b[0] || b[1] - a[1] || a[2] - b[2]);
    const hits: SecretHit[] = [];
    for (const [start, end, i] of raw) {
      if (hits.length && hits[hits.length - 1].start === start) continue;
      hits.push({ start, end, name: names[owner[i]] });
    }
    return hits;
  }

  /**
   * Name of a registered secret in `text` when ASCII case is ignored (DNS names arrive
   * lower-cased, so a value or its base64 sent as a name is only found this way).
   */
  findFolded(text: string): string | undefined {
    if (this.count === 0) return undefined;
    this.foldedCache ??= new Matcher({
      data: foldAscii(this.data.subarray(0, this.used)),
      starts: this.starts.slice(0, this.count + 1),
    });
    let found: number | undefined;
    this.foldedCache.scan(foldAscii(Buffer.from(text, 'utf8')), (_s, _e, i) => {
      found ??= i;
    });
    return found === undefined ? undefined : this.names[this.owner[found]];
  }

  /** Name of a registered secret found in `text`, or undefined. Never returns the value. */
  findIn(text: string | Buffer): string | undefined {
    const buf = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
    return this.findAll(buf)[0]?.name;
  }

  scrub(text: string): string {
    if (this.count === 0) return text;
    const buf = Buffer.from(text, 'utf8');
    const ranges = findRanges(this.matcher(), buf, LINE_START);
    return ranges.length ? redact(buf, ranges).toString('utf8') : text;
  }

  scrubBuffer(buf: Buffer): Buffer {
    if (this.count === 0) return buf;
    return redact(buf, findRanges(this.matcher(), buf, LINE_START));
  }
}

/**
 * `value` with every string in it (at any depth of arrays and plain objects) scrubbed of
 * every registered form; numbers, booleans and the keys of objects as they are. For records
 * that carry names the command chose (an output's name, a file it left, a line it wrote to a
 * file command): the ledger refuses a line holding a secret, so one such name would
 * otherwise keep the whole line out of the record.
 */
export function scrubStrings<T>(value: T, registry: SecretRegistry): T {
  if (registry.size === 0) return value;
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return registry.scrub(v);
    if (Array.isArray(v)) return v.map(walk);
    if (v !== null && typeof v === 'object')
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  return walk(value) as T;
}

/** A copy of `buf` with A-Z as a-z. */
function foldAscii(buf: Buffer): Buffer {
  const out = Buffer.from(buf);
  for (let i = 0; i < out.length; i++) if (out[i] >= 65 && out[i] <= 90) out[i] += 32;
  return out;
}

/** Every form in `buf`, also across the newlines of wrapped base64, as merged ranges. */
function findRanges(matcher: Matcher, buf: Buffer, start: LineState): Range[] {
  const wrapped: Range[] = [];
  scanWrapped(matcher, buf, start, (s, e) => wrapped.push({ start: s, end: e }));
  return mergeRanges(matcher.find(buf), wrapped);
}

/**
 * Scrubs a byte stream: holds back the last (longest form - 1) bytes of each chunk so a
 * value split across writes is still found when the rest arrives.
 */
export class StreamScrubber {
  private carry: Buffer = Buffer.alloc(0);
  /** Leading bytes of `carry` already sent out as part of a `***`. */
  private covered = 0;
  /** The line `carry` starts in, for wrapped base64. */
  private line: LineState = LINE_START;
  /** Bytes replaced so far (the matched lengths, not the `***`). */
  scrubbed = 0;

  constructor(private readonly matcher: Matcher) {}

  push(chunk: Buffer): Buffer {
    const buf = this.carry.length ? Buffer.concat([this.carry, chunk]) : chunk;
    // A wrapped form spans up to one CRLF per 64 characters more than its length.
    const max = this.matcher.maxLength;
    return this.emit(buf, Math.max(0, max - 1 + 2 * Math.ceil(max / 64)));
  }

  flush(): Buffer {
    const out = this.emit(this.carry, 0);
    this.carry = Buffer.alloc(0);
    this.covered = 0;
    this.line = LINE_START;
    return out;
  }

  /**
   * Sends out everything but the last `hold` bytes. A match that starts before that point
   * is sent whole as `***`; the held bytes are kept even when part of it, so that another
   * form that overlaps its end is still seen whole next time.
   */
  private emit(buf: Buffer, hold: number): Buffer {
    const safe = Math.max(0, buf.length - hold);
    let end = Math.max(safe, this.covered);
    const ranges = findRanges(this.matcher, buf, this.line);
    const parts: Buffer[] = [];
    let at = this.covered;
    for (const r of ranges) {
      if (r.start >= end) break;
      if (r.end > end) end = r.end;
      if (r.end <= at) continue;
      // A match reaching into (or touching) the bytes already sent as `***` continues it.
      if (this.covered === 0 || r.start > this.covered) {
        if (r.start > at) parts.push(buf.subarray(at, r.start));
        parts.push(REDACTED);
        this.scrubbed += r.end - r.start;
      } else {
        this.scrubbed += r.end - at;
      }
      at = r.end;
    }
    if (at < end) parts.push(buf.subarray(at, end));
    this.line = lineStateAt(buf, safe, this.line);
    this.carry = hold === 0 ? Buffer.alloc(0) : Buffer.from(buf.subarray(safe));
    this.covered = end - safe;
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  }
}

/** The process-wide registry that ledger writes and error reports check against. */
export const secrets = new SecretRegistry();
