/**
 * Secret registration: every value is masked with the runner (`::add-mask::`) and kept in
 * Cordon's own registry, with the encoded forms the runner's masker misses, so that
 * Cordon's scrubber, ledger and error paths can refuse or redact them.
 */
import { CordonError } from './errors.js';
import { Matcher, redact } from './match.js';

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

/** Base64 of the value's bytes as they appear inside a larger blob at each of the three offsets. */
function base64Cores(bytes: Buffer): string[] {
  const out: string[] = [];
  for (let skip = 0; skip < 3; skip++) {
    const usable = Math.floor((bytes.length - skip) / 3) * 3;
    if (usable <= 0) continue;
    const core = bytes.subarray(skip, skip + usable).toString('base64');
    out.push(core, toBase64Url(core));
  }
  return out;
}

function toBase64Url(b64: string): string {
  return b64.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
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

/** Every form of a value to look for; each at least MIN_SECRET_LENGTH characters. */
export function secretForms(value: string): string[] {
  const bytes = Buffer.from(value, 'utf8');
  const b64 = bytes.toString('base64');
  const json = JSON.stringify(value).slice(1, -1);
  const forms = new Set<string>([value]);
  const add = (f: string, min = MIN_SECRET_LENGTH): void => {
    if (f.length >= min) forms.add(f);
  };
  for (const line of value.split(/\r?\n/)) add(line.trim(), MIN_FORM_LENGTH);
  add(b64);
  add(b64.replace(/=+$/, ''));
  add(toBase64Url(b64));
  for (const core of base64Cores(bytes)) add(core, 8);
  add(bytes.toString('hex'));
  add(bytes.toString('hex').toUpperCase());
  add(encodeURIComponent(value));
  add(encodeURIComponent(value).replace(/%20/g, '+'));
  add(encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`));
  add(json);
  add(json.replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026'));
  add(
    value
      .replace(/&/g, '&amp;')
      .replace(/</g, '&lt;')
      .replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;')
      .replace(/'/g, '&apos;'),
  );
  add(shellQuote(value));
  add(value.replace(/'/g, "'\\''"));
  return [...forms];
}

export class SecretRegistry {
  private readonly names = new Map<string, string>();
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
    const fresh = forms.filter((f) => !this.names.has(f));
    // The runner masks line by line, so a multi-line value is registered one line at a time.
    for (const f of fresh) {
      for (const line of f.split(/\r?\n/)) {
        if (line.trim().length >= MIN_SECRET_LENGTH) this.sink(line.trim());
      }
      this.names.set(f, opts.name);
    }
    if (fresh.length) this.matcherCache = undefined;
    return forms;
  }

  get size(): number {
    return this.names.size;
  }

  matcher(): Matcher {
    if (!this.matcherCache) {
      this.matcherCache = new Matcher([...this.names.keys()].map((f) => Buffer.from(f, 'utf8')));
    }
    return this.matcherCache;
  }

  /** Name of a registered secret found in `text`, or undefined. Never returns the value. */
  findIn(text: string | Buffer): string | undefined {
    const buf = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
    const ranges = this.matcher().find(buf);
    if (ranges.length === 0) return undefined;
    const hit = buf.subarray(ranges[0].start, ranges[0].end).toString('utf8');
    for (const [form, name] of this.names) if (hit.includes(form)) return name;
    return 'a registered secret';
  }

  scrub(text: string): string {
    if (this.names.size === 0) return text;
    const buf = Buffer.from(text, 'utf8');
    const ranges = this.matcher().find(buf);
    return ranges.length ? redact(buf, ranges).toString('utf8') : text;
  }

  scrubBuffer(buf: Buffer): Buffer {
    if (this.names.size === 0) return buf;
    return redact(buf, this.matcher().find(buf));
  }
}

/**
 * Scrubs a byte stream: holds back the last (longest form - 1) bytes of each chunk so a
 * value split across writes is still found when the rest arrives.
 */
export class StreamScrubber {
  private carry: Buffer = Buffer.alloc(0);
  /** Bytes replaced so far (the matched lengths, not the `***`). */
  scrubbed = 0;

  constructor(private readonly matcher: Matcher) {}

  push(chunk: Buffer): Buffer {
    const buf = this.carry.length ? Buffer.concat([this.carry, chunk]) : chunk;
    const hold = Math.max(0, this.matcher.maxLength - 1);
    let safe = buf.length - hold;
    if (safe <= 0) {
      this.carry = buf;
      return Buffer.alloc(0);
    }
    const ranges = this.matcher.find(buf).filter((r) => r.start < safe);
    for (const r of ranges) if (r.end > safe) safe = r.end;
    for (const r of ranges) this.scrubbed += r.end - r.start;
    this.carry = Buffer.from(buf.subarray(safe));
    return redact(buf, ranges, 0, safe);
  }

  flush(): Buffer {
    const buf = this.carry;
    this.carry = Buffer.alloc(0);
    const ranges = this.matcher.find(buf);
    for (const r of ranges) this.scrubbed += r.end - r.start;
    return redact(buf, ranges);
  }
}

/** The process-wide registry that ledger writes and error reports check against. */
export const secrets = new SecretRegistry();
