/**
 * Just enough of the DNS wire format (RFC 1035) for the proxy: read the one question of
 * a query, build a refusal, and pull the A/AAAA addresses of an answer through its
 * CNAME chain. Everything is bounded: names at 255 bytes, pointer jumps at 32.
 */
import { formatAddress, kindV4, kindV6, type AddressKind } from './ip.js';
import { FNV_START, fnvStep, internName, v4Text } from './interned.js';

export const TYPE_A = 1;
export const TYPE_CNAME = 5;
export const TYPE_AAAA = 28;
export const TYPE_SVCB = 64;
export const TYPE_HTTPS = 65;
export const RCODE_FORMERR = 1;
export const RCODE_SERVFAIL = 2;
export const RCODE_NXDOMAIN = 3;
export const RCODE_NOTIMP = 4;
export const RCODE_REFUSED = 5;

export interface Question {
  id: number;
  /** Lower case, dot separated, no trailing dot ('' for the root). */
  name: string;
  qtype: number;
  qclass: number;
  /** Offset just past the question. */
  end: number;
}

export type QueryCheck = { ok: true; q: Question } | { ok: false; rcode: number; end: number; why: string };

/** Reads a name at `off`; returns it lower-cased and the offset after it in the original stream. */
export function readName(buf: Buffer, off: number): { name: string; end: number } | undefined {
  let at = off;
  let end = -1;
  let w = 0;
  for (let jumps = 0; jumps < 32;) {
    if (at >= buf.length) return undefined;
    const len = buf[at];
    if (len === 0) {
      if (end < 0) end = at + 1;
      return { name: nameScratch.toString('latin1', 0, w), end };
    }
    if ((len & 0xc0) === 0xc0) {
      if (at + 1 >= buf.length) return undefined;
      if (end < 0) end = at + 2;
      at = ((len & 0x3f) << 8) | buf[at + 1];
      jumps++;
      continue;
    }
    if (len & 0xc0 || at + 1 + len > buf.length || w + len + 1 > 255) return undefined;
    if (w > 0) nameScratch[w++] = 0x2e;
    for (let i = at + 1, stop = at + 1 + len; i < stop; i++) {
      const c = buf[i];
      nameScratch[w++] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
    }
    at += 1 + len;
  }
  return undefined;
}

const nameScratch = Buffer.allocUnsafe(256);
const scratch = Buffer.allocUnsafe(256);

/**
 * The question name of a query, lower-cased, in one pass and one string (the one made
 * before for a name asked again: interned.ts). No compression
 * pointers (a query has nothing to point at). `odd` when a byte is anything but a letter,
 * digit, `-`, `_` or `*`: a `.` or a control byte inside a label would make the text we
 * match differ from the name the upstream sees.
 */
function questionName(buf: Buffer, off: number): { name: string; end: number; odd: boolean } | undefined {
  let at = off;
  let w = 0;
  let odd = false;
  let hash = FNV_START;
  for (;;) {
    if (at >= buf.length) return undefined;
    const len = buf[at];
    if (len === 0) break;
    if (len > 63 || at + 1 + len > buf.length || w + len + 1 > 254) return undefined;
    if (w > 0) {
      scratch[w++] = 0x2e;
      hash = fnvStep(hash, 0x2e);
    }
    for (let i = at + 1, stop = at + 1 + len; i < stop; i++) {
      let c = buf[i];
      if (c >= 0x41 && c <= 0x5a) c |= 0x20;
      else if (!(
        (c >= 0x61 && c <= 0x7a) ||
        (c >= 0x30 && c <= 0x39) ||
        c === 0x2d ||
        c === 0x5f ||
        c === 0x2a
      ))
        odd = true;
      scratch[w++] = c;
      hash = fnvStep(hash, c);
    }
    at += 1 + len;
  }
  return { name: internName(scratch, w, hash), end: at + 1, odd };
}

