/** DNS wire pieces for the egress tests: a name in labels, and a resource record. */

/** `n` as length-prefixed labels ending in the root label (no compression). */
export function name(n: string): Buffer {
  return Buffer.concat([
    ...n.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])),
    Buffer.from([0]),
  ]);
}

/** A resource record of class IN: owner, type, TTL, then its data. */
export function rr(owner: Buffer, type: number, ttl: number, data: Buffer): Buffer {
  const f = Buffer.alloc(10);
  f.writeUInt16BE(type, 0);
  f.writeUInt16BE(1, 2);
  f.writeUInt32BE(ttl, 4);
  f.writeUInt16BE(data.length, 8);
  return Buffer.concat([owner, f, data]);
}
