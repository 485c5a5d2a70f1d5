/**
 * Refused queries counted by source (protocol, address and port of the client socket),
 * with no state per query: a count per second for the whole proxy (its peak is the flood
 * rate the report shows) and per source. A source past `perSourcePerSecond` refusals in
 * a second gets no answer for the rest of that second: sending the refusal is most of
 * what a refused query costs, and a client asking that many names it may not have is
 * flooding, not resolving. Who asked is looked up per source, not per name, and at most
 * `askPerSecond` times a second, so a flood of random names costs the root helper one
 * /proc scan, not one per name.
 */

/** Refusals answered per source and second; past it the rest of the second goes unanswered. */
export const REFUSALS_PER_SOURCE_PER_SECOND = 1000;
/** Sources kept (past it only `sourcesDropped` grows). */
const MAX_SOURCES = 1024;
/**
 * Refused names one source may add to the proxy's table of names (proxy-stats.ts, 5000 in
 * all): a flood of random names from one socket must not crowd out everyone else's.
 */
export const NAMES_PER_SOURCE = 1000;
/** Who-asked lookups started per second at most. */
const ASK_PER_SECOND = 20;

export interface RefusedSource {
  proto: 'udp' | 'tcp';
  address: string;
  port: number;
  refused: number;
  /** Refusals not answered: over the per-second budget. */
  unanswered: number;
  /** Its highest count of refusals in one second. */
  peakPerSecond: number;
  second: number;
  inSecond: number;
  /** Names it added to the proxy's table. */
  named: number;
  /** Its process has been asked for (lookups are capped per second, so not always at once). */
  looked: boolean;
}

export type SourceAsk = (key: string, from: { proto: 'udp' | 'tcp'; port: number }) => void;

/** The key a source is counted (and its process looked up) under. */
export function sourceKey(proto: 'udp' | 'tcp', address: string, port: number): string {
  return `${proto} ${address} ${port}`;
}

export class Refusals {
  readonly sources = new Map<string, RefusedSource>();
  sourcesDropped = 0;
  total = 0;
  unanswered = 0;
  private peak = 0;
  private second = 0;
  private inSecond = 0;
  private askSecond = 0;
  private asked = 0;

  constructor(
    private readonly ask: SourceAsk | undefined,
    private readonly now: () => number = Date.now,
    private readonly perSource = REFUSALS_PER_SOURCE_PER_SECOND,
  ) {}

  /** The most refusals in one second so far. */
  get peakPerSecond(): number {
    return Math.max(this.peak, this.inSecond);
  }

  /** The key of the source last counted (for the name table: which source asked a name first). */
  lastKey = '';
  /** The source last counted; undefined when the table of sources was full. */
  last: RefusedSource | undefined;

  /** Counts one refused query from a source; true when it is to be answered. */
  refused(proto: 'udp' | 'tcp', address: string, port: number): boolean {
    const sec = Math.floor(this.now() / 1000);
    if (sec !== this.second) {
      if (this.inSecond > this.peak) this.peak = this.inSecond;
      this.second = sec;
      this.inSecond = 0;
    }
    this.inSecond++;
    this.total++;
    const key = sourceKey(proto, address, port);
    this.lastKey = key;
    let s = this.sources.get(key);
    if (!s) {
      if (this.sources.size >= MAX_SOURCES) {
        this.sourcesDropped++;
        this.last = undefined;
        return true;
      }
      s = {
        proto,
        address,
        port,
        refused: 0,
        unanswered: 0,
        peakPerSecond: 0,
        second: sec,
        inSecond: 0,
        named: 0,
        looked: false,
      };
      this.sources.set(key, s);
    }
    this.last = s;
    if (!s.looked) s.looked = this.lookUp(key, proto, port, sec);
    if (s.second !== sec) {
      s.second = sec;
      s.inSecond = 0;
    }
    s.refused++;
    if (++s.inSecond > s.peakPerSecond) s.peakPerSecond = s.inSecond;
    if (s.inSecond > this.perSource) {
      s.unanswered++;
      this.unanswered++;
      return false;
    }
    return true;
  }

  /** Whether the last source may add a name to the proxy's table (and counts it if so). */
  mayName(): boolean {
    const s = this.last;
    return !s || s.named < NAMES_PER_SOURCE;
  }

  /** Starts a who-asked lookup unless this second's are used up; true when started. */
  private lookUp(key: string, proto: 'udp' | 'tcp', port: number, sec: number): boolean {
    if (!this.ask) return true;
    if (sec !== this.askSecond) {
      this.askSecond = sec;
      this.asked = 0;
    }
    if (this.asked >= ASK_PER_SECOND) return false;
    this.asked++;
    // After the answer is on its way: finding who asked must not delay it.
    const ask = this.ask;
    setImmediate(() => ask(key, { proto, port }));
    return true;
  }
}

/**
 * The query turned into its refusal in place: same id, opcode, RD and question, QR and RA
 * set, the rcode, no records (a query has none: readQuery checked). Nothing allocated.
 */
export function refuseInPlace(msg: Buffer, questionEnd: number, rcode: number): Buffer {
  msg.writeUInt16BE(0x8000 | (msg.readUInt16BE(2) & 0x7900) | 0x0080 | rcode, 2);
  msg.writeUInt16BE(0, 10);
  return msg.subarray(0, questionEnd);
}
