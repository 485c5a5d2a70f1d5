/**
 * Text shown to a reviewer that may carry a secret Cordon was never told about: the
 * agent's command line (a workflow can paste `${{ secrets.X }}` into it) and names the
 * agent chose (a DNS name can carry data). Registered secrets are scrubbed by the secret
 * registry; this takes out what looks like a credential by its shape as well.
 */

/** Known credential formats, replaced whole. */
const TOKEN_SHAPES: RegExp[] = [
  /\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})/g,
  /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/g,
  /\bsk-[A-Za-z0-9_-]{16,}/g,
  /\bxox[abposr]-[A-Za-z0-9-]{10,}/g,
  /\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/g,
  /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)/g,
];

/**
 * `password=...`, `"token": "..."`, `--token ...`, `Authorization: Bearer ...`: the name
 * kept, the value replaced (a `$VARIABLE` is no value: it is kept). Within one line only.
 */
const KEYWORD = '(?:pass(?:word|wd)?|secret|token|api[_-]?key|auth(?:orization)?|credentials?)';
const NAMED_VALUE = new RegExp(
  `(${KEYWORD}["']?[ \\t]*[=:][ \\t]*(?:bearer[ \\t]+|basic[ \\t]+)?|(?<![\\w-])--?${KEYWORD}[ \\t]+)` +
    `("[^"\\n]*"|'[^'\\n]*'|[^\\s"';&|]+)`,
  'gi',
);

/**
 * The password half of `user:password`: in a URL (`https://bot:pw@host`) and after curl's
 * `-u` / `--user`. The user name is kept; a `$VARIABLE` is no value and is kept.
 */
const USER_PASSWORD = [
  /(\b[a-z][a-z0-9+.-]*:\/\/[^\s/:@'"]*:)([^\s/@'"]+)(?=@)/gi,
  // Quoted, up to the closing quote (spaces included), then bare.
  /((?<![\w-])(?:-u|--user)[ \t]+"[^\n:"]*:)([^\n"]+)(?=")/g,
  /((?<![\w-])(?:-u|--user)[ \t]+'[^\n:']*:)([^\n']+)(?=')/g,
  /((?<![\w-])(?:-u|--user)[ \t]+[^\s:"']*:)([^\s"']+)/g,
];

/** A long run of letters and digits that mixes both: a key, whatever its format. */
const HIGH_ENTROPY = /[A-Za-z0-9+/_=-]{32,}/g;

function looksRandom(word: string): boolean {
  return /[0-9]/.test(word) && /[A-Za-z]/.test(word) && new Set(word).size >= 12;
}

/** Replaces what looks like a credential in `text` with `***`. */
export function scrubShapes(text: string): string {
  let out = text;
  for (const re of TOKEN_SHAPES) out = out.replace(re, '***');
  out = out.replace(NAMED_VALUE, (_m, name: string, value: string) =>
    value.startsWith('$') ? `${name}${value}` : `${name}***`,
  );
  for (const re of USER_PASSWORD)
    out = out.replace(re, (_m, head: string, value: string) =>
      value.startsWith('$') ? `${head}${value}` : `${head}***`,
    );
  return out.replace(HIGH_ENTROPY, (w) => (looksRandom(w) ? '***' : w));
}

/**
 * One line of at most `max` characters, with an ellipsis when cut: line breaks shown as
 * `⏎`, control characters as `?`. Scrub before cutting: a cut value is no longer found.
 */
export function oneLine(text: string, max: number): string {
  const flat = text
    .trim()
    .replace(/\s*\r?\n\s*/g, ' ⏎ ')
    .replace(/\p{Cc}/gu, '?');
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** The command as run.started records it: scrubbed (registry, then shapes), then cut to a line. */
export function commandPreview(command: string, scrub: (s: string) => string, max = 200): string {
  return oneLine(scrubShapes(scrub(command)), max);
}

/**
 * A DNS name with every label that could carry data (16 characters or more, or 10 or more
 * with 4 digits or more, as an encoded value has) replaced by its length: a name the agent chose can hold a secret
 * it is smuggling out, and the summary shows it to everyone who can read the run.
 */
export function redactLabels(name: string): string {
  return name
    .split('.')
    .map((l) =>
      l.length >= 16 || (l.length >= 10 && (l.match(/\d/g) ?? []).length >= 4) ? `[${l.length} chars]` : l,
    )
    .join('.');
}

/**
 * A name the agent reached as the summary and attribution.json show it: a name the egress
 * step listed is shown as it is; under a listed wildcard (`*.suffix`) the agent chose the
 * labels left of the suffix, so those are redacted (a secret can ride there, also in a name
 * that does not exist); a name matching nothing listed (audit mode) is redacted whole.
 */
export function shownReached(name: string, listed: readonly string[]): string {
  const n = name.toLowerCase().replace(/\.$/, '');
  let suffix = '';
  for (const d of listed) {
    if (typeof d !== 'string') continue;
    const l = d.toLowerCase().replace(/\.$/, '');
    if (l === n) return name;
    if (l.startsWith('*.') && n.endsWith(l.slice(1)) && l.length - 1 > suffix.length) suffix = l.slice(1);
  }
  if (!suffix) return redactLabels(name);
  const cut = name.length - name.replace(/\.$/, '').length + suffix.length;
  return `${redactLabels(name.slice(0, name.length - cut))}${name.slice(name.length - cut)}`;
}

/**
 * A refused name as the summary and the annotations show it: one that carried a secret of
 * run's comes from the daemon as its length already (rootd/secret-names.ts); any other has
 * its data-carrying labels replaced.
 */
export function shownName(n: { name: string; carriesSecret?: string }): string {
  return n.carriesSecret ? n.name : redactLabels(n.name);
}
