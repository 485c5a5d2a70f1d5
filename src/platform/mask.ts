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

export const MIN_SECRET_LENGTH = 4;
/** Derived fragments (base64 cores, single lines) shorter than this mask too much innocent text. */
const MIN_FORM_LENGTH = 6;

export interface RegisterOptions {
  /** Name shown in place of the value (`GH_TOKEN`, `aws session token`). */
  name: string;
  /** The caller says the value is not secret: short values are then skipped, not refused. */
  notSecret?: boolean;
}

/** Where `::add-mask::` lines go; the runner reads them from stdout. */
export type MaskSink = (value: string) => void;

export function stdoutMaskSink(value: string): void {
  const escaped = value.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
  process.stdout.write(`::add-mask::${escaped}\n`);
}

/** bash `printf %q`. */
export function shellQuote(v: string): string {
  if (v === '') return "''";
  // eslint-disable-next-line no-control-regex -- bash switches to $'...' quoting for control characters
  if (/[\x00-\x1f\x7f]/.test(v)) {
    const body = [...v]
      .map((c) => {
        const code = c.charCodeAt(0);
        if (c === '\n') return '\\n';
        if (c === '\t') return '\\t';
        if (c === '\r') return '\\r';
        if (c === "'" || c === '\\') return `\\${c}`;
        if (code < 0x20 || code === 0x7f) return `\\${code.toString(8).padStart(3, '0')}`;
        return c;
      })
      .join('');
    return `$'${body}'`;
  }
  return escapeAscii(v, SHELL_ESCAPES);
}

/** A table from ASCII code to its replacement, for `escapeAscii`. */
function asciiTable(map: (c: string) => string | undefined): (string | undefined)[] {
  return Array.from({ length: 128 }, (_, c) => map(String.fromCharCode(c)));
}

/**
 * `s` with every ASCII character that `table` maps replaced by its entry, others as they are;
 * `s` itself when there is none. One pass, no regex: the text forms are built for every
 * secret registered, and a `replace` chain per form cost more than the rest of registration.
 */
function escapeAscii(s: string, table: readonly (string | undefined)[]): string {
  let out = '';
  let last = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128) continue;
    const e = table[c];
    if (e === undefined) continue;
    out += s.slice(last, i) + e;
    last = i + 1;
  }
  return last === 0 ? s : out + s.slice(last);
}

/** What bash `printf %q` leaves as it is outside `$'...'`; it backslash-escapes the rest. */
const SHELL_SAFE = /[A-Za-z0-9_./:=@%+,-]/;
const SHELL_ESCAPES = asciiTable((c) => (SHELL_SAFE.test(c) ? undefined : `\\${c}`));

/** PEM armor lines (`-----BEGIN RSA PRIVATE KEY-----`) are not secret and appear in every log that handles keys. */
const PEM_ARMOR = /^-----(BEGIN|END) [A-Z0-9 ]+-----$/;
/** Classes of ASCII characters, by which text encodings change them (bit flags). */
const CHANGED = 1; // not [A-Za-z0-9_.-]: some text encoding (URL, JSON, HTML, shell) changes it
const SPACE = 2; // form encoding: `+`
const URI_RESERVED = 4; // !'()*: left by encodeURIComponent, escaped by strict encoders
const GO_HTML = 8; // <>&: Go's json.Marshal escapes them
const HTML = 16; // &<>"
const APOS = 32; // '
const CONTROL = 64; // \x00-\x1f \x7f: bash quotes with $'...'
const NON_ASCII = 128;
const CLASS = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  let k = /[A-Za-z0-9_.-]/.test(ch) ? 0 : CHANGED;
  if (ch === ' ') k |= SPACE;
  if ("!'()*".includes(ch)) k |= URI_RESERVED;
  if ('<>&'.includes(ch)) k |= GO_HTML;
  if ('&<>"'.includes(ch)) k |= HTML;
  if (ch === "'") k |= APOS;
  if (c < 0x20 || c === 0x7f) k |= CONTROL;
  CLASS[c] = k;
}

/** The classes of every character of `value`, or-ed together. */
function classesOf(value: string): number {
  let k = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    k |= c < 128 ? CLASS[c] : CHANGED | NON_ASCII;
  }
  return k;
}

/** Adds `f` unless too short or already there (a linear scan of one value's ~20 forms, no `Set` per value). */
function addForm(forms: string[], f: string, min: number): void {
  if (f.length >= min && !forms.includes(f)) forms.push(f);
}

/** Whether base64 text differs from its url-safe form (`+` and `/` become `-` and `_`). */
function hasPlusOrSlash(b64: string): boolean {
  return b64.includes('+') || b64.includes('/');
}

/**
 * Every form of a value to look for; each at least MIN_SECRET_LENGTH characters. The value is
 * encoded to bytes once; every base64 and hex form is cut from that (no Buffer per form), and
 * each text encoding runs only where the value holds a character it changes.
 */
