/**
 * Session policies: the inline policy (JSON, or built from `allow` shorthand lines) and the
 * managed policy ARNs passed to AssumeRoleWithWebIdentity. A session policy can only narrow
 * what the role allows, so Cordon validates it before any call: a typo that STS would
 * reject, or silently accept and match nothing, fails the step with the line at fault.
 */
import { requireAsciiLine } from '../platform/ascii.js';
import {
  asList,
  checkActions,
  checkResources,
  checkStatement,
  fail,
  unscopedChosen,
} from './policy-checks.js';
import type { Unscoped } from '../ledger/events.js';

export interface PolicyStatement {
  Sid?: string;
  Effect: 'Allow' | 'Deny';
  Action?: string | string[];
  NotAction?: string | string[];
  Resource?: string | string[];
  NotResource?: string | string[];
  Condition?: Record<string, unknown>;
}

export interface PolicyDocument {
  Version: '2012-10-17';
  Statement: PolicyStatement[];
}

/** What the ledger records of a statement: never a condition value, only actions and resources. */
export interface StatementSummary {
  effect: string;
  actions: string[];
  resources: string[];
}

export interface SessionPolicy {
  /** The merged inline policy, or undefined when neither JSON nor `allow` lines were given. */
  document?: PolicyDocument;
  /** `document` as the compact JSON sent to STS. */
  json?: string;
  statements: StatementSummary[];
  managedPolicyArns: string[];
  /**
   * Set when no session policy narrows the role, so the credentials carry every permission
   * the role has: `default` when none was given, `chosen` when the `allow` input was `*`
   * alone (the explicit opt-out `actions/run` asks for).
   */
  unscoped?: Unscoped;
}

/** Input names used in messages; `actions/run` passes its own (`aws-allow`, ...). */
export interface PolicyInputNames {
  inline: string;
  allow: string;
  managed: string;
}

export const DEFAULT_POLICY_INPUTS: PolicyInputNames = {
  inline: 'inline-session-policy',
  allow: 'allow',
  managed: 'managed-session-policies',
};

/** STS: "The plaintext that you use for both inline and managed session policies can't exceed 2,048 characters." */
export const MAX_POLICY_CHARS = 2048;
export const MAX_MANAGED_POLICIES = 10;

const MANAGED_ARN_RE =
  /^arn:(aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b|aws-iso-e|aws-iso-f|aws-eusc):iam::(\d{12}|aws):policy\/([\w+=,.@/-]+)$/;

/**
 * Parses and validates `inline-session-policy` JSON text: a policy document (`Version` and
 * `Statement`), one statement, or an array of statements. Throws a CordonError naming the
 * statement at fault.
 */
export function parseInlinePolicy(
  text: string,
  opts: { action?: string; input?: string } = {},
): PolicyStatement[] {
  const action = opts.action ?? 'aws';
  const input = opts.input ?? DEFAULT_POLICY_INPUTS.inline;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    const why = e instanceof Error ? e.message : 'it does not parse';
    fail(
      action,
      input,
      'is not valid JSON',
      why,
      'check quotes and commas; in YAML use a block scalar (`|`) so the JSON stays intact',
    );
  }
  let statements: unknown;
  if (Array.isArray(parsed)) statements = parsed;
  else if (typeof parsed === 'object' && parsed !== null && 'Statement' in parsed) {
    const doc = parsed as Record<string, unknown>;
    if (doc.Version !== undefined && doc.Version !== '2012-10-17') {
      fail(
        action,
        input,
        `has Version ${JSON.stringify(doc.Version)}`,
        'only "2012-10-17" supports every policy feature',
        'write "Version": "2012-10-17"',
      );
    }
    for (const k of Object.keys(doc)) {
      if (k !== 'Version' && k !== 'Statement' && k !== 'Id')
        fail(
          action,
          input,
          `has unknown top-level key "${k}"`,
          'a policy document holds Version, Id and Statement',
          `remove "${k}"`,
        );
    }
    statements = asList(doc.Statement);
  } else if (typeof parsed === 'object' && parsed !== null) statements = [parsed];
  else
    fail(
      action,
      input,
      'is not a policy document',
      'expected a JSON object with "Statement"',
      'write {"Version": "2012-10-17", "Statement": [...]}',
    );
  const list = statements as unknown[];
  if (list.length === 0)
    fail(
      action,
      input,
      'has no statements',
      'an empty session policy would deny everything',
      'add a statement, or leave the input empty',
    );
  return list.map((s, i) => checkStatement(action, input, `statement ${i + 1}`, s));
}

/**
 * Parses `allow` shorthand lines into Allow statements. Each line is
 * `<actions> <resources>`: actions separated by commas, then one or more resource ARNs (or
 * `*`) separated by spaces or tabs (nothing else: a line is printable ASCII), e.g. `s3:GetObject,s3:PutObject arn:aws:s3:::my-bucket/*`.
 * Lines with the same resources are merged. Errors name the line number.
 */
