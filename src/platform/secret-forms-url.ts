/**
 * The URL encoders other than `encodeURIComponent` whose output `secret-forms.ts` registers
 * (Python's quote and quote_plus, RFC 3986 strict, WHATWG forms, encodeURI): each differs
 * from encodeURIComponent only in which ASCII characters it keeps, so each form is a
 * re-encoding of encodeURIComponent's output.
 */
/** What a URL encoder writes for each ASCII character: itself, `+` (a space) or `%XX`. */
type UrlTable = readonly string[];

function urlTable(keep: string, plus = false): UrlTable {
  return Array.from({ length: 128 }, (_, c) => {
    const ch = String.fromCharCode(c);
    if (/[A-Za-z0-9]/.test(ch) || keep.includes(ch)) return ch;
    if (plus && ch === ' ') return '+';
    return `%${c.toString(16).toUpperCase().padStart(2, '0')}`;
  });
}

/** RFC 3986 strict, Python's `quote(v, safe='')` and jq 1.7's `@uri`. */
export const URI_STRICT = urlTable('-_.~');
/** Python's `quote(v)`: safe='/' by default. */
export const PY_QUOTE = urlTable('-_.~/');
/** Python's `quote_plus` and `urlencode`. */
export const PY_QUOTE_PLUS = urlTable('-_.~', true);
/** WHATWG application/x-www-form-urlencoded: URLSearchParams, browsers' forms. */
export const WHATWG_FORM = urlTable('-_.*', true);
/** JavaScript's encodeURI: keeps what has a meaning in a URL. */
export const ENCODE_URI = urlTable("-_.!~*'();,/?:@&=+$#");

/**
 * encodeURIComponent's output `uri` as the encoder with `table` writes it: each `%XX` of an
 * ASCII character and each character left as it is becomes the table's entry; the `%XX` of
 * non-ASCII bytes are the same in every encoder.
 */
export function recode(uri: string, table: UrlTable): string {
  // Only what the table changes is copied out one by one; the runs between are sliced.
  let out = '';
  let last = 0;
  for (let i = 0; i < uri.length; i++) {
    const c = uri.charCodeAt(i);
    if (c !== 37) {
      const e = table[c];
      if (e.length === 1 && e.charCodeAt(0) === c) continue;
      out += uri.slice(last, i) + e;
      last = i + 1;
      continue;
    }
    // encodeURIComponent writes upper-case hex; an ASCII byte's first digit is 0-7.
    const hi = uri.charCodeAt(i + 1) - 48;
    if (hi > 7) {
      i += 2;
      continue;
    }
    const lo = uri.charCodeAt(i + 2);
    const byte = (hi << 4) | (lo >= 65 ? lo - 55 : lo - 48);
    if (table[byte].length === 1) {
      out += uri.slice(last, i) + table[byte];
      last = i + 3;
    }
    i += 2;
  }
  return last === 0 ? uri : out + uri.slice(last);
}
