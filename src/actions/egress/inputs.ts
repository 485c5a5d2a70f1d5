import { isIP } from 'node:net';
import { Inputs } from '../../platform/inputs.js';
import type { Env } from '../../platform/runner.js';
import {
  parseCidrs,
  parseDomains,
  presetDomains,
  splitEntries,
  type Cidr,
  type DomainPattern,
  type PresetName,
} from '../../fence/policy.js';
import { ownEndpoints, parseRegions, type OwnEndpoint } from '../../fence/own.js';

export interface EgressSettings {
  policy: 'block' | 'audit';
  /** The user's entries (the preset's are in `presetDomains`). */
  domains: DomainPattern[];
  presetDomains: DomainPattern[];
  /** Cordon's own endpoints (STS, Secrets Manager, SSM, the ID-token service): the runner's, never the agent's. */
  own: OwnEndpoint[];
  ips: Cidr[];
  /** `refuse`: answers with private addresses are refused like those pointing at the runner. */
  privateAnswers: 'allow' | 'refuse';
  preset: PresetName;
  disableSudo: boolean;
  disableDocker: boolean;
  /** Undefined: the host's current resolver. */
  dnsUpstream?: string;
  minTtl: number;
  failOnBlocked: boolean;
  /** Fail post when the fence was tampered with (always recorded). */
  failOnTamper: boolean;
  /** Post removes the fence and restores resolv.conf and sudo (for self-hosted runners that outlive the job). */
  teardown: boolean;
}

export function parseEgressInputs(env: Env): EgressSettings {
  const i = new Inputs('egress', env);
  const preset = i.enumeration('preset', ['github-hosted', 'none'] as const, 'github-hosted');
  const upstream = i.string('dns-upstream');
  if (upstream) {
    const list = splitEntries(upstream, { input: 'dns-upstream' });
    if (list.length !== 1 || isIP(list[0]) === 0) {
      i.fail(
        'dns-upstream',
        upstream,
        'expected one IPv4 or IPv6 address (port 53 is used)',
        'write e.g. `dns-upstream: 192.0.2.53`',
      );
    }
  }
  return {
    policy: i.enumeration('egress-policy', ['block', 'audit'] as const, 'block'),
    domains: parseDomains(i.multiline('allowed-domains')),
    presetDomains: presetDomains(preset),
    own: ownEndpoints(parseRegions(i.multiline('aws-regions')), env),
    ips: parseCidrs(i.multiline('allowed-ips')),
    privateAnswers: i.enumeration('private-answers', ['allow', 'refuse'] as const, 'allow'),
    preset,
    disableSudo: i.boolean('disable-sudo', false),
    disableDocker: i.boolean('disable-docker', false),
    dnsUpstream: upstream ? splitEntries(upstream, { input: 'dns-upstream' })[0] : undefined,
    minTtl: i.integer('min-ttl', 60, { min: 1, max: 86400 }),
    failOnBlocked: i.boolean('fail-on-blocked', false),
    failOnTamper: i.boolean('fail-on-tamper', true),
    teardown: i.boolean('teardown', false),
  };
}
