/**
 * The `secrets` input: one `TARGET=source:reference` per line. Targets are the variable
 * names the command sees, validated here so a secret can never replace PATH, preload a
 * library or pose as a runner variable.
 */
import { requireAsciiLine, trimAscii } from '../platform/ascii.js';
import { CordonError } from '../platform/errors.js';

export const SOURCES = ['aws-sm', 'ssm', 'json', 'env'] as const;
export type SourceKind = (typeof SOURCES)[number];

export interface SecretSpec {
  /** Variable name, or the prefix (`DB_` or empty) when `expand` is set. */
  target: string;
  /** `DB_*=...`: each key of the JSON value becomes `DB_<KEY>`. */
  expand: boolean;
  source: SourceKind;
  /** Secret name or ARN, parameter name, JSON map key or variable name. */
  ref: string;
  /** Dotted path into a JSON value (`#db.password`). */
  key?: string;
  /** The value is not secret: it is passed on but not masked, and may be short. */
  notSecret: boolean;
  /** 1-based line in the input, for messages. */
  line: number;
}

/** `aws-sm:prod/db#password`, as shown in the ledger and messages (names, never values). */
export function describeSource(s: Pick<SecretSpec, 'source' | 'ref' | 'key'>): string {
  return `${s.source}:${s.ref}${s.key ? `#${s.key}` : ''}`;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Variables that change how every program or shell starts: a secret must never set them. */
const REFUSED_NAMES = new Set([
  'PATH',
  'NODE_OPTIONS',
  'BASH_ENV',
  'ENV',
  'SHELLOPTS',
  'BASHOPTS',
  'IFS',
  'CDPATH',
  'HOME',
]);
const REFUSED_PREFIXES = ['GITHUB_', 'RUNNER_', 'ACTIONS_', 'LD_', 'INPUT_', 'STATE_', 'BASH_FUNC_', 'DYLD_'];

/** Why `name` cannot be a target, or undefined when it can. */
export function targetProblem(name: string): string | undefined {
  if (!IDENTIFIER.test(name))
    return 'it is not a valid variable name (letters, digits and _, not starting with a digit)';
  const upper = name.toUpperCase();
  if (REFUSED_NAMES.has(upper)) return `${upper} changes how programs start, so a secret may not set it`;
  const prefix = REFUSED_PREFIXES.find((p) => upper.startsWith(p));
  if (prefix) return `names starting with ${prefix} belong to the runner or the loader`;
  return undefined;
}

export function checkTarget(name: string, input: string, where: string): void {
  const why = targetProblem(name);
  if (why) {
    throw new CordonError({
      what: `secrets: ${where}: target name "${name}" is refused`,
      why,
      fix: 'pick another name for the variable, such as APP_TOKEN',
      input,
    });
  }
}

/** `db.password` -> `DB_PASSWORD`-style suffix for expanded keys. */
export function expandedName(prefix: string, key: string): string {
  return `${prefix}${key.toUpperCase().replace(/[^A-Z0-9_]/g, '_')}`;
}

/**
 * Parses the `secrets` input. Lines are `TARGET=source:reference[#json.key]` in printable
 * ASCII, blank lines and `#` comments are skipped; `notSecret` names targets (or expansion prefixes) whose
 * values are passed on unmasked.
 */
export function parseSecretSpecs(
  text: string,
  opts: { input?: string; notSecret?: string[] } = {},
): SecretSpec[] {
  const input = opts.input ?? 'secrets';
  const notSecret = new Set(opts.notSecret ?? []);
  const out: SecretSpec[] = [];
  const seen = new Map<string, number>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1;
    const text = trimAscii(raw);
    if (text === '' || text.startsWith('#')) return;
    // Before any trim or split: JavaScript's trim() would drop a U+00A0 after a target
    // unseen, and a secret's name or reference is never anything but ASCII.
    requireAsciiLine(text, { action: 'secrets', input, line });
    const where = `line ${line}`;
    const eq = text.indexOf('=');
    if (eq <= 0) {
      throw new CordonError({
        what: `secrets: ${where} of ${input} is not TARGET=source:reference`,
        why: 'each line names the variable to set, then where its value comes from',
        fix: 'write e.g. `DB_PASSWORD=aws-sm:prod/db#password` or `API_KEY=json:API_KEY`',
        input,
      });
    }
    const target = text.slice(0, eq).trim();
    const rest = text.slice(eq + 1).trim();
    const colon = rest.indexOf(':');
    const source = (colon > 0 ? rest.slice(0, colon) : '') as SourceKind;
    if (!SOURCES.includes(source)) {
      throw new CordonError({
        what: `secrets: ${where} (${target}) has no known source`,
        why: `the value must start with one of ${SOURCES.map((s) => `${s}:`).join(', ')}`,
        fix: 'write e.g. `aws-sm:prod/db`, `ssm:/app/key`, `json:API_KEY` or `env:NAME`',
        input,
      });
    }
    let ref = rest.slice(colon + 1).trim();
    let key: string | undefined;
    const hash = ref.indexOf('#');
    if (hash >= 0) {
      key = ref.slice(hash + 1).trim();
      ref = ref.slice(0, hash).trim();
      if (key === '' || key.split('.').some((k) => k === '')) {
        throw new CordonError({
          what: `secrets: ${where} (${target}) has an empty JSON key after #`,
          why: 'the part after # is a dotted path into the JSON value, such as #password or #db.password',
          fix: 'name the key, or remove the #',
          input,
        });
      }
    }
    if (ref === '') {
      throw new CordonError({
        what: `secrets: ${where} (${target}) names no ${source} reference`,
        why: 'the part after the source names the secret, parameter or variable',
        fix: `write e.g. \`${target}=${source}:NAME\``,
        input,
      });
    }
    if (source === 'env' && !IDENTIFIER.test(ref)) {
      throw new CordonError({
        what: `secrets: ${where} (${target}): env:${ref} is not a variable name`,
        fix: 'write env:NAME with the name of a variable in this step',
        input,
      });
    }
    const expand = target.endsWith('*');
    const name = expand ? target.slice(0, -1) : target;
    if (expand) {
      if (name !== '' && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) checkTarget(target, input, where);
    } else {
      checkTarget(name, input, where);
      const prev = seen.get(name);
      if (prev !== undefined) {
        throw new CordonError({
          what: `secrets: ${where}: target ${name} is already set on line ${prev}`,
          why: 'each variable gets one value',
          fix: 'remove one of the two lines or rename a target',
          input,
        });
      }
      seen.set(name, line);
    }
    out.push({
      target: name,
      expand,
      source,
      ref,
      key,
      notSecret: notSecret.has(target) || notSecret.has(name),
      line,
    });
  });
  return out;
}

/** Parses `secrets-json` (`${{ toJSON(secrets) }}`): an object of names to values. */
export function parseSecretsJson(text: string, input = 'secrets-json'): Record<string, string> {
  if (text.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // The parser's message quotes the text, which holds secrets: never pass it on.
    throw new CordonError({
      what: `secrets: input ${input} is not valid JSON`,
      why: 'it should be an object of names to values, as `${{ toJSON(secrets) }}` gives',
      fix: `write \`${input}: \${{ toJSON(secrets) }}\``,
      input,
    });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new CordonError({
      what: `secrets: input ${input} is not a JSON object`,
      fix: `write \`${input}: \${{ toJSON(secrets) }}\``,
      input,
    });
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
    out[k] = typeof v === 'string' ? v : JSON.stringify(v);
  }
  return out;
}
