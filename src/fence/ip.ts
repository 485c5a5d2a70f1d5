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
