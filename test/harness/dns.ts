/** DNS wire pieces for the egress tests: a name in labels, and a resource record. */

/** `n` as length-prefixed labels ending in the root label (no compression). */
export function name(n: string): Buffer {
  return Buffer.concat([
    ...n.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])),
    Buffer.from([0]),
  ]);
}

/** A standard query (recursion desired) with one question of type A, class IN. */
export function query(n: string, id: number): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(0x0100, 2);
  h.writeUInt16BE(1, 4);
  return Buffer.concat([h, name(n), Buffer.from([0, 1, 0, 1])]);
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
