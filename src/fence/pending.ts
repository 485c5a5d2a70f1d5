/**
 * Queries forwarded to the upstream and waiting for its answer, by the id we sent. A slot
 * per possible id (an array, not a Map: no hashing and no table growing or shrinking as
 * queries come and go) and one sweeper a second for those never answered, not a timer per
 * query.
 */
import type dgram from 'node:dgram';
import { randomFillSync } from 'node:crypto';
import type { NameStats } from './proxy-stats.js';

/** Where an answer goes back: a TCP client's framed write, or a UDP server socket and the client's port and address. */
export interface ReplyTo {
  reply: ((b: Buffer) => void) | undefined;
  sock: dgram.Socket | undefined;
  port: number;
  address: string;
}

/** One forwarded query: where its answer goes and what it must repeat. */
export class Pending implements ReplyTo {
  constructor(
    readonly reply: ((b: Buffer) => void) | undefined,
    readonly sock: dgram.Socket | undefined,
    readonly port: number,
    readonly address: string,
    readonly origId: number,
    /** The query as sent (our id), kept for the answer's question check (sameQuestion). */
    readonly query: Buffer,
    /** Offset just past its question. */
    readonly questionEnd: number,
    readonly name: string,
    readonly stats: NameStats | undefined,
    /** Where the answer goes in the cache (names on the list only). */
    readonly key: string | undefined,
    readonly at: number,
  ) {}
}

/** Upstream query ids come from a pool of random bytes refilled 32 KiB at a time (not a syscall per query). */
export class IdPool {
  private readonly buf = Buffer.allocUnsafe(32768);
  private at = this.buf.length;

  next(): number {
    if (this.at >= this.buf.length) {
      randomFillSync(this.buf);
      this.at = 0;
    }
    const id = this.buf.readUInt16BE(this.at);
    this.at += 2;
    return id;
  }
}

export class PendingTable {
  private readonly slots: (Pending | undefined)[] = new Array<Pending | undefined>(65536).fill(undefined);
  size = 0;

  constructor(
    /** Waiting at most this many at once (fewer than 65536, so a free id always exists). */
    private readonly max: number,
    private readonly ids: IdPool,
  ) {}

  get full(): boolean {
    return this.size >= this.max;
  }

  /** A free random id for a new query (call only when not `full`). */
  freeId(): number {
    let id = this.ids.next();
    for (let i = 0; this.slots[id] !== undefined && i < 65536; i++) id = (id + 1) & 0xffff;
    return id;
  }

  set(id: number, p: Pending): void {
    if (this.slots[id] === undefined) this.size++;
    this.slots[id] = p;
  }

  get(id: number): Pending | undefined {
    return this.slots[id];
  }

  delete(id: number): void {
    if (this.slots[id] === undefined) return;
    this.slots[id] = undefined;
    this.size--;
  }

  /** Drops queries asked before `before` (epoch ms); how many. */
  sweep(before: number): number {
    let dropped = 0;
    for (let id = 0; id < 65536 && this.size > 0; id++) {
      const p = this.slots[id];
      if (p !== undefined && p.at < before) {
        this.delete(id);
        dropped++;
      }
    }
    return dropped;
  }
}
