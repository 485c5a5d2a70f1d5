/**
 * The proxy's answer cache, for names on the list only. An entry is the upstream's answer
 * as it was accepted (right source, id and question), served again with its TTLs counted
 * down, the client's id and the client's spelling of the question, and only while every
 * TTL in it is still above zero. Whether its addresses are still in the kernel's sets is
 * the proxy's check (the same `ensure` an upstream answer goes through), not the cache's.
 *
 * Not cached: anything but NOERROR and NXDOMAIN (SERVFAIL, REFUSED...), truncated
 * answers, answers with no TTL to count down (a NODATA without an SOA), TTLs of 0, and
 * queries whose answer may depend on more than the key: EDNS options such as cookies,
 * anything in the additional section but one plain OPT record.
 */
import type { AnswerAddresses, Question } from './dnswire.js';

const TYPE_SOA = 6;
const TYPE_OPT = 41;
const FLAG_TC = 0x0200;

export interface CachedAnswer {
  readonly key: string;
  /** The answer as received, id and question as the first asker had them. */
  readonly msg: Buffer;
  /** Offsets of every TTL field (the OPT record's is not a TTL) and their values as received. */
  readonly ttlAt: Uint32Array;
  readonly ttls: Uint32Array;
  /** Offset just past the question (its type and class). */
  readonly questionEnd: number;
  /** Epoch ms when stored and when the smallest TTL runs out (what the entry may live). */
  readonly storedAt: number;
  readonly expiresAt: number;
  /** The addresses the answer carries, with their TTLs as received. */
  readonly v4: readonly { address: string; ttl: number }[];
  readonly v6: readonly { address: string; ttl: number }[];
}

export interface CacheHit {
  entry: CachedAnswer;
  /** Whole seconds since the entry was stored: every TTL is served that much smaller. */
  age: number;
}

export interface AnswerCacheOptions {
  /** Entries kept at most; the oldest stored goes first. Default 10000. */
  maxEntries?: number;
  /** Bytes of answers kept at most. Default 16 MiB. */
  maxBytes?: number;
  /** An entry lives at most this long even when its TTLs are longer. Default 3600 s. */
  maxTtl?: number;
  now?: () => number;
}

/**
 * The cache key of a query, or undefined when its answer must not come from the cache:
 * lower-case name, type, class, the RD/AD/CD bits, the transport (a TCP answer may be
 * larger than a UDP client takes) and, for EDNS, the payload size, version and DO bit.
 */
export function cacheKey(query: Buffer, q: Question, tcp: boolean): string | undefined {
  const flags = query.readUInt16BE(2) & 0x0130;
  const ar = query.readUInt16BE(10);
  let edns = '';
  if (ar !== 0) {
    // One OPT record, root owner, no options, nothing after it.
    const at = q.end;
    if (ar !== 1 || query.length !== at + 11 || query[at] !== 0) return undefined;
    if (query.readUInt16BE(at + 1) !== TYPE_OPT || query.readUInt16BE(at + 9) !== 0) return undefined;
    const size = query.readUInt16BE(at + 3);
    const version = query[at + 6];
    const flagsDo = query.readUInt16BE(at + 7) & 0x8000;
    edns = `|${size}/${version}/${flagsDo ? 1 : 0}`;
  } else if (query.length !== q.end) return undefined;
  return `${q.name}|${q.qtype}|${q.qclass}|${flags}|${tcp ? 't' : 'u'}${edns}`;
}

/** Skips a (possibly compressed) name; the offset after it, or -1. */
function skipName(buf: Buffer, at: number): number {
  for (let i = 0; i < 128; i++) {
    if (at >= buf.length) return -1;
    const len = buf[at];
    if (len === 0) return at + 1;
    if ((len & 0xc0) === 0xc0) return at + 2 <= buf.length ? at + 2 : -1;
    if (len & 0xc0) return -1;
    at += 1 + len;
  }
  return -1;
}

