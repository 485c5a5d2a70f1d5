/**
 * The endpoints Cordon's own steps need behind the fence: STS, Secrets Manager and SSM in
 * each region the job uses, the AWS endpoints it overrides, and GitHub's ID-token service.
 * They go on the runner identity's list only (Cordon's steps run as the runner user, root
 * or the broker), never on the agent's: an agent with its own uid reaches them only when
 * `allowed-domains` lists them.
 */
import { isIP } from 'node:net';
import type { Env } from '../platform/runner.js';
import { splitEntries, parseDomain, type DomainPattern } from './policy.js';
import { CordonError } from '../platform/errors.js';

/** A region name: `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`. */
const REGION = /^[a-z]{2}(-[a-z]+){1,2}-\d{1,2}$/;

/** The variables that override an AWS endpoint for the SDK clients Cordon uses. */
const ENDPOINT_VARIABLES = [
  'AWS_ENDPOINT_URL',
  'AWS_ENDPOINT_URL_STS',
  'AWS_ENDPOINT_URL_SECRETS_MANAGER',
  'AWS_ENDPOINT_URL_SSM',
];

export interface OwnEndpoint {
  entry: string;
  why: string;
}

/** Parses the egress input `aws-regions`; each entry must look like a region name. */
export function parseRegions(text: string): string[] {
  const out = new Set<string>();
  for (const r of splitEntries(text, { input: 'aws-regions' })) {
    if (!REGION.test(r)) {
      throw new CordonError({
        what: `egress: aws-regions entry "${r.slice(0, 40)}" is not a region name`,
        why: 'Cordon opens STS, Secrets Manager and SSM of each listed region to its own steps',
        fix: 'write region names such as `us-east-1`, one a line',
        input: 'aws-regions',
      });
    }
    out.add(r);
  }
  return [...out];
}

/** A URL's host when it is a name (an address belongs in `allowed-ips`); undefined otherwise. */
function hostOf(url: string | undefined): string | undefined {
  if (!url) return undefined;
  try {
    const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
    return /^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/i.test(host) && isIP(host) === 0 ? host.toLowerCase() : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Cordon's own endpoints for `regions` (the input, then AWS_REGION and AWS_DEFAULT_REGION
 * of the egress step's environment), each with why it is there.
 */
export function ownEndpoints(regions: string[], env: Env): OwnEndpoint[] {
  const all = new Set(regions);
  for (const v of [env.AWS_REGION, env.AWS_DEFAULT_REGION]) {
    if (v && REGION.test(v.trim())) all.add(v.trim());
  }
  const out = new Map<string, string>();
  for (const r of all) {
    const suffix = r.startsWith('cn-') ? 'amazonaws.com.cn' : 'amazonaws.com';
    out.set(`sts.${r}.${suffix}`, `STS in ${r}: aws and run's broker exchange the OIDC token there`);
    out.set(
      `secretsmanager.${r}.${suffix}`,
      `Secrets Manager in ${r}: secrets and run fetch aws-sm: secrets`,
    );
    out.set(`ssm.${r}.${suffix}`, `SSM in ${r}: secrets and run fetch aws-ssm: parameters`);
  }
  for (const name of ENDPOINT_VARIABLES) {
    const host = hostOf(env[name]);
    if (host) out.set(host, `${name}: the endpoint the AWS clients are pointed at`);
  }
  const idHost = hostOf(env.ACTIONS_ID_TOKEN_REQUEST_URL);
  if (idHost) out.set(idHost, "ACTIONS_ID_TOKEN_REQUEST_URL: GitHub's OIDC token service");
  return [...out].map(([entry, why]) => ({ entry, why }));
}

export function ownDomains(endpoints: OwnEndpoint[]): DomainPattern[] {
  return endpoints.map((e) => parseDomain(e.entry));
}
