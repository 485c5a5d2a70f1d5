/**
 * What the DNS proxy counts for the report: each name asked (allowed or not, its addresses),
 * answers that pointed inward, and the proxy's own troubles. Bounded: past `maxNames` names
 * only the count of those dropped grows.
 */
import type { InwardAddress } from './inward.js';
import type { AddressKind } from './ip.js';

export interface NameStats {
  queries: number;
  allowed: boolean;
  addresses: Set<string>;
  /** The source (refusals.ts sourceKey) that asked a refused name first. */
  source?: string;
}

/** A name whose answers pointed inward: how many, and the addresses (up to 16) with their kinds. */
export interface RebindingStats {
  answers: number;
  addresses: Map<string, AddressKind>;
}

export class ProxyStats {
  readonly names = new Map<string, NameStats>();
  /** Names answered with addresses that point inward (bounded like `names`). */
  readonly rebinding = new Map<string, RebindingStats>();
  /** Names not kept once the table is full (a flood of random names is itself a finding). */
  namesDropped = 0;
  forgedAnswers = 0;
  malformed = 0;
  upstreamTimeouts = 0;
  setFailures = 0;
  /** Answers served from the cache (each also counted in its name's queries). */
  cacheHits = 0;
  /** TCP clients closed to make room past MAX_TCP_CLIENTS (proxy.ts). */
  tcpEvicted = 0;

  constructor(private readonly maxNames = 5000) {}

  /** Counts a query of `name`; a new name is kept only while there is room and `mayAdd`. */
  query(name: string, allowed: boolean, source?: string, mayAdd = true): NameStats | undefined {
    let s = this.names.get(name);
    if (!s) {
      if (this.names.size >= this.maxNames || !mayAdd) {
        this.namesDropped++;
        return undefined;
      }
      s = { queries: 0, allowed, addresses: new Set(), ...(allowed ? {} : { source }) };
      this.names.set(name, s);
    }
    s.queries++;
    return s;
  }

  rebound(name: string, inward: readonly InwardAddress[]): void {
    let r = this.rebinding.get(name);
    if (!r) {
      if (this.rebinding.size >= this.maxNames) return;
      r = { answers: 0, addresses: new Map() };
      this.rebinding.set(name, r);
    }
    r.answers++;
    for (const a of inward) if (r.addresses.size < 16) r.addresses.set(a.address, a.kind);
  }
}