/** The TTL fields of an answer, or undefined when it has none or is malformed. */
export function ttlFields(
  msg: Buffer,
): { at: number[]; ttls: number[]; min: number; questionEnd: number } | undefined {
  if (msg.length < 12 || msg.readUInt16BE(4) !== 1) return undefined;
  const count = msg.readUInt16BE(6) + msg.readUInt16BE(8) + msg.readUInt16BE(10);
  // The one question, its name written out (no pointer), as a query's is.
  let p = 12;
  for (let i = 0; i < 128 && p < msg.length && msg[p] !== 0; i++) {
    if (msg[p] > 63) return undefined;
    p += 1 + msg[p];
  }
  if (p >= msg.length || msg[p] !== 0 || p + 5 > msg.length) return undefined;
  p += 5;
  const questionEnd = p;
  const at: number[] = [];
  const ttls: number[] = [];
  let min = Infinity;
  for (let i = 0; i < count; i++) {
    p = skipName(msg, p);
    if (p < 0 || p + 10 > msg.length) return undefined;
    const type = msg.readUInt16BE(p);
    const ttl = msg.readUInt32BE(p + 4);
    const rdlen = msg.readUInt16BE(p + 8);
    const rdata = p + 10;
    if (rdata + rdlen > msg.length) return undefined;
    if (type !== TYPE_OPT) {
      if (ttl > 0x7fffffff) return undefined;
      at.push(p + 4);
      ttls.push(ttl);
      min = Math.min(min, ttl);
      if (type === TYPE_SOA) {
        // A negative answer lives no longer than the SOA's MINIMUM (RFC 2308).
        const r = skipName(msg, skipName(msg, rdata));
        if (r < 0 || r + 20 > rdata + rdlen) return undefined;
        min = Math.min(min, msg.readUInt32BE(r + 16));
      }
    }
    p = rdata + rdlen;
  }
  if (!at.length) return undefined;
  return { at, ttls, min, questionEnd };
}

export class AnswerCache {
  private readonly entries = new Map<string, CachedAnswer>();
  private bytes = 0;
  private readonly maxEntries: number;
  private readonly maxBytes: number;
  private readonly maxTtl: number;
  private readonly now: () => number;
  hits = 0;
  stored = 0;

  constructor(o: AnswerCacheOptions = {}) {
    this.maxEntries = o.maxEntries ?? 10000;
    this.maxBytes = o.maxBytes ?? 16 << 20;
    this.maxTtl = o.maxTtl ?? 3600;
    this.now = o.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  /** A live entry for `key` (an expired one is dropped), with its age in whole seconds. */
  get(key: string): CacheHit | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    const now = this.now();
    if (now >= entry.expiresAt) {
      this.drop(entry);
      return undefined;
    }
    this.hits++;
    return { entry, age: Math.floor((now - entry.storedAt) / 1000) };
  }

  /** Stores an accepted answer if it may be cached; true when stored. */
  put(key: string, msg: Buffer, ans: AnswerAddresses): boolean {
    if (msg.length > 65535 || msg.readUInt16BE(2) & FLAG_TC) return false;
    if (ans.rcode !== 0 && ans.rcode !== 3) return false;
    const f = ttlFields(msg);
    if (!f || f.min <= 0) return false;
    if (msg.length > this.maxBytes) return false;
    const old = this.entries.get(key);
    if (old) this.drop(old);
    while (this.entries.size >= this.maxEntries || this.bytes + msg.length > this.maxBytes) {
      const first = this.entries.values().next().value as CachedAnswer | undefined;
      if (!first) break;
      this.drop(first);
    }
    const now = this.now();
    const entry: CachedAnswer = {
      key,
      msg: Buffer.from(msg),
      ttlAt: Uint32Array.from(f.at),
      ttls: Uint32Array.from(f.ttls),
      questionEnd: f.questionEnd,
      storedAt: now,
      expiresAt: now + Math.min(f.min, this.maxTtl) * 1000,
      v4: ans.v4,
      v6: ans.v6,
    };
    this.entries.set(key, entry);
    this.bytes += entry.msg.length;
    this.stored++;
    return true;
  }

  private drop(entry: CachedAnswer): void {
    if (this.entries.get(entry.key) !== entry) return;
    this.entries.delete(entry.key);
    this.bytes -= entry.msg.length;
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }
}

/**
 * The cached answer as this client gets it: its id, its question bytes (same name in its
 * own letter case), every TTL `age` seconds smaller. A new buffer: the entry stays as is.
 * Undefined when the query's question is not the same length (it always is for the same
 * lower-case name, type and class; this only guards the copy).
 */
export function serveCached(hit: CacheHit, query: Buffer, questionEnd: number): Buffer | undefined {
  const { entry, age } = hit;
  if (questionEnd !== entry.questionEnd) return undefined;
  const out = Buffer.allocUnsafe(entry.msg.length);
  entry.msg.copy(out);
  query.copy(out, 0, 0, 2);
  query.copy(out, 12, 12, questionEnd);
  for (let i = 0; i < entry.ttlAt.length; i++) out.writeUInt32BE(entry.ttls[i] - age, entry.ttlAt[i]);
  return out;
}
