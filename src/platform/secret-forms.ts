/**
 * The forms a secret takes in logs besides itself: base64 (padded, unpadded, url-safe, the
 * value plus a newline, and the groups it leaves inside a larger blob at each offset), base32,
 * hex of its UTF-8 and UTF-16 bytes, and the text encodings (URL and form encoders, JSON, Go,
 * HTML, shell, Python repr) that change it. The runner masks only the value as given, so these
 * are what Cordon registers besides it. test/unit/core/encoders.test.ts runs the real encoders
 * (Python, Node, bash, jq) and checks that each form they write is one of these.
 */
import { ENCODE_URI, PY_QUOTE, PY_QUOTE_PLUS, URI_STRICT, WHATWG_FORM, recode } from './secret-forms-url.js';

/** Values shorter than this cannot be masked without hiding ordinary text. */
export const MIN_SECRET_LENGTH = 4;
/** Derived fragments (base64 cores, single lines) shorter than this mask too much innocent text. */
const MIN_FORM_LENGTH = 6;

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
  const q = escapeAscii(v, SHELL_ESCAPES);
  // bash escapes `#` and `~` only where they would start a comment or a tilde expansion.
  return v[0] === '#' || v[0] === '~' ? `\\${q}` : q;
}

/**
 * bash `printf %q` and `${v@Q}` in the C locale: `$'...'` with each byte of a non-ASCII
 * character in octal. `latin1` holds the value's UTF-8 bytes, one character per byte.
 */
function shellQuoteBytes(latin1: string): string {
  return `$'${escapeAscii(latin1, SHELL_C_LOCALE)}'`;
}

/** A table from ASCII code to its replacement, for `escapeAscii`. */
function asciiTable(map: (c: string) => string | undefined): (string | undefined)[] {
  return Array.from({ length: 128 }, (_, c) => map(String.fromCharCode(c)));
}

/**
 * `s` with every character below `table.length` (128, or 256 for a string of bytes) that
 * `table` maps replaced by its entry, others as they are;
 * `s` itself when there is none. One pass, no regex: the text forms are built for every
 * secret registered, and a `replace` chain per form cost more than the rest of registration.
 */
function escapeAscii(s: string, table: readonly (string | undefined)[]): string {
  let out = '';
  let last = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= table.length) continue;
    const e = table[c];
    if (e === undefined) continue;
    out += s.slice(last, i) + e;
    last = i + 1;
  }
  return last === 0 ? s : out + s.slice(last);
}

/** What bash `printf %q` backslash-escapes outside `$'...'` (`#` and `~` only first, above). */
const SHELL_SPECIAL = ` '"\\|&;()<>!{}*[?]^$\`,`;
const SHELL_ESCAPES = asciiTable((c) => (SHELL_SPECIAL.includes(c) ? `\\${c}` : undefined));
/** Inside bash's `$'...'`: the C escapes, other controls and every non-ASCII byte in octal. */
const SHELL_C_LOCALE = Array.from({ length: 256 }, (_, code) => {
  const c = String.fromCharCode(code);
  if (c === '\n') return '\\n';
  if (c === '\t') return '\\t';
  if (c === '\r') return '\\r';
  if (c === "'" || c === '\\') return `\\${c}`;
  if (code < 0x20 || code >= 0x7f) return `\\${code.toString(8).padStart(3, '0')}`;
  return undefined;
});

/** PEM armor lines (`-----BEGIN RSA PRIVATE KEY-----`) are not secret and appear in every log that handles keys. */
export const PEM_ARMOR = /^-----(BEGIN|END) [A-Z0-9 ]+-----$/;
/** Classes of ASCII characters, by which text encodings change them (bit flags). */
const CHANGED = 1; // not [A-Za-z0-9_.-]: some text encoding (URL, JSON, HTML, shell) changes it
const SPACE = 2; // form encoding: `+`
const URI_RESERVED = 4; // !'()*: left by encodeURIComponent, escaped by strict encoders
const GO_HTML = 8; // <>&: Go's json.Marshal escapes them
const HTML = 16; // &<>"
const APOS = 32; // '
const CONTROL = 64; // \x00-\x1f \x7f: bash quotes with $'...'
const NON_ASCII = 128;
const SLASH = 256; // /: Python's quote() keeps it by default
const FORM_DIFFERS = 512; // ~!'(): URLSearchParams encodes them, encodeURIComponent does not
const URI_KEPT = 1024; // #$&+,/:;=?@: encodeURI keeps them
const REPR = 2048; // \ and ": with a ', Python's repr escapes the ' too
const CLASS = new Uint16Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  let k = /[A-Za-z0-9_.-]/.test(ch) ? 0 : CHANGED;
  if (ch === ' ') k |= SPACE;
  if ("!'()*".includes(ch)) k |= URI_RESERVED;
  if ('<>&'.includes(ch)) k |= GO_HTML;
  if ('&<>"'.includes(ch)) k |= HTML;
  if (ch === "'") k |= APOS;
  if (c < 0x20 || c === 0x7f) k |= CONTROL;
  if (ch === '/') k |= SLASH;
  if ("~!'()".includes(ch)) k |= FORM_DIFFERS;
  if ('#$&+,/:;=?@'.includes(ch)) k |= URI_KEPT;
  if (ch === '\\' || ch === '"') k |= REPR;
  CLASS[c] = k;
}

