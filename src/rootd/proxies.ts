/**
 * The daemon's DNS proxies: the runner's and the agent's, each filling its own pair of
 * sets, and the warm-up's throwaway one (fence/warmup.ts). One builder makes all three, so
 * the warm-up runs the very code, and objects of the very shapes, the first lookups will.
 */
import { networkInterfaces } from 'node:os';
import { AnsweredNames } from '../fence/answered.js';
import { InwardFilter } from '../fence/inward.js';
import { AllowSets, type NftShell } from '../fence/nftshell.js';
import { DomainMatcher } from '../fence/policy.js';
import { DnsProxy } from '../fence/proxy.js';
import type { SourceAsk } from '../fence/refusals.js';
import { NO_SETS, WARM_DOMAINS } from '../fence/warmup.js';
import type { Listeners } from './listeners.js';
import type { DaemonConfig } from './protocol.js';

type Upstream = { address: string; port: number };

export interface Proxies {
  sets: AllowSets;
  proxy: DnsProxy;
  agentSets: AllowSets;
  agentProxy: DnsProxy;
  /** Which addresses the agent's proxy answered for which name, for its web gate. */
  answered: AnsweredNames;
}

/** Builds a proxy as the daemon's are built; `warm` one for the warm-up (its sets write nothing). */
export interface ProxyBuilder {
  build(
    domains: DaemonConfig['domains'],
    upstream: Upstream,
    sink: AllowSets,
    onRefused: SourceAsk,
    names: AnsweredNames | undefined,
  ): DnsProxy;
  warm(upstream: Upstream): DnsProxy;
}

export function proxyBuilder(cfg: DaemonConfig, log: (line: string) => void): ProxyBuilder {
  // The answer cache is on; `CORDON_EGRESS_DNS_CACHE=off` in the daemon's environment
  // (a root start only: sudo drops it) turns it off, for the benchmark's comparison.
  const cache = process.env.CORDON_EGRESS_DNS_CACHE === 'off' ? false : undefined;
  // One filter for every proxy; the runner's addresses as they are now (an interface
  // made later, a container bridge, is not known to it).
  const inward = new InwardFilter({
    own: Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((a) => a.address)),
    allowed: cfg.ips,
    privateAnswers: cfg.privateAnswers,
  });
  const build: ProxyBuilder['build'] = (domains, upstream, sink, onRefused, names) =>
    new DnsProxy({
      matcher: new DomainMatcher(domains),
      policy: cfg.policy,
      upstream,
      sink,
      log,
      cache,
      inward,
      onRefused,
      onAnswer: names ? (name, v4, v6, age) => names.record(name, v4, v6, age) : undefined,
    });
  const warm = (up: Upstream): DnsProxy =>
    build(
      WARM_DOMAINS,
      up,
      new AllowSets(NO_SETS, cfg.minTtl),
      () => undefined,
      new AnsweredNames(cfg.minTtl),
    );
  return { build, warm };
}

/** The runner's proxy and the agent's, serving the listeners, each filling its own sets. */
export function buildProxies(
  cfg: DaemonConfig,
  o: { builder: ProxyBuilder; shell: NftShell; upstream: string; listeners: Listeners; ask: SourceAsk },
): Proxies {
  const build = o.builder.build;
  const upstream = { address: o.upstream, port: 53 };
  const l = o.listeners;
  const sets = new AllowSets(o.shell, cfg.minTtl);
  const proxy = build(cfg.domains, upstream, sets, o.ask, undefined);
  for (const s of [l.udp4, l.udp6]) if (s) proxy.serveUdp(s);
  for (const s of [l.tcp4, l.tcp6]) if (s) proxy.serveTcp(s);
  const agentSets = new AllowSets(o.shell, cfg.minTtl, Date.now, ['agent4', 'agent6']);
  const answered = new AnsweredNames(cfg.minTtl);
  const agentProxy = build(cfg.agentDomains, upstream, agentSets, o.ask, answered);
  for (const s of l.agent.udp) agentProxy.serveUdp(s);
  for (const s of l.agent.tcp) agentProxy.serveTcp(s);
  return { sets, proxy, agentSets, agentProxy, answered };
}
