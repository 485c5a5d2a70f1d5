/**
 * Typed, validated action inputs. Domain code receives the object its `inputs.ts`
 * builds from these getters and never reads the environment itself.
 */
import { trimAscii } from './ascii.js';
import { CordonError } from './errors.js';
import type { Env } from './runner.js';

export interface InputOptions {
  required?: boolean;
  /** The value is a secret: errors name the input but never quote the value. */
  secret?: boolean;
}

/** The `INPUT_*` variable the runner sets for an input name. */
export function inputVariable(name: string): string {
  return `INPUT_${name.replace(/ /g, '_').toUpperCase()}`;
}

export class Inputs {
  constructor(
    /** Prefix for messages, the action's name (`aws`, `egress`). */
    readonly action: string,
    readonly env: Env = process.env,
  ) {}

  /** Raw value as the runner gives it, trimmed; '' when unset. */
  raw(name: string): string {
    return (this.env[inputVariable(name)] ?? '').trim();
  }

  has(name: string): boolean {
    return this.raw(name) !== '';
  }

  fail(name: string, value: string | undefined, why: string, fix: string, opts: InputOptions = {}): never {
    const shown = opts.secret || value === undefined ? '' : ` "${truncate(value)}"`;
    throw new CordonError({
      what: `${this.action}: input ${name}${shown} is not valid`,
      why,
      fix,
      input: name,
    });
  }

  string(name: string, opts: InputOptions & { default?: string } = {}): string {
    const v = this.raw(name);
    if (v !== '') return v;
    if (opts.default !== undefined) return opts.default;
    if (opts.required) {
      throw new CordonError({
        what: `${this.action}: input ${name} is required`,
        why: 'it was empty or not given',
        fix: `add \`${name}: ...\` under \`with:\` in this step`,
        input: name,
      });
    }
    return '';
  }

  /** Like `string`, but keeps leading and trailing whitespace and line structure (PEM keys, scripts). */
  multiline(name: string, opts: InputOptions & { default?: string } = {}): string {
    const v = this.env[inputVariable(name)] ?? '';
    if (v.trim() !== '') return v;
    return this.string(name, opts);
  }

  boolean(name: string, def: boolean): boolean {
    const v = this.raw(name);
    if (v === '') return def;
    if (/^(true|yes|on|1)$/i.test(v)) return true;
    if (/^(false|no|off|0)$/i.test(v)) return false;
    return this.fail(name, v, 'expected true or false', `write \`${name}: true\` or \`${name}: false\``);
  }

  integer(name: string, def: number | undefined, range: { min?: number; max?: number } = {}): number {
    const v = this.raw(name);
    if (v === '') {
      if (def === undefined) return this.string(name, { required: true }) as never;
      return def;
    }
    if (!/^-?\d+$/.test(v))
      return this.fail(name, v, 'expected a whole number', `write a number such as ${def ?? range.min ?? 1}`);
    const n = Number(v);
    checkRange(this, name, v, n, range);
    return n;
  }

  enumeration<T extends string>(name: string, values: readonly T[], def: T | undefined): T {
    const v = this.raw(name).toLowerCase();
    if (v === '') {
      if (def === undefined) return this.string(name, { required: true }) as never;
      return def;
    }
    if ((values as readonly string[]).includes(v)) return v as T;
    return this.fail(name, v, `expected one of ${values.join(', ')}`, `use one of: ${values.join(' | ')}`);
  }

  /** A list split on newlines and commas; blank entries and `#` comments ignored. */
  list(name: string, opts: InputOptions & { separators?: RegExp } = {}): string[] {
    const v = this.raw(name);
    if (v === '' && opts.required) this.string(name, { required: true });
    return splitList(v, opts.separators);
  }

  /**
   * A list of `{ line, text }` so validators can say which line was wrong. Lines are
   * numbered as written and trimmed of ASCII whitespace only: an invisible Unicode space at
   * either end stays, for the validator to refuse rather than for it to vanish unseen.
   */
  lines(name: string): { line: number; text: string }[] {
    return (this.env[inputVariable(name)] ?? '')
      .split(/\r?\n/)
      .map((text, i) => ({ line: i + 1, text: trimAscii(text) }))
      .filter((l) => l.text !== '' && !l.text.startsWith('#'));
  }

  /** A duration in seconds: `900`, `900s`, `15m`, `1h30m`. */
  duration(name: string, defSeconds: number, range: { min?: number; max?: number } = {}): number {
    const v = this.raw(name);
    if (v === '') return defSeconds;
    const n = parseDuration(v);
    if (n === undefined) {
      return this.fail(
        name,
        v,
        'expected a duration such as 900, 900s, 15m or 1h30m',
        'write a number of seconds or use s/m/h units',
      );
    }
    checkRange(this, name, v, n, range);
    return n;
  }
}

function checkRange(
  inputs: Inputs,
  name: string,
  raw: string,
  n: number,
  range: { min?: number; max?: number },
): void {
  if ((range.min !== undefined && n < range.min) || (range.max !== undefined && n > range.max)) {
    const bounds = `${range.min ?? '-∞'}..${range.max ?? '∞'}`;
    inputs.fail(name, raw, `it must be within ${bounds}`, `pick a value from ${bounds}`);
  }
}

export function splitList(v: string, separators: RegExp = /[\n,]/): string[] {
  return v
    .split(separators)
    .map((s) => s.trim())
    .filter((s) => s !== '' && !s.startsWith('#'));
}

export function parseDuration(v: string): number | undefined {
  const s = v.trim().toLowerCase();
  if (/^\d+$/.test(s)) return Number(s);
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(s);
  if (!m || s === '') return undefined;
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
}

function truncate(v: string): string {
  return v.length > 80 ? `${v.slice(0, 77)}...` : v;
}
