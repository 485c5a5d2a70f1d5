/**
 * The checks behind a session policy (policy.ts parses the inputs with them): each
 * statement's form, its actions, its resources (an ARN, or `*` for every resource), and the
 * `allow: '*'` rule, the one way to hand over the role unscoped, which nothing may come with.
 * Every failure is a CordonError naming the input and the statement or line at fault.
 */
import { showInvisible } from '../platform/ascii.js';
import { CordonError } from '../platform/errors.js';
import type { PolicyInputNames, PolicyStatement } from './policy.js';

const ACTION_RE = /^(\*|[a-z0-9-]+:[A-Za-z0-9*?]+)$/;
// Printable ASCII only (`[!-~]`, not `\S`): an invisible U+FEFF inside an ARN is refused, not kept.
const RESOURCE_RE =
  /^(\*|arn:(\*|aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b|aws-iso-e|aws-iso-f|aws-eusc):[!-9;-~]*:[!-9;-~]*:[!-9;-~]*:[!-~]+)$/;
const STATEMENT_KEYS = new Set([
  'Sid',
  'Effect',
  'Action',
  'NotAction',
  'Resource',
  'NotResource',
  'Condition',
]);

/** Throws the CordonError for `input` of `action`: `what` is at fault, `why`, and the `fix`. */
export function fail(action: string, input: string, what: string, why: string, fix: string): never {
  throw new CordonError({ what: `${action}: ${input}: ${what}`, why, fix, input });
}

/** A policy field as a list: IAM takes one string or a list of them. */
export function asList(v: unknown): unknown[] | undefined {
  if (v === undefined) return undefined;
  return Array.isArray(v) ? v : [v];
}

/** Each action is `service:Name` (wildcards `*` and `?`) or `*`; at least one. */
export function checkActions(action: string, input: string, where: string, values: unknown[]): string[] {
  if (values.length === 0)
    fail(
      action,
      input,
      `${where} has an empty action list`,
      'a statement needs at least one action',
      'list actions such as "s3:GetObject"',
    );
  return values.map((v) => {
    if (typeof v !== 'string' || !ACTION_RE.test(v)) {
      fail(
        action,
        input,
        `${where} has action ${JSON.stringify(v)}`,
        'an action is "service:Name" (wildcards * and ? allowed) or "*"',
        'write it like "s3:GetObject" or "s3:Get*"',
      );
    }
    return v;
  });
}

/** Each resource is an ARN (printable ASCII) or `*`, every resource; at least one. */
export function checkResources(action: string, input: string, where: string, values: unknown[]): string[] {
  if (values.length === 0)
    fail(
      action,
      input,
      `${where} has an empty resource list`,
      'a statement needs at least one resource',
      'list ARNs such as "arn:aws:s3:::my-bucket/*", or "*"',
    );
  return values.map((v) => {
    if (typeof v !== 'string' || !RESOURCE_RE.test(v)) {
      fail(
        action,
        input,
        `${where} has resource ${JSON.stringify(typeof v === 'string' ? showInvisible(v) : v)}`,
        'a resource is an ARN ("arn:partition:service:region:account:resource", printable ASCII) or "*"',
        'write it like "arn:aws:s3:::my-bucket/*"',
      );
    }
    return v;
  });
}