/** Checks a client's query: a standard query with exactly one question and a plain name. */
export function readQuery(buf: Buffer): QueryCheck {
  if (buf.length < 12) return { ok: false, rcode: RCODE_FORMERR, end: buf.length, why: 'short packet' };
  const flags = buf.readUInt16BE(2);
  if (flags & 0x8000) return { ok: false, rcode: RCODE_FORMERR, end: 12, why: 'not a query' };
  const qd = buf.readUInt16BE(4);
  if (qd !== 1) return { ok: false, rcode: RCODE_FORMERR, end: 12, why: `${qd} questions` };
  const opcode = (flags >> 11) & 0xf;
  const n = questionName(buf, 12);
  if (!n || n.end + 4 > buf.length)
    return { ok: false, rcode: RCODE_FORMERR, end: 12, why: 'malformed question' };
  const end = n.end + 4;
  if (opcode !== 0) return { ok: false, rcode: RCODE_NOTIMP, end, why: `opcode ${opcode}` };
  if (buf.readUInt16BE(6) !== 0 || buf.readUInt16BE(8) !== 0) {
    return { ok: false, rcode: RCODE_FORMERR, end, why: 'records in a query' };
  }
  if (n.odd) return { ok: false, rcode: RCODE_REFUSED, end, why: 'unusual bytes in the name' };
  return {
    ok: true,
    q: {
      id: buf.readUInt16BE(0),
      name: n.name,
      qtype: buf.readUInt16BE(n.end),
      qclass: buf.readUInt16BE(n.end + 2),
      end,
    },
  };
}

/** A reply to `query` with `rcode` and its question only (no records). */
export function refusal(query: Buffer, end: number, rcode: number): Buffer {
  const qEnd = Math.min(end, query.length);
  const hasQuestion = qEnd > 12;
  const out = Buffer.alloc(hasQuestion ? qEnd : 12);
  if (query.length >= 2) query.copy(out, 0, 0, 2);
  const flags = query.length >= 4 ? query.readUInt16BE(2) : 0;
  // QR, the opcode and RD of the query, RA, and the rcode.
  out.writeUInt16BE(0x8000 | (flags & 0x7900) | 0x0080 | rcode, 2);
  out.writeUInt16BE(hasQuestion ? 1 : 0, 4);
  if (hasQuestion) query.copy(out, 12, 12, qEnd);
  return out;
}

/** One address of an answer, with its kind read from its bytes (undefined: a public address). */
export interface AnswerAddress {
  address: string;
  ttl: number;
  kind: AddressKind | undefined;
}

export interface AnswerAddresses {
  rcode: number;
  /** The answer's own question name (lower case). */
  name: string;
  qtype: number;
  v4: AnswerAddress[];
  v6: AnswerAddress[];
  /** Names reached through CNAMEs from the question name. */
  aliases: readonly string[];
}

/**
 * Whether `answer` repeats the question of `query` (bytes 12 to `questionEnd`, the type
 * and class included), letters compared without case: the check that an answer is to
 * the question asked, on the bytes, with no name decoded. `query` passed readQuery, so
 * its name is plain labels and a letter byte there is inside a label, never a length.
 */
export function sameQuestion(answer: Buffer, query: Buffer, questionEnd: number): boolean {
  if (answer.length < questionEnd || answer[4] !== 0 || answer[5] !== 1) return false;
  const nameEnd = questionEnd - 4;
  for (let i = 12; i < nameEnd; i++) {
    const a = answer[i];
    const b = query[i];
    if (a === b) continue;
    const lower = b | 0x20;
    if (lower < 0x61 || lower > 0x7a || (a | 0x20) !== lower) return false;
  }
  for (let i = nameEnd; i < questionEnd; i++) if (answer[i] !== query[i]) return false;
  return true;
}

/**
 * Records of the answer being read, one slot each (no object per record): a UDP or TCP
 * message is at most 65535 bytes and a record at least 11, so 6000 slots hold any.
 */
const MAX_RECORDS = 6000;
const recType = new Uint16Array(MAX_RECORDS);
const recTtl = new Uint32Array(MAX_RECORDS);
const recData = new Uint32Array(MAX_RECORDS);
const recLen = new Uint16Array(MAX_RECORDS);
/** The owner's name, or undefined when it is a pointer to the question name (the usual case). */
const recOwner: (string | undefined)[] = new Array<string | undefined>(MAX_RECORDS).fill(undefined);

/**
 * Parses an upstream answer; undefined when malformed. Only records owned by the question
 * name or its CNAME chain count. `asked`: the question, when sameQuestion already matched
 * it to the query (its name is then not decoded again).
 */
