/**
 * Line-based inputs (`allow`, `secrets`, `allowed-domains`, `allowed-ips`) hold only
 * printable ASCII separated by spaces and tabs. JavaScript's `\s` and `trim()` also take
 * U+00A0, U+FEFF and the other Unicode spaces, so an invisible character pasted into a
 * line would silently split one entry into two (`bucket/\uFEFF*` became `bucket/` and `*`).
 * These helpers trim and check with ASCII rules only, and name an offending character by
 * its code point, since it is usually invisible.
 */
import { CordonError } from './errors.js';

/** Leading and trailing ASCII whitespace only (space, tab, CR, LF). */
export function trimAscii(s: string): string {
  return s.replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, '');
}

/** `U+FEFF` for a code point. */
export function codePointName(cp: number): string {
  return `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** `s` with every character outside printable ASCII written as `<U+XXXX>`, so it can be seen. */
export function showInvisible(s: string): string {
  return Array.from(s, (c) =>
    isAsciiLineChar(c) ? c : `<${codePointName(c.codePointAt(0) as number)}>`,
  ).join('');
}

function isAsciiLineChar(c: string): boolean {
  const cp = c.codePointAt(0) as number;
  return c === '\t' || (cp >= 0x20 && cp <= 0x7e);
}

/** The first character outside printable ASCII, space and tab: its 1-based column and code point. */
export function firstNonAscii(text: string): { column: number; codePoint: string } | undefined {
  const chars = Array.from(text);
  const at = chars.findIndex((c) => !isAsciiLineChar(c));
  if (at < 0) return undefined;
  return { column: at + 1, codePoint: codePointName(chars[at].codePointAt(0) as number) };
}

export interface AsciiLineContext {
  /** Message prefix, the action's name (`aws`, `egress`). */
  action: string;
  /** The input at fault (`allow`, `aws-allow`, `secrets`). */
  input: string;
  /** 1-based line within the input. */
  line: number;
  /** Quote the line (with the character shown as `<U+XXXX>`); off where a line may hold names best kept out of logs. */
  quote?: boolean;
  /** Replaces the default fix, for inputs with a more specific one (domain names: the `xn--` form). */
  fix?: string;
}

/** Throws a CordonError naming the input, line, column and code point when `text` is not printable ASCII. */
export function requireAsciiLine(text: string, ctx: AsciiLineContext): void {
  const bad = firstNonAscii(text);
  if (!bad) return;
  const shown = showInvisible(text);
  const quoted = ctx.quote ? ` ("${shown.length > 80 ? shown.slice(0, 77) + '...' : shown}")` : '';
  throw new CordonError({
    what: `${ctx.action}: ${ctx.input}: line ${ctx.line} has the character ${bad.codePoint} at column ${bad.column}${quoted}`,
    why:
      'only printable ASCII is read here, with spaces or tabs between entries; an invisible or look-alike character ' +
      '(often pasted from a web page, chat or word processor) would change where one entry ends and the next begins',
    fix:
      ctx.fix ??
      `delete the character (retype a plain space if it separated two entries); \`grep -nP '[^\\x20-\\x7e\\t]' <file>\` shows where such characters are`,
    input: ctx.input,
  });
}
