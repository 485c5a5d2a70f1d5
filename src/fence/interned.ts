/**
 * Strings the DNS proxy makes on every query, made once and handed out again: a question
 * name asked before (from its bytes) and an IPv4 address answered before. The same string
 * object each time spares the proxy building it, and every Set and Map it goes into
 * (matcher, name table, the address sets' expiry) hashes it once: V8 keeps a string's
 * hash in the string. Each table is direct-mapped and small, so it is bounded and a name
 * never seen again costs one slot that the next name with its hash takes over; a hit is
 * decided on the full bytes, never on the hash alone.
 */

const NAME_SLOTS = 512;
/** Names up to this long are kept (longer ones are made every time). */
const NAME_BYTES = 64;
const nameBytes = Buffer.alloc(NAME_SLOTS * NAME_BYTES);
const nameLen = new Uint8Array(NAME_SLOTS);
const names: (string | undefined)[] = new Array<string | undefined>(NAME_SLOTS).fill(undefined);

/**
 * The string of `len` bytes of `from` (latin1) whose FNV-1a hash is `hash`: the one made
 * for the same bytes before when its slot still holds it.
 */
export function internName(from: Buffer, len: number, hash: number): string {
  if (len > NAME_BYTES) return from.toString('latin1', 0, len);
  const slot = (hash >>> 0) % NAME_SLOTS;
  const at = slot * NAME_BYTES;
  const held = names[slot];
  if (held !== undefined && nameLen[slot] === len) {
    let i = 0;
    while (i < len && nameBytes[at + i] === from[i]) i++;
    if (i === len) return held;
  }
  const s = from.toString('latin1', 0, len);
  from.copy(nameBytes, at, 0, len);
  nameLen[slot] = len;
  names[slot] = s;
  return s;
}

/** FNV-1a: the start value and one step (`Math.imul` keeps it in 32 bits). */
export const FNV_START = 0x811c9dc5;
export function fnvStep(h: number, byte: number): number {
  return Math.imul(h ^ byte, 0x01000193);
}

const V4_SLOTS = 1024;
const v4Keys = new Int32Array(V4_SLOTS);
const v4Texts: (string | undefined)[] = new Array<string | undefined>(V4_SLOTS).fill(undefined);

/** The dotted text of the IPv4 address at `at`. */
export function v4Text(buf: Buffer, at: number): string {
  const key = buf.readInt32BE(at);
  const slot = (Math.imul(key, 0x9e3779b1) >>> 22) % V4_SLOTS;
  const held = v4Texts[slot];
  if (held !== undefined && v4Keys[slot] === key) return held;
  const s = `${buf[at]}.${buf[at + 1]}.${buf[at + 2]}.${buf[at + 3]}`;
  v4Keys[slot] = key;
  v4Texts[slot] = s;
  return s;
}
