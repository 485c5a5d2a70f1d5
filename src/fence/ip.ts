/**
 * One text form per address, so an address read from a DNS answer, from `/proc/net`, from
 * an `allowed-ips` entry or from nft's own output compares equal as a string: IPv4 dotted
 * decimal, IPv6 per RFC 5952 (lower-case hex, no leading zeros, the longest run of two or
 * more zero groups as `::`, the first one on a tie), which is also how nft prints them.
 */
import { isIP } from 'node:net';

/** The 4 or 16 bytes of an address that `isIP` accepted (IPv6 may end in dotted IPv4). */
export function addressBytes(addr: string): Uint8Array {
  if (isIP(addr) === 4) return Uint8Array.from(addr.split('.').map(Number));
  let s = addr;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  const tail: number[] = [];
  if (v4) {
    tail.push(...v4[1].split('.').map(Number));
    s = s.slice(0, -v4[1].length) + '0:0';
  }
  const [head, rest] = s.split('::');
  const h = head ? head.split(':') : [];
  const r = rest !== undefined ? (rest ? rest.split(':') : []) : [];
  const groups = rest !== undefined ? [...h, ...Array(8 - h.length - r.length).fill('0'), ...r] : h;
  const out = new Uint8Array(16);
  groups.forEach((g: string, i: number) => {
    const n = parseInt(g, 16);
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 0xff;
  });
  if (v4) out.set(tail, 12);
  return out;
}

/** The canonical text of 4 or 16 address bytes. */
export function formatAddress(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join('.');
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((b[i] << 8) | b[i + 1]);
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (bestAt < 0) return hex.join(':');
  return `${hex.slice(0, bestAt).join(':')}::${hex.slice(bestAt + bestLen).join(':')}`;
}

/** The canonical text of an address that `isIP` accepted. */
export function canonicalAddress(addr: string): string {
  return formatAddress(addressBytes(addr));
}

/**
 * What an address points at when it is not the public internet: the host itself
 * (`loopback`, `unspecified`), its link (`link-local`, `multicast`, `broadcast`), a cloud's
 * metadata or host service (`metadata`), a private network (`private`), or one of the
 * runner's own interface addresses (`own`, known only to the proxy's filter).
 */
export type AddressKind =
  'loopback' | 'unspecified' | 'link-local' | 'multicast' | 'broadcast' | 'metadata' | 'private' | 'own';

/**
 * The kind of the IPv4 address in `b[at..at+4]`; undefined for any other address. Reads
 * the bytes where they are (the DNS answer), so the proxy classifies without parsing text.
 */
export function kindV4(b: Uint8Array, at = 0): AddressKind | undefined {
  const a0 = b[at];
  const a1 = b[at + 1];
  if (a0 === 127) return 'loopback';
  // 0.0.0.0/8 "this network": Linux connects 0.0.0.0 to the host itself.
  if (a0 === 0) return 'unspecified';
  if (a0 === 169 && a1 === 254) {
    const a2 = b[at + 2];
    const a3 = b[at + 3];
    // AWS, GCP, Azure IMDS and OCI; ECS task metadata.
    if ((a2 === 169 && a3 === 254) || (a2 === 170 && a3 === 2)) return 'metadata';
    return 'link-local';
  }
  if (a0 >= 224) {
    if (a0 < 240) return 'multicast';
    if (a0 === 255 && a1 === 255 && b[at + 2] === 255 && b[at + 3] === 255) return 'broadcast';
    return undefined;
  }
  // Alibaba Cloud's metadata service; Azure's wireserver (host agent, health probes, DNS).
  if (a0 === 100 && a1 === 100 && b[at + 2] === 100 && b[at + 3] === 200) return 'metadata';
  if (a0 === 168 && a1 === 63 && b[at + 2] === 129 && b[at + 3] === 16) return 'metadata';
  if (a0 === 10) return 'private';
  if (a0 === 172 && (a1 & 0xf0) === 16) return 'private';
  if (a0 === 192 && a1 === 168) return 'private';
  // 100.64.0.0/10, carrier-grade NAT (and Tailscale).
  if (a0 === 100 && (a1 & 0xc0) === 64) return 'private';
  return undefined;
}

/** AWS's IPv6 metadata service, fd00:ec2::254. */
const EC2_V6 = [0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54];

/** The kind of the IPv6 address in `b[at..at+16]` (an IPv4-mapped one as its IPv4 address). */
export function kindV6(b: Uint8Array, at = 0): AddressKind | undefined {
  const b0 = b[at];
  if (b0 === 0xff) return 'multicast';
  if (b0 === 0xfe && (b[at + 1] & 0xc0) === 0x80) return 'link-local';
  if ((b0 & 0xfe) === 0xfc) {
    for (let i = 0; i < 16 && b[at + i] === EC2_V6[i]; i++) if (i === 15) return 'metadata';
    return 'private';
  }
  if (b0 !== 0) return undefined;
  let zeros = 1;
  while (zeros < 10 && b[at + zeros] === 0) zeros++;
  if (zeros < 10) return undefined;
  const w = (b[at + 10] << 8) | b[at + 11];
  if (w === 0xffff) return kindV4(b, at + 12);
  if (w !== 0 || b[at + 12] || b[at + 13] || b[at + 14]) return undefined;
  const last = b[at + 15];
  return last === 0 ? 'unspecified' : last === 1 ? 'loopback' : undefined;
}

/** The kind of an address `isIP` accepted (for anything but the hot path). */
export function addressKind(addr: string): AddressKind | undefined {
  const b = addressBytes(addr);
  return b.length === 4 ? kindV4(b) : kindV6(b);
}