/** One statement checked key by key, rebuilt from what was checked. */
export function checkStatement(action: string, input: string, where: string, s: unknown): PolicyStatement {
  if (typeof s !== 'object' || s === null || Array.isArray(s)) {
    fail(
      action,
      input,
      `${where} is not an object`,
      'each statement is a JSON object with Effect, Action and Resource',
      'write {"Effect": "Allow", "Action": [...], "Resource": [...]}',
    );
  }
  const st = s as Record<string, unknown>;
  for (const k of Object.keys(st)) {
    if (!STATEMENT_KEYS.has(k)) {
      const hint =
        k === 'Principal' || k === 'NotPrincipal'
          ? 'session policies apply to the session itself and take no Principal'
          : `allowed keys are ${[...STATEMENT_KEYS].join(', ')}`;
      fail(action, input, `${where} has unknown key "${k}"`, hint, `remove "${k}" (keys are case-sensitive)`);
    }
  }
  if (st.Effect !== 'Allow' && st.Effect !== 'Deny') {
    fail(
      action,
      input,
      `${where} has Effect ${JSON.stringify(st.Effect)}`,
      'Effect must be "Allow" or "Deny"',
      'write "Effect": "Allow"',
    );
  }
  const actions = asList(st.Action);
  const notActions = asList(st.NotAction);
  if ((actions === undefined) === (notActions === undefined)) {
    fail(
      action,
      input,
      `${where} needs exactly one of Action or NotAction`,
      'IAM rejects a statement with neither or both',
      'add "Action": ["service:Name"]',
    );
  }
  const resources = asList(st.Resource);
  const notResources = asList(st.NotResource);
  if ((resources === undefined) === (notResources === undefined)) {
    fail(
      action,
      input,
      `${where} needs exactly one of Resource or NotResource`,
      'IAM rejects a statement with neither or both',
      'add "Resource": ["arn:..."] (or "*")',
    );
  }
  const checkedActions = checkActions(action, input, where, actions ?? notActions ?? []);
  const checkedResources = checkResources(action, input, where, resources ?? notResources ?? []);
  if (st.Sid !== undefined && (typeof st.Sid !== 'string' || !/^[A-Za-z0-9]*$/.test(st.Sid))) {
    fail(
      action,
      input,
      `${where} has Sid ${JSON.stringify(st.Sid)}`,
      'a Sid may hold only letters and digits',
      'remove the Sid or use letters and digits',
    );
  }
  if (
    st.Condition !== undefined &&
    (typeof st.Condition !== 'object' || st.Condition === null || Array.isArray(st.Condition))
  ) {
    fail(
      action,
      input,
      `${where} has a Condition that is not an object`,
      'Condition maps operators to {key: value}',
      'write "Condition": {"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}',
    );
  }
  // Built from what was checked: Effect first, then the statement's keys in its own order and
  // form (a lone action or resource stays a string).
  const statement: PolicyStatement = { Effect: st.Effect };
  for (const key of Object.keys(st)) {
    if (key === 'Sid' && typeof st.Sid === 'string') statement.Sid = st.Sid;
    else if (key === 'Effect') statement.Effect = st.Effect;
    else if (key === 'Action' || key === 'NotAction') statement[key] = sameForm(st[key], checkedActions);
    else if (key === 'Resource' || key === 'NotResource')
      statement[key] = sameForm(st[key], checkedResources);
    else if (key === 'Condition') statement.Condition = st.Condition as Record<string, unknown>;
  }
  return statement;
}

/** The checked list as the statement wrote it: one string, or a list. */
function sameForm(written: unknown, checked: string[]): string | string[] {
  return typeof written === 'string' ? checked[0] : checked;
}

/**
 * The `allow: '*'` rule: `*` alone means no session policy, every permission the role has,
 * said out loud; with another `allow` line, inline JSON or a managed policy it is refused
 * (nothing can narrow it). True when `*` was given, alone.
 */
export function unscopedChosen(
  given: { inline?: string; allow?: { line: number; text: string }[]; managed?: string[] },
  action: string,
  names: PolicyInputNames,
): boolean {
  const allow = given.allow ?? [];
  const star = allow.find((l) => l.text === '*');
  if (!star) return false;
  const other = [
    allow.length > 1 && `another ${names.allow} line`,
    given.inline?.trim() && names.inline,
    given.managed?.length && names.managed,
  ].find((o): o is string => typeof o === 'string' && o !== '');
  if (other) {
    fail(
      action,
      names.allow,
      `line ${star.line} is "*" and ${other} is given too`,
      `"*" alone means no session policy: the credentials carry every permission the role has, so nothing can narrow it`,
      `remove the "*" line to keep the session policy, or remove the rest to hand over the role unscoped`,
    );
  }
  return true;
}