/** A UTF-16 surrogate not in a pair (only ever computed, not in CLASS). */
const LONE_SURROGATE = 4096;

/** The classes of every character of `value`, or-ed together. */
function classesOf(value: string): number {
  let k = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 128) {
      k |= CLASS[c];
      continue;
    }
    k |= CHANGED | NON_ASCII;
    if ((c & 0xf800) !== 0xd800) continue;
    if (c < 0xdc00 && (value.charCodeAt(i + 1) & 0xfc00) === 0xdc00) i++;
    else k |= LONE_SURROGATE;
  }
  return k;
}

/**
 * The UTF-8 byte count of each form, counted as the forms are made rather than by encoding
 * each again: every encoding writes either ASCII only (one byte a character) or the value's
 * own non-ASCII characters unchanged among ASCII escapes (a `wide` form: as many bytes more
 * than characters as the value has). The registry keeps one and passes it in.
 */
export class FormBytes {
  counts: Int32Array = new Int32Array(64);
  /** False when the value holds a lone surrogate: its forms are then measured by encoding. */
  known = true;
  /** Whether the value holds non-ASCII characters (some forms then have more bytes than characters). */
  wide = false;
}

/**
 * What `addForm` works on: the value's list of forms, how many more UTF-8 bytes than
 * characters a wide form has, the byte counts if wanted, and for the dedupe, per form length
 * modulo 64 the last form of that length (index + 1, 0 = none) and per form the earlier one
 * in its slot. One value is processed at a time; typed arrays per value cost more than the
 * comparisons they saved.
 */
let forms: string[] = [];
let extra = 0;
let bytes: FormBytes | undefined;
const lastOfSlot = new Int32Array(64);
let earlier: Int32Array = new Int32Array(64);

/**
 * Adds `f` unless too short or already there. Only forms of the same length modulo 64 are
 * compared: comparing each new form with all of a value's ~30 cost more than making most.
 */
function addForm(f: string, min: number, wide = false): void {
  const len = f.length;
  if (len < min) return;
  const slot = len & 63;
  for (let i = lastOfSlot[slot]; i !== 0; i = earlier[i - 1]) {
    const g = forms[i - 1];
    if (g.length === len && g === f) return;
  }
  const at = forms.length;
  if (at === earlier.length) earlier = grow(earlier);
  forms.push(f);
  earlier[at] = lastOfSlot[slot];
  lastOfSlot[slot] = at + 1;
  if (bytes) {
    if (at === bytes.counts.length) bytes.counts = grow(bytes.counts);
    bytes.counts[at] = wide ? len + extra : len;
  }
}

function grow(a: Int32Array): Int32Array {
  const grown = new Int32Array(a.length * 2);
  grown.set(a);
  return grown;
}

/** Whether base64 text differs from its url-safe form (`+` and `/` become `-` and `_`). */
function hasPlusOrSlash(b64: string): boolean {
  return b64.includes('+') || b64.includes('/');
}

const BASE32 = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567');

/** RFC 4648 base32 of `buf[0, n)` without padding (Python's `base64.b32encode` pads it with `=`). */
function base32(buf: Buffer, n: number): string {
  const out = Buffer.allocUnsafe(Math.ceil((n * 8) / 5));
  let o = 0;
  let bits = 0;
  let acc = 0;
  for (let i = 0; i < n; i++) {
    acc = ((acc << 8) | buf[i]) & 0xfff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out[o++] = BASE32[(acc >> bits) & 31];
    }
  }
  if (bits > 0) out[o++] = BASE32[(acc << (5 - bits)) & 31];
  return out.toString('latin1', 0, o);
}

/**
 * Every form of a value to look for; each at least MIN_SECRET_LENGTH characters. The value is
 * encoded to bytes once; every base64 and hex form is cut from that (no Buffer per form), and
 * each text encoding runs only where the value holds a character it changes.
 */
