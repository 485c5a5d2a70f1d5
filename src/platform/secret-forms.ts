/**
 * The forms a secret takes in logs besides itself: base64 (padded, unpadded, url-safe, the
 * value plus a newline, and the groups it leaves inside a larger blob at each offset), hex,
 * and the text encodings (URL, form, JSON, Go, HTML, shell) that change it. The runner masks
 * only the value as given, so these are what Cordon registers besides it.
 */
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