export function parseAllowLines(
  lines: { line: number; text: string }[],
  opts: { action?: string; input?: string } = {},
): PolicyStatement[] {
  const action = opts.action ?? 'aws';
  const input = opts.input ?? DEFAULT_POLICY_INPUTS.allow;
  const byResources = new Map<string, { actions: Set<string>; resources: string[] }>();
  for (const { line, text } of lines) {
    // Before the split: `\s` would also split at U+00A0 or U+FEFF, turning
    // `bucket/<U+FEFF>*` into the two resources `bucket/` and `*`.
    requireAsciiLine(text, { action, input, line, quote: true });
    const where = `line ${line} ("${text.length > 60 ? text.slice(0, 57) + '...' : text}")`;
    const parts = text.split(/[ \t]+/);
    if (parts.length < 2) {
      fail(
        action,
        input,
        `${where} has no resource`,
        'each line is "<action>[,<action>...] <resource ARN> [<resource ARN>...]"; Cordon never widens a missing resource to *',
        'add the ARN the action applies to, e.g. "s3:GetObject arn:aws:s3:::my-bucket/*" (write "*" explicitly if you mean it)',
      );
    }
    const actions = checkActions(
      action,
      input,
      where,
      parts[0].split(',').filter((a) => a !== ''),
    );
    const resources = checkResources(action, input, where, parts.slice(1));
    const key = [...new Set(resources)].sort().join(' ');
    const entry = byResources.get(key) ?? {
      actions: new Set<string>(),
      resources: [...new Set(resources)].sort(),
    };
    for (const a of actions) entry.actions.add(a);
    byResources.set(key, entry);
  }
  return [...byResources.values()].map((e) => ({
    Effect: 'Allow' as const,
    Action: e.actions.size === 1 ? [...e.actions][0] : [...e.actions],
    Resource: e.resources.length === 1 ? e.resources[0] : e.resources,
  }));
}

/** Validates managed session policy ARNs (any partition, AWS-managed or customer), at most 10. */
export function validateManagedPolicyArns(
  arns: string[],
  opts: { action?: string; input?: string } = {},
): string[] {
  const action = opts.action ?? 'aws';
  const input = opts.input ?? DEFAULT_POLICY_INPUTS.managed;
  const unique = [...new Set(arns)];
  if (unique.length > MAX_MANAGED_POLICIES) {
    fail(
      action,
      input,
      `lists ${unique.length} policies`,
      `STS accepts at most ${MAX_MANAGED_POLICIES} managed session policies`,
      `merge some into one customer managed policy, or move permissions into ${DEFAULT_POLICY_INPUTS.inline}`,
    );
  }
  unique.forEach((arn, i) => {
    if (!MANAGED_ARN_RE.test(arn)) {
      fail(
        action,
        input,
        `entry ${i + 1} "${arn}" is not a managed policy ARN`,
        'expected arn:<partition>:iam::<12-digit account or "aws">:policy/<path/name>',
        "copy the ARN from the policy's summary page, e.g. arn:aws:iam::aws:policy/ReadOnlyAccess",
      );
    }
  });
  return unique;
}

/** Actions and resources of each statement, for the ledger and the summary. */
export function summarizeStatements(statements: PolicyStatement[]): StatementSummary[] {
  return statements.map((s) => ({
    effect: s.Effect,
    actions: (asList(s.Action) ?? (asList(s.NotAction) ?? []).map((a) => `not ${String(a)}`)).map(String),
    resources: (asList(s.Resource) ?? (asList(s.NotResource) ?? []).map((r) => `not ${String(r)}`)).map(
      String,
    ),
  }));
}

/**
 * Builds the session policy from the three inputs: inline JSON and `allow` lines merged into
 * one document (JSON statements first), and the managed ARNs validated. Checks the 2,048
 * character limit STS puts on the inline policy.
 */
export function buildSessionPolicy(
  given: { inline?: string; allow?: { line: number; text: string }[]; managed?: string[] },
  opts: { action?: string; names?: PolicyInputNames } = {},
): SessionPolicy {
  const action = opts.action ?? 'aws';
  const names = opts.names ?? DEFAULT_POLICY_INPUTS;
  const statements: PolicyStatement[] = [];
  const allow = given.allow ?? [];
  // `*` alone: every permission the role has, said out loud (policy-checks.ts).
  if (unscopedChosen(given, action, names))
    return { statements: [], managedPolicyArns: [], unscoped: 'chosen' };
  if (given.inline && given.inline.trim() !== '')
    statements.push(...parseInlinePolicy(given.inline, { action, input: names.inline }));
  if (given.allow && given.allow.length)
    statements.push(...parseAllowLines(allow, { action, input: names.allow }));
  const managedPolicyArns = validateManagedPolicyArns(given.managed ?? [], { action, input: names.managed });
  if (statements.length === 0)
    return {
      statements: [],
      managedPolicyArns,
      ...(managedPolicyArns.length ? {} : { unscoped: 'default' }),
    };
  const document: PolicyDocument = { Version: '2012-10-17', Statement: statements };
  const json = JSON.stringify(document);
  if (json.length > MAX_POLICY_CHARS) {
    const input =
      given.allow?.length && given.inline
        ? `${names.inline} + ${names.allow}`
        : given.inline
          ? names.inline
          : names.allow;
    fail(
      action,
      input,
      `the session policy is ${json.length} characters`,
      `STS accepts at most ${MAX_POLICY_CHARS} (whitespace removed)`,
      'use wildcards or fewer resources, or move permissions into a managed policy listed in ' +
        names.managed,
    );
  }
  return { document, json, statements: summarizeStatements(statements), managedPolicyArns };
}