export function secretForms(value: string, counts?: FormBytes): string[] {
  // The value's UTF-8 bytes and a newline after them, in one buffer: every base64 and hex
  // form is cut from it with a range, so each is one flat string and no Buffer is made per form.
  const buf = Buffer.allocUnsafe(value.length * 3 + 1);
  const n = buf.write(value);
  buf[n] = 10;
  const classes = classesOf(value);
  forms = [];
  lastOfSlot.fill(0);
  extra = n - value.length;
  bytes = counts;
  // A lone surrogate is written as U+FFFD by some encoders and escaped by others.
  if (counts) {
    counts.known = (classes & LONE_SURROGATE) === 0;
    counts.wide = extra > 0;
  }
  addForm(value, 0, true);
  if (value.includes('\n')) {
    for (const line of value.split(/\r?\n/)) {
      const t = line.trim();
      if (!PEM_ARMOR.test(t)) addForm(t, MIN_FORM_LENGTH);
      // A line's byte count is its own: measured.
      if (counts && forms[forms.length - 1] === t) counts.counts[forms.length - 1] = Buffer.byteLength(t);
    }
  }
  const rest = n % 3;
  const b64 = buf.toString('base64', 0, n);
  addForm(b64, MIN_SECRET_LENGTH);
  const unpadded = rest === 0 ? b64 : b64.slice(0, b64.length - 3 + rest);
  addForm(unpadded, MIN_SECRET_LENGTH);
  const urlDiffers = hasPlusOrSlash(unpadded);
  const b64url = urlDiffers ? buf.toString('base64url', 0, n) : unpadded;
  addForm(b64url, MIN_SECRET_LENGTH);
  // Python's urlsafe_b64encode keeps the padding that Node's base64url drops.
  if (urlDiffers && rest !== 0) addForm(b64url + '='.repeat(3 - rest), MIN_SECRET_LENGTH);
  // `echo "$S" | base64` encodes the value plus a newline: its last group differs, and the
  // whole of it is masked so that no group with the value's last bytes stays readable.
  const whole = rest === 0 ? b64 : b64.slice(0, ((n - rest) / 3) * 4);
  addForm(buf.toString('base64', 0, n + 1), MIN_SECRET_LENGTH);
  // Base64 of the value's bytes as they appear inside a larger blob at each of the three
  // offsets: only the groups made of the value's bytes alone. At offset 0 that is a prefix of
  // the value's own base64.
  if (n >= 3) {
    addForm(whole, 8);
    addForm(urlDiffers ? b64url.slice(0, whole.length) : whole, 8);
  }
  for (let skip = 1; skip < 3; skip++) {
    const usable = Math.floor((n - skip) / 3) * 3;
    if (usable <= 0) continue;
    const core = buf.toString('base64', skip, skip + usable);
    addForm(core, 8);
    addForm(hasPlusOrSlash(core) ? buf.toString('base64url', skip, skip + usable) : core, 8);
  }
  // Base32 (Python's b32encode) without its padding, which the padded form holds.
  addForm(base32(buf, n), MIN_SECRET_LENGTH);
  const hex = buf.toString('hex', 0, n);
  addForm(hex, MIN_SECRET_LENGTH);
  addForm(hex.toUpperCase(), MIN_SECRET_LENGTH);
  addUtf16Forms(value, (classes & NON_ASCII) === 0);
  if (classes & CHANGED) addTextForms(value, classes, buf.toString('latin1', 0, n));
  const out = forms;
  forms = [];
  bytes = undefined;
  return out;
}

/**
 * Hex of the value's UTF-16 bytes, little- and big-endian, both cases (Python's
 * `v.encode('utf-16-le').hex()`, `b16encode`, Node's `Buffer.from(v, 'utf16le')`; PowerShell
 * and Windows APIs hold strings as UTF-16). A byte order mark before them leaves them whole.
 */
function addUtf16Forms(value: string, ascii: boolean): void {
  const le = Buffer.from(value, 'utf16le');
  if (ascii) {
    // Each character is `xx00` little-endian and `00xx` big-endian: both hold `xx00...00zz`,
    // so one form per case covers both orders (the outer `00` is left, as a BOM is).
    const core = le.toString('hex', 0, le.length - 1);
    addForm(core, MIN_SECRET_LENGTH);
    addForm(core.toUpperCase(), MIN_SECRET_LENGTH);
    return;
  }
  const leHex = le.toString('hex');
  const beHex = le.swap16().toString('hex');
  addForm(leHex, MIN_SECRET_LENGTH);
  addForm(leHex.toUpperCase(), MIN_SECRET_LENGTH);
  addForm(beHex, MIN_SECRET_LENGTH);
  addForm(beHex.toUpperCase(), MIN_SECRET_LENGTH);
}

/**
 * URL and form, JSON, Go, `\\uXXXX`, HTML, shell and Python repr forms, each only where it
 * changes the value. `latin1` holds the value's UTF-8 bytes, one character per byte.
 */
