/**
 * One error type for everything a user can act on: what went wrong, why, and how to fix it.
 * The message never carries a secret value; callers pass names, never values.
 */
export interface CordonErrorParts {
  /** What failed, in the user's terms (`role-to-assume "x" is not an IAM role ARN`). */
  what: string;
  /** Why it failed or what the rule is. */
  why?: string;
  /** What to change. */
  fix?: string;
  /** The action input at fault, when there is one. */
  input?: string;
}

export class CordonError extends Error {
  readonly what: string;
  readonly why?: string;
  readonly fix?: string;
  readonly input?: string;

  constructor(parts: CordonErrorParts) {
    super(formatParts(parts));
    this.name = 'CordonError';
    this.what = parts.what;
    this.why = parts.why;
    this.fix = parts.fix;
    this.input = parts.input;
  }
}

function formatParts(p: CordonErrorParts): string {
  let s = p.what;
  if (p.why) s += ` — ${p.why}`;
  if (p.fix) s += `. Fix: ${p.fix}`;
  return s;
}

export function isCordonError(e: unknown): e is CordonError {
  return e instanceof CordonError;
}

/**
 * Text for an unknown error, without its stack: a library's stack or message can hold
 * request bodies, so only the message is kept and it is scrubbed by the caller.
 */
export function describeError(e: unknown): string {
  if (e instanceof Error) return e.message || e.name;
  if (typeof e === 'string') return e;
  return 'unknown error';
}
