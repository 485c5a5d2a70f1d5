/**
 * The allowlist: domain patterns (exact and `*.` wildcards), static addresses and CIDRs,
 * and the presets that keep the runner itself working.
 */
import { isIP } from 'node:net';
import { requireAsciiLine } from '../platform/ascii.js';
import { CordonError } from '../platform/errors.js';
import { addressBytes, formatAddress } from './ip.js';

export interface DomainPattern {
  /** Lower case, no trailing dot, without the `*.` of a wildcard. */
  name: string;
  wildcard: boolean;
}

export interface Cidr {
  family: 4 | 6;
  address: string;
  prefix: number;
}

const LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;

function domainError(entry: string, why: string, fix: string): never {
  throw new CordonError({
    what: `egress: allowed-domains entry "${entry.length > 80 ? entry.slice(0, 77) + '...' : entry}" is not valid`,
    why,
    fix,
    input: 'allowed-domains',
  });
}

/** Parses one `allowed-domains` entry: `example.com` or `*.example.com`, case-insensitive, trailing dot ignored. */
export function parseDomain(entry: string): DomainPattern {
  const raw = entry.trim();
  if (/[/:@?#\s]/.test(raw)) {
    domainError(
      raw,
      'an entry is a host name, not a URL, a port or a path',
      'write only the host, e.g. `api.example.com`',
    );
  }
  let s = raw.toLowerCase();
  if (s.endsWith('.')) s = s.slice(0, -1);
  let wildcard = false;
  if (s.startsWith('*.')) {
    wildcard = true;
    s = s.slice(2);
  }
  if (s === '' || s === '*') {
    domainError(
      raw,
      'a bare `*` would allow every name',
      'list the domains the job needs, or use `egress-policy: audit` to find them',
    );
  }
  if (s.includes('*')) {
    domainError(
      raw,
      'a wildcard is only allowed as the whole first label (`*.example.com`)',
      'write `*.example.com`, not `a*.example.com` or `a.*.com`',
    );
  }
  const labels = s.split('.');
  for (const label of labels) {
    if (!LABEL.test(label)) {
      domainError(
        raw,
        `label "${label}" is not a DNS label (letters, digits, hyphens, underscores; 1-63 characters)`,
        'fix the spelling of the name',
      );
    }
  }
  if (s.length > 253) domainError(raw, 'a name is at most 253 characters', 'shorten the name');
  if (wildcard && labels.length < 2) {
    domainError(
      raw,
      `\`*.${s}\` would allow a whole top-level domain`,
      'allow the registered domain instead, e.g. `*.example.com`',
    );
  }
  if (isIP(s)) domainError(raw, 'an address belongs in allowed-ips', 'move it to `allowed-ips`');
  return { name: s, wildcard };
}

export function parseDomains(text: string): DomainPattern[] {
  const out = new Map<string, DomainPattern>();
  const fix =
    'delete the character (retype a plain space if it separated two names); write an internationalised name in its ASCII form (`xn--...`)';
  for (const entry of splitEntries(text, { input: 'allowed-domains', fix })) {
    const p = parseDomain(entry);
    out.set(`${p.wildcard ? '*.' : ''}${p.name}`, p);
  }
  return [...out.values()];
}

/**
 * Newline, space, tab or comma separated, `#` comments to the end of a line. Outside
 * comments a line is printable ASCII: `\s` would also split at U+00A0 or U+FEFF, making two
 * entries of what reads as one.
 */
export function splitEntries(text: string, opts: { input: string; fix?: string }): string[] {
  return text.split(/\r?\n/).flatMap((l, i) => {
    const entries = l.replace(/#.*$/, '');
    requireAsciiLine(entries.replace(/\r$/, ''), {
      action: 'egress',
      input: opts.input,
      line: i + 1,
      quote: true,
      fix: opts.fix,
    });
    return entries.split(/[ \t\r,]+/).filter((s) => s !== '');
  });
}

function ipError(entry: string, why: string, fix: string): never {
  throw new CordonError({
    what: `egress: allowed-ips entry "${entry}" is not valid`,
    why,
    fix,
    input: 'allowed-ips',
  });
}

/** Parses an address or CIDR; host bits must be zero, `/0` is refused. */
export function parseCidr(entry: string): Cidr {
  const [addr, len, extra] = entry.split('/');
  const family = isIP(addr);
  if (extra !== undefined || family === 0) {
    ipError(
      entry,
      'expected an IPv4 or IPv6 address, optionally with a /prefix',
      'write e.g. `192.0.2.10`, `198.51.100.0/24` or `2001:db8::/48`',
    );
  }
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (len !== undefined) {
    if (!/^\d{1,3}$/.test(len) || Number(len) > max)
      ipError(entry, `the prefix must be 1..${max}`, 'fix the prefix length');
    prefix = Number(len);
  }
  if (prefix === 0) ipError(entry, '/0 would allow every address', 'list the networks the job needs');
  const bytes = addressBytes(addr);
  for (let bit = prefix; bit < max; bit++) {
    if (bytes[bit >> 3] & (0x80 >> (bit & 7))) {
      ipError(
        entry,
        'host bits are set below the prefix',
        `write the network address, e.g. ${formatAddress(maskBytes(bytes, prefix))}/${prefix}`,
      );
    }
  }
  return { family: family as 4 | 6, address: formatAddress(bytes), prefix };
}

export function parseCidrs(text: string): Cidr[] {
  const seen = new Map<string, Cidr>();
  for (const entry of splitEntries(text, { input: 'allowed-ips' })) {
    const c = parseCidr(entry);
    seen.set(cidrText(c), c);
  }
  return [...seen.values()];
}

export function cidrText(c: Cidr): string {
  return c.prefix === (c.family === 4 ? 32 : 128) ? c.address : `${c.address}/${c.prefix}`;
}

function maskBytes(b: Uint8Array, prefix: number): Uint8Array {
  const out = Uint8Array.from(b);
  for (let bit = prefix; bit < b.length * 8; bit++) out[bit >> 3] &= ~(0x80 >> (bit & 7));
  return out;
}

/** Verdicts remembered per name; past it the memo starts again (a flood of new names keeps it bounded). */
const VERDICTS = 4096;

/** Case-insensitive matcher over exact names and `*.` suffixes; a wildcard never matches its apex. */
export class DomainMatcher {
  private readonly exact = new Set<string>();
  private readonly suffixes = new Set<string>();
  /**
   * Names decided before: one lookup instead of a lookup and a cut string per label. The
   * proxy hands in the same string object for a name asked again (interned.ts), whose
   * hash V8 keeps, so a repeated name is not even hashed again.
   */
  private readonly verdicts = new Map<string, boolean>();

  constructor(patterns: DomainPattern[]) {
    for (const p of patterns) (p.wildcard ? this.suffixes : this.exact).add(p.name);
  }

  /** `name` is lower case without a trailing dot. */
  matches(name: string): boolean {
    const known = this.verdicts.get(name);
    if (known !== undefined) return known;
    const verdict = this.decide(name);
    if (this.verdicts.size >= VERDICTS) this.verdicts.clear();
    this.verdicts.set(name, verdict);
    return verdict;
  }

  private decide(name: string): boolean {
    if (this.exact.has(name)) return true;
    for (let at = name.indexOf('.'); at >= 0; at = name.indexOf('.', at + 1)) {
      if (this.suffixes.has(name.slice(at + 1))) return true;
    }
    return false;
  }
}

export type PresetName = 'github-hosted' | 'none';

/**
 * What a GitHub-hosted runner needs to keep working while the fence is up; each entry
 * says why (the same list is in docs/egress.md).
 */
export const GITHUB_HOSTED_PRESET: { entry: string; why: string }[] = [
  { entry: 'github.com', why: 'git over HTTPS for checkout and pushes' },
  { entry: 'api.github.com', why: 'REST and GraphQL API used by actions and the runner' },
  {
    entry: '*.actions.githubusercontent.com',
    why: 'Actions service: job messages, logs, OIDC token endpoint, action downloads',
  },
  { entry: 'codeload.github.com', why: 'action tarballs downloaded by the runner' },
  {
    entry: 'results-receiver.actions.githubusercontent.com',
    why: 'step results and logs (covered by the wildcard, listed for clarity)',
  },
  { entry: '*.blob.core.windows.net', why: 'log, artifact and cache storage the results service hands out' },
  { entry: 'objects.githubusercontent.com', why: 'release assets and action archives' },
  {
    entry: 'pipelines.actions.githubusercontent.com',
    why: 'legacy Actions pipelines service (covered by the wildcard)',
  },
  { entry: 'vstoken.actions.githubusercontent.com', why: 'runner token exchange (covered by the wildcard)' },
  { entry: 'broker.actions.githubusercontent.com', why: 'runner job broker (covered by the wildcard)' },
  { entry: 'ghcr.io', why: 'container actions pulled from the GitHub container registry' },
  { entry: 'pkg-containers.githubusercontent.com', why: 'ghcr.io layer downloads' },
];

export function presetDomains(preset: PresetName): DomainPattern[] {
  if (preset === 'none') return [];
  return GITHUB_HOSTED_PRESET.map((e) => parseDomain(e.entry));
}

/** `allowed-domains` text for audit mode: the names actually used, grouped under a wildcard when three or more share a parent. */
export function suggestAllowlist(names: string[]): string[] {
  // Only domain names: the proxy reads a name's labels as bytes, and under a listed wildcard
  // (or answered by a zone of the agent's) a label may hold a line break, markdown or `*`.
  const uniq = [...new Set(names.map((n) => n.toLowerCase().replace(/\.$/, '')))]
    .filter((n) => n.length <= 253 && n.split('.').every((l) => LABEL.test(l)))
    .sort();
  const byParent = new Map<string, string[]>();
  for (const n of uniq) {
    const at = n.indexOf('.');
    const parent = at >= 0 ? n.slice(at + 1) : '';
    if (!parent.includes('.')) continue;
    byParent.set(parent, [...(byParent.get(parent) ?? []), n]);
  }
  const out = new Set<string>();
  for (const n of uniq) {
    const at = n.indexOf('.');
    const parent = at >= 0 ? n.slice(at + 1) : '';
    if ((byParent.get(parent)?.length ?? 0) >= 3) out.add(`*.${parent}`);
    else out.add(n);
  }
  return [...out].sort();
}