export function secretForms(value: string): string[] {
  const forms = [value];
  if (value.includes('\n')) {
    for (const line of value.split(/\r?\n/)) {
      const t = line.trim();
      if (!PEM_ARMOR.test(t)) addForm(forms, t, MIN_FORM_LENGTH);
    }
  }
  // The value's UTF-8 bytes and a newline after them, in one buffer: every base64 and hex
  // form is cut from it with a range, so each is one flat string and no Buffer is made per form.
  const buf = Buffer.allocUnsafe(value.length * 3 + 1);
  const n = buf.write(value);
  buf[n] = 10;
  const rest = n % 3;
  const b64 = buf.toString('base64', 0, n);
  addForm(forms, b64, MIN_SECRET_LENGTH);
  const unpadded = rest === 0 ? b64 : b64.slice(0, b64.length - 3 + rest);
  addForm(forms, unpadded, MIN_SECRET_LENGTH);
  const urlDiffers = hasPlusOrSlash(unpadded);
  const b64url = urlDiffers ? buf.toString('base64url', 0, n) : unpadded;
  addForm(forms, b64url, MIN_SECRET_LENGTH);
  // `echo "$S" | base64` encodes the value plus a newline: its last group differs, and the
  // whole of it is masked so that no group with the value's last bytes stays readable.
  const whole = rest === 0 ? b64 : b64.slice(0, ((n - rest) / 3) * 4);
  addForm(forms, buf.toString('base64', 0, n + 1), MIN_SECRET_LENGTH);
  // Base64 of the value's bytes as they appear inside a larger blob at each of the three
  // offsets: only the groups made of the value's bytes alone. At offset 0 that is a prefix of
  // the value's own base64.
  if (n >= 3) {
    addForm(forms, whole, 8);
    addForm(forms, urlDiffers ? b64url.slice(0, whole.length) : whole, 8);
  }
  for (let skip = 1; skip < 3; skip++) {
    const usable = Math.floor((n - skip) / 3) * 3;
    if (usable <= 0) continue;
    const core = buf.toString('base64', skip, skip + usable);
    addForm(forms, core, 8);
    addForm(forms, hasPlusOrSlash(core) ? buf.toString('base64url', skip, skip + usable) : core, 8);
  }
  const hex = buf.toString('hex', 0, n);
  addForm(forms, hex, MIN_SECRET_LENGTH);
  addForm(forms, hex.toUpperCase(), MIN_SECRET_LENGTH);
  const classes = classesOf(value);
  if (classes & CHANGED) addTextForms(forms, value, classes);
  return forms;
}

/** URL/form, JSON, Go, `\\uXXXX`, HTML and shell forms, each only where it changes the value. */
function addTextForms(forms: string[], value: string, classes: number): void {
  const min = MIN_SECRET_LENGTH;
  let uri: string;
  try {
    uri = encodeURIComponent(value);
  } catch {
    // A lone surrogate (from a JSON `\\ud800` escape) is written out as U+FFFD.
    uri = encodeURIComponent(Buffer.from(value, 'utf8').toString('utf8'));
  }
  addForm(forms, uri, min);
  if (classes & SPACE) addForm(forms, uri.replaceAll('%20', '+'), min);
  if (classes & URI_RESERVED) addForm(forms, escapeAscii(uri, URI_STRICT), min);
  const json = JSON.stringify(value).slice(1, -1);
  addForm(forms, json, min);
  if (classes & GO_HTML) addForm(forms, escapeAscii(json, GO_ESCAPES), min);
  if (classes & NON_ASCII) {
    addForm(
      forms,
      json.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`),
      min,
    );
  }
  if (classes & APOS) {
    addForm(forms, escapeAscii(value, HTML_APOS), min);
    addForm(forms, escapeAscii(value, HTML_39), min);
  } else if (classes & HTML) {
    addForm(forms, escapeAscii(value, HTML_APOS), min);
  }
  addForm(forms, classes & CONTROL ? shellQuote(value) : escapeAscii(value, SHELL_ESCAPES), min);
  if (classes & APOS) addForm(forms, value.replaceAll("'", "'\\''"), min);
}

/** encodeURIComponent leaves !'()* as they are; RFC 3986 strict encoders do not. */
const URI_STRICT = asciiTable((c) =>
  "!'()*".includes(c) ? `%${c.charCodeAt(0).toString(16).toUpperCase()}` : undefined,
);
/** Go's json.Marshal escapes these three for HTML safety. */
const GO_ESCAPES = asciiTable((c) => ({ '<': '\\u003c', '>': '\\u003e', '&': '\\u0026' })[c]);
const HTML_BASE: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' };
const HTML_APOS = asciiTable((c) => (c === "'" ? '&apos;' : HTML_BASE[c]));
const HTML_39 = asciiTable((c) => (c === "'" ? '&#39;' : HTML_BASE[c]));

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
  private matcherCache: Matcher | undefined;

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
    const forms = secretForms(value);
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
    return forms;
  }

  /** Appends the UTF-8 bytes of `forms`, all from secret `secret`. */
  private store(forms: string[], secret: number): void {
    const joined = forms.join('');
    // UTF-8 takes at most 3 bytes per UTF-16 unit.
    this.reserve(joined.length * 3, forms.length);
    let at = this.used;
    const written = this.data.write(joined, at);
    const ascii = written === joined.length;
    for (const f of forms) {
      // Only an ASCII value has forms whose lengths are their byte counts; otherwise each is
      // encoded on its own (a surrogate split between two forms must not pair up).
      const len = ascii ? f.length : this.data.write(f, at);
      this.starts[this.count] = at;
      this.owner[this.count] = secret;
      this.count++;
      at += len;
    }
    this.starts[this.count] = at;
    this.used = at;
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

  /** Number of forms registered. */
  get size(): number {
    return this.count;
  }

  /**
   * The matcher over every form registered so far. A later `register` makes a new one; one
   * already handed out keeps seeing the bytes it was built on (they are never written again).
   */
  matcher(): Matcher {
    this.matcherCache ??= new Matcher({
      data: this.data.subarray(0, this.used),
      starts: this.starts.slice(0, this.count + 1),
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
