/**
 * Which addresses a proxy answered for which name, until when: the agent's web gate
 * (webgate.ts) lets a connection asking for a name through only to an address answered
 * for that very name. An address lives as long as the sets keep it (max(TTL - age,
 * min-ttl)); the sets themselves add a margin on top, so an address here is always in a set.
 */
import { canonicalAddress } from './ip.js';

/** Names kept at most (the least recently answered goes first), and addresses per name. */
export const MAX_NAMES = 20000;
export const MAX_ADDRESSES_PER_NAME = 64;

type Answer = readonly { address: string; ttl: number }[];

export class AnsweredNames {
  /** name -> canonical address -> epoch ms it runs out; least recently answered name first. */
  private readonly names = new Map<string, Map<string, number>>();

  constructor(
    private readonly minTtl: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Notes an answer to `name` (lower case, no trailing dot) that a client is being sent. */
  record(name: string, v4: Answer, v6: Answer, ageSeconds = 0): void {
    if (!v4.length && !v6.length) return;
    const now = this.now();
    let addresses = this.names.get(name);
    if (addresses) this.names.delete(name);
    else {
      if (this.names.size >= MAX_NAMES) this.names.delete(this.names.keys().next().value as string);
      addresses = new Map();
    }
    this.names.set(name, addresses);
    for (const [address, until] of addresses) if (until <= now) addresses.delete(address);
    for (const { address, ttl } of [...v4, ...v6]) {
      const key = canonicalAddress(address);
      const until = now + Math.max(ttl - ageSeconds, this.minTtl) * 1000;
      if (!addresses.has(key) && addresses.size >= MAX_ADDRESSES_PER_NAME) continue;
      addresses.set(key, Math.max(until, addresses.get(key) ?? 0));
    }
  }

  /** Whether `address` was answered for `name` and has not run out. */
  answered(name: string, address: string): boolean {
    const until = this.names.get(name)?.get(canonicalAddress(address));
    return until !== undefined && until > this.now();
  }
}