function addTextForms(value: string, classes: number, latin1: string): void {
  const min = MIN_SECRET_LENGTH;
  let uri: string;
  try {
    uri = encodeURIComponent(value);
  } catch {
    // A lone surrogate (from a JSON `\\ud800` escape) is written out as U+FFFD.
    uri = encodeURIComponent(Buffer.from(value, 'utf8').toString('utf8'));
  }
  addForm(uri, min);
  if (classes & SPACE) addForm(uri.replaceAll('%20', '+'), min);
  // The other URL encoders differ from encodeURIComponent only in which ASCII characters they
  // keep, so each is a re-encoding of its output, made only when the value holds one of them.
  if (classes & URI_RESERVED) addForm(recode(uri, URI_STRICT), min);
  if (classes & SLASH) addForm(recode(uri, PY_QUOTE), min);
  if (classes & SPACE && classes & URI_RESERVED) addForm(recode(uri, PY_QUOTE_PLUS), min);
  if (classes & FORM_DIFFERS) addForm(recode(uri, WHATWG_FORM), min);
  if (classes & URI_KEPT) addForm(recode(uri, ENCODE_URI), min);
  const json = JSON.stringify(value).slice(1, -1);
  addForm(json, min, true);
  if (classes & GO_HTML) addForm(escapeAscii(json, GO_ESCAPES), min, true);
  if (classes & NON_ASCII) {
    addForm(escapeNonAscii(json), min);
  }
  if (classes & APOS) {
    addForm(escapeAscii(value, HTML_APOS), min, true);
    addForm(escapeAscii(value, HTML_39), min, true);
  } else if (classes & HTML) {
    addForm(escapeAscii(value, HTML_APOS), min, true);
  }
  addForm(shellQuote(value), min, true);
  if (classes & APOS) addForm(value.replaceAll("'", "'\\''"), min, true);
  if (classes & NON_ASCII) addForm(shellQuoteBytes(latin1), min);
  // Python's repr quotes with ' unless the value holds a ' and no ", and escapes the quote it uses.
  const apos = (classes & APOS) !== 0 && value.includes('"');
  if (classes & (REPR | CONTROL | APOS)) {
    addForm(escapeAscii(value, apos ? REPR_STR_APOS : REPR_STR), min, true);
  }
  // Of an ASCII value, repr of its bytes is the same as of the str.
  if (classes & NON_ASCII) {
    addForm(escapeAscii(latin1, apos ? REPR_BYTES_APOS : REPR_BYTES), min);
  }
}

const HEX2 = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'));

/**
 * `s` with every UTF-16 unit from U+0080 as `\\uxxxx` (lower-case hex, as Python's
 * `json.dumps` writes). A loop, not a `replace` with a function, which made a string per
 * character.
 */
function escapeNonAscii(s: string): string {
  let out = '';
  let last = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    out += `${s.slice(last, i)}\\u${HEX2[c >> 8]}${HEX2[c & 0xff]}`;
    last = i + 1;
  }
  return last === 0 ? s : out + s.slice(last);
}

/** Go's json.Marshal escapes these three for HTML safety. */
const GO_ESCAPES = asciiTable((c) => ({ '<': '\\u003c', '>': '\\u003e', '&': '\\u0026' })[c]);
const HTML_BASE: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' };
const HTML_APOS = asciiTable((c) => (c === "'" ? '&apos;' : HTML_BASE[c]));
const HTML_39 = asciiTable((c) => (c === "'" ? '&#39;' : HTML_BASE[c]));
/** Python's repr of a str: backslash, `\t\n\r`, other controls as `\xNN`; non-ASCII as it is. */
function reprEscape(c: string, code: number): string | undefined {
  if (c === '\\') return '\\\\';
  if (c === '\n') return '\\n';
  if (c === '\t') return '\\t';
  if (c === '\r') return '\\r';
  if (code < 0x20 || code === 0x7f) return `\\x${code.toString(16).padStart(2, '0')}`;
  return undefined;
}
const REPR_STR = asciiTable((c) => reprEscape(c, c.charCodeAt(0)));
const REPR_STR_APOS = asciiTable((c) => (c === "'" ? "\\'" : reprEscape(c, c.charCodeAt(0))));
/** Python's repr of bytes: as of a str, and every byte from 0x80 as `\xNN`. */
const HIGH_BYTES = Array.from({ length: 128 }, (_, i) => `\\x${(i + 128).toString(16)}`);
const REPR_BYTES = [...REPR_STR, ...HIGH_BYTES];
const REPR_BYTES_APOS = [...REPR_STR_APOS, ...HIGH_BYTES];
