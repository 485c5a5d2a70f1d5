/**
 * Answers that point inward. Whoever answers for an allowed name chooses its addresses, so
 * an allowed name (a wildcard's, or one the agent's owner controls) can answer with the
 * cloud's metadata service, loopback, the link, or the runner's own addresses, and the
 * fence would open them. The proxy asks this filter before any address goes into a set:
 * an answer with such an address is refused whole (see proxy.ts), and recorded.
 *
 * The kind of each address is read from its bytes when the answer is parsed (ip.ts); this
 * adds only the runner's own addresses (a string lookup) and, for the rare address that is
 * flagged, whether `allowed-ips` names it (then it is not inward: it is reachable anyway).
 */
import { addressBytes, canonicalAddress, type AddressKind } from './ip.js';
import type { Cidr } from './policy.js';

export interface InwardOptions {
  /** The runner's own interface addresses, as read at the daemon's start. */
  own: Iterable<string>;
  /** `allowed-ips`: an address inside one of them is never inward. */
  allowed: readonly Cidr[];
  /** `refuse`: private ranges (RFC 1918, ULA, 100.64.0.0/10) are inward too. */
  privateAnswers: 'allow' | 'refuse';
}

export interface InwardAddress {
  address: string;
  kind: AddressKind;
}

interface Net {
  bytes: Uint8Array;
  prefix: number;
}

function inside(b: Uint8Array, n: Net): boolean {
  if (b.length !== n.bytes.length) return false;
  const whole = n.prefix >> 3;
  for (let i = 0; i < whole; i++) if (b[i] !== n.bytes[i]) return false;
  const rest = n.prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (b[whole] & mask) === (n.bytes[whole] & mask);
}

export class InwardFilter {
  private readonly own: Set<string>;
  private readonly allowed: Net[];
  private readonly refusePrivate: boolean;

  constructor(o: InwardOptions) {
    this.own = new Set([...o.own].map(canonicalAddress));
    this.allowed = o.allowed.map((c) => ({ bytes: addressBytes(c.address), prefix: c.prefix }));
    this.refusePrivate = o.privateAnswers === 'refuse';
  }

  /** The addresses of an answer that point inward; undefined when none do (the usual case). */
  check(ans: {
    v4: readonly { address: string; kind: AddressKind | undefined }[];
    v6: readonly { address: string; kind: AddressKind | undefined }[];
  }): InwardAddress[] | undefined {
    let out: InwardAddress[] | undefined;
    for (const list of [ans.v4, ans.v6]) {
      for (let i = 0; i < list.length; i++) {
        const kind = this.kindOf(list[i].address, list[i].kind);
        if (kind === undefined || this.isAllowed(list[i].address)) continue;
        (out ??= []).push({ address: list[i].address, kind });
      }
    }
    return out;
  }

  /** The kind that makes `address` inward here, or undefined. */
  private kindOf(address: string, kind: AddressKind | undefined): AddressKind | undefined {
    if (kind !== undefined && kind !== 'private') return kind;
    if (this.own.has(address)) return 'own';
    return kind === 'private' && this.refusePrivate ? 'private' : undefined;
  }

  private isAllowed(address: string): boolean {
    if (!this.allowed.length) return false;
    const b = addressBytes(address);
    return this.allowed.some((n) => inside(b, n));
  }
}
