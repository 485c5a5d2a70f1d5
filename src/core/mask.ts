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

/**
 * Base64 of the value's bytes as they appear inside a larger blob at each of the three
 * offsets: only the groups made of the value's bytes alone. At offset 0 that is a prefix of
 * the value's own base64.
 */
function base64Cores(bytes: Buffer, b64: string, b64url: string): string[] {
  const out: string[] = [];
  for (let skip = 0; skip < 3; skip++) {
    const usable = Math.floor((bytes.length - skip) / 3) * 3;
    if (usable <= 0) continue;
    if (skip === 0) {
      out.push(b64.slice(0, (usable / 3) * 4), b64url.slice(0, (usable / 3) * 4));
      continue;
    }
    const part = bytes.subarray(skip, skip + usable);
    out.push(part.toString('base64'), part.toString('base64url'));
  }
  return out;
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
  return v.replace(/([^A-Za-z0-9_./:=@%+,\-\u0080-\uffff])/g, '\\$1');
}

/** PEM armor lines (`-----BEGIN RSA PRIVATE KEY-----`) are not secret and appear in every log that handles keys. */
const PEM_ARMOR = /^-----(BEGIN|END) [A-Z0-9 ]+-----$/;
/** Characters every text encoding (URL, JSON, HTML, shell) leaves as they are. */
const PLAIN = /^[A-Za-z0-9_.-]*$/;

/** Every form of a value to look for; each at least MIN_SECRET_LENGTH characters. */
export function secretForms(value: string): string[] {
  const bytes = Buffer.from(value, 'utf8');
  const b64 = bytes.toString('base64');
  const forms = new Set<string>([value]);
  const add = (f: string, min = MIN_SECRET_LENGTH): void => {
    if (f.length >= min) forms.add(f);
  };
  if (value.includes('\n')) {
    for (const line of value.split(/\r?\n/)) {
      const t = line.trim();
      if (!PEM_ARMOR.test(t)) add(t, MIN_FORM_LENGTH);
    }
  }
  add(b64);
  const unpadded = b64.replace(/=+$/, '');
  add(unpadded);
  const b64url = bytes.toString('base64url');
  add(b64url);
  // `echo "$S" | base64` encodes the value plus a newline: its last group differs, and the
  // whole of it is masked so that no group with the value's last bytes stays readable.
  add(Buffer.from(value + '\n', 'utf8').toString('base64'));
  for (const core of base64Cores(bytes, b64, b64url)) add(core, 8);
  const hex = bytes.toString('hex');
  add(hex);
  add(hex.toUpperCase());
  if (!PLAIN.test(value)) {
    // Each encoding only where the value holds a character it changes: most values hold few.
    const uri = encodeURIComponent(value);
    add(uri);
    if (value.includes(' ')) add(uri.replace(/%20/g, '+'));
    if (/[!'()*]/.test(value))
      add(uri.replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`));
    const json = JSON.stringify(value).slice(1, -1);
    add(json);
    if (/[<>&]/.test(value))
      add(json.replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026'));
    if (/[\u0080-\uffff]/.test(value)) {
      add(json.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
    }
    if (/[&<>"']/.test(value)) {
      const html = value
        .replace(/&/g, '&amp;')
        .replace(/</g, '&lt;')
        .replace(/>/g, '&gt;')
        .replace(/"/g, '&quot;');
      add(html.replace(/'/g, '&apos;'));
      add(html.replace(/'/g, '&#39;'));
    }
    add(shellQuote(value));
    if (value.includes("'")) add(value.replace(/'/g, "'\\''"));
  }
  return [...forms];
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
  /** Every form, with the name of the secret it came from at the same index. */
  private readonly forms: string[] = [];
  private readonly formNames: string[] = [];
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
    for (const f of forms) {
      this.forms.push(f);
      this.formNames.push(opts.name);
      // The runner masks line by line, so a multi-line value is registered one line at a time.
      if (!f.includes('\n')) {
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

  /** Number of forms registered. */
  get size(): number {
    return this.forms.length;
  }

  matcher(): Matcher {
    this.matcherCache ??= Matcher.fromStrings(this.forms);
    return this.matcherCache;
  }

  /** Every registered form in `buf`, longest at each position, with the secret's name. */
  findAll(buf: Buffer): SecretHit[] {
    if (this.forms.length === 0) return [];
    const names = this.formNames;
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
      hits.push({ start, end, name: names[i] });
    }
    return hits;
  }

  /** Name of a registered secret found in `text`, or undefined. Never returns the value. */
  findIn(text: string | Buffer): string | undefined {
    const buf = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
    return this.findAll(buf)[0]?.name;
  }

  scrub(text: string): string {
    if (this.forms.length === 0) return text;
    const buf = Buffer.from(text, 'utf8');
    const ranges = findRanges(this.matcher(), buf, LINE_START);
    return ranges.length ? redact(buf, ranges).toString('utf8') : text;
  }

  scrubBuffer(buf: Buffer): Buffer {
    if (this.forms.length === 0) return buf;
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