export function readAnswer(buf: Buffer, asked?: { name: string; end: number }): AnswerAddresses | undefined {
  if (buf.length < 12 || !(buf.readUInt16BE(2) & 0x8000)) return undefined;
  const rcode = buf.readUInt16BE(2) & 0xf;
  const qd = buf.readUInt16BE(4);
  const an = buf.readUInt16BE(6);
  if (qd !== 1) return undefined;
  const q = asked ?? readName(buf, 12);
  if (!q) return undefined;
  // Past the name (asked: past the whole question, type and class).
  const nameEnd = asked ? asked.end - 4 : q.end;
  if (nameEnd + 4 > buf.length) return undefined;
  const qtype = buf.readUInt16BE(nameEnd);
  let at = nameEnd + 4;
  let cnames = 0;
  let others = false;
  for (let i = 0; i < an; i++) {
    if (i >= MAX_RECORDS) return undefined;
    // Owners are nearly always a pointer to the question name: no need to decode it.
    let ownerEnd: number;
    if (buf[at] === 0xc0 && buf[at + 1] === 12) {
      recOwner[i] = undefined;
      ownerEnd = at + 2;
    } else {
      const owner = readName(buf, at);
      if (!owner) return undefined;
      ownerEnd = owner.end;
      // The question's own name spelled out counts as the question name.
      recOwner[i] = owner.name === q.name ? undefined : owner.name;
      if (recOwner[i] !== undefined) others = true;
    }
    if (ownerEnd + 10 > buf.length) return undefined;
    const type = buf.readUInt16BE(ownerEnd);
    const ttl = buf.readUInt32BE(ownerEnd + 4);
    const rdlen = buf.readUInt16BE(ownerEnd + 8);
    const rdata = ownerEnd + 10;
    if (rdata + rdlen > buf.length) return undefined;
    if (type === TYPE_CNAME) cnames++;
    recType[i] = type;
    recTtl[i] = ttl > 0x7fffffff ? 0 : ttl;
    recData[i] = rdata;
    recLen[i] = rdlen;
    at = rdata + rdlen;
  }
  // The CNAME chain from the question name, when there is one to follow.
  const chain = cnames > 0 ? [q.name] : NO_CHAIN;
  for (let round = 0; cnames > 0 && round < 16; round++) {
    let grew = false;
    for (let i = 0; i < an; i++) {
      if (recType[i] !== TYPE_CNAME || !inChain(chain, recOwner[i])) continue;
      const target = readName(buf, recData[i]);
      if (target && !chain.includes(target.name)) {
        chain.push(target.name);
        grew = true;
      }
    }
    if (!grew) break;
  }
  const aliases = chain.length > 1 ? chain.slice(1) : NO_ALIASES;
  const out: AnswerAddresses = { rcode, name: q.name, qtype, v4: [], v6: [], aliases };
  for (let i = 0; i < an; i++) {
    if (others && !inChain(chain, recOwner[i])) continue;
    const type = recType[i];
    const rdata = recData[i];
    const rdlen = recLen[i];
    if (type === TYPE_A && rdlen === 4) {
      out.v4.push({
        address: v4Text(buf, rdata),
        ttl: recTtl[i],
        kind: kindV4(buf, rdata),
      });
    } else if (type === TYPE_AAAA && rdlen === 16) {
      out.v6.push({
        address: formatAddress(buf.subarray(rdata, rdata + 16)),
        ttl: recTtl[i],
        kind: kindV6(buf, rdata),
      });
    } else if (type === TYPE_HTTPS || type === TYPE_SVCB) {
      svcbHints(buf, rdata, rdlen, recTtl[i], out);
    }
  }
  return out;
}

const NO_ALIASES: readonly string[] = Object.freeze([]);
/** Never pushed to: a chain is pushed to only when made for CNAMEs. */
const NO_CHAIN: string[] = [];

/** An owner (undefined: the question name) on the CNAME chain. */
function inChain(chain: readonly string[], owner: string | undefined): boolean {
  return owner === undefined || chain.includes(owner);
}

/**
 * `ipv4hint` (key 4) and `ipv6hint` (key 6) of an SVCB/HTTPS record (RFC 9460): clients
 * may connect to these without an A/AAAA lookup, so they are allowed like answers.
 */
function svcbHints(buf: Buffer, at: number, len: number, ttl: number, out: AnswerAddresses): void {
  const stop = at + len;
  if (len < 3) return;
  // Priority, then the target name (never compressed in SVCB).
  let p = at + 2;
  for (let i = 0; i < 128 && p < stop && buf[p] !== 0; i++) p += 1 + buf[p];
  p++;
  while (p + 4 <= stop) {
    const key = buf.readUInt16BE(p);
    const n = buf.readUInt16BE(p + 2);
    const v = p + 4;
    if (v + n > stop) return;
    if (key === 4) {
      for (let i = v; i + 4 <= v + n; i += 4)
        out.v4.push({
          address: v4Text(buf, i),
          ttl,
          kind: kindV4(buf, i),
        });
    } else if (key === 6) {
      for (let i = v; i + 16 <= v + n; i += 16)
        out.v6.push({ address: formatAddress(buf.subarray(i, i + 16)), ttl, kind: kindV6(buf, i) });
    }
    p = v + n;
  }
}
