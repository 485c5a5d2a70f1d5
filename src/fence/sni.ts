/**
 * The name a connection's first bytes ask for, read without terminating anything: the
 * server_name of a TLS ClientHello (port 443) or the Host of an HTTP/1.x request (port
 * 80). Strict on purpose: anything the server could read as another name (two names, an
 * encrypted ClientHello, a request target naming another host, a folded header) is a
 * refusal, not a guess. Both read at most MAX_PEEK_BYTES.
 */

/** Bytes read from a connection before its name must be known. */
export const MAX_PEEK_BYTES = 16 * 1024;

/**
 * What the first bytes ask for: more bytes, a name (with `size`, the bytes the ClientHello's
 * records or the request head took, which the follower need not read again, and `early`,
 * whether a ClientHello offers 0-RTT early data), or a refusal.
 */
export type Peek =
  | { state: 'more' }
  | { state: 'name'; name: string; size: number; early?: boolean }
  | { state: 'refuse'; why: string };

type Refusal = { state: 'refuse'; why: string };
const MORE = { state: 'more' } as const;
const refuse = (why: string): Refusal => ({ state: 'refuse', why });

const EXT_SERVER_NAME = 0;
/** early_data (RFC 8446 4.2.10): 0-RTT records (application_data) may follow the ClientHello. */
const EXT_EARLY_DATA = 42;
/** encrypted_client_hello (RFC 9849) and the draft ESNI before it. */
const EXT_ECH = 0xfe0d;
const EXT_ESNI = 0xffce;
const LABELS = /^[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*$/;

/** A host name as a name-list entry reads it: lower case, no trailing dot; undefined when not a plain name. */
export function plainName(raw: string): string | undefined {
  const name = raw.toLowerCase().replace(/\.$/, '');
  return name.length <= 253 && LABELS.test(name) ? name : undefined;
}

/**
 * The ClientHello's handshake message, joined from the TLS records it spans (a client may
 * split it), and the bytes those records take; `more` until it is whole.
 */
function handshake(buf: Buffer): { hs: Buffer; size: number } | typeof MORE | Refusal {
  const parts: Buffer[] = [];
  let have = 0;
  for (let at = 0; ;) {
    if (buf.length < at + 5) return MORE;
    if (buf[at] !== 22)
      return refuse(at === 0 ? 'not TLS' : 'a record other than handshake before the ClientHello ends');
    if (buf[at + 1] !== 3) return refuse('not TLS');
    const len = buf.readUInt16BE(at + 3);
    if (len === 0 || len > 16384) return refuse('a TLS record of an invalid length');
    if (buf.length < at + 5 + len) return MORE;
    parts.push(buf.subarray(at + 5, at + 5 + len));
    have += len;
    at += 5 + len;
    const hs = parts.length === 1 ? parts[0] : Buffer.concat(parts, have);
    if (hs.length < 4) continue;
    if (hs[0] !== 1) return refuse('the first handshake message is not a ClientHello');
    const need = 4 + hs.readUIntBE(1, 3);
    if (need > MAX_PEEK_BYTES) return refuse('a ClientHello larger than the fence reads');
    // Its records end with it: after them a TlsFollower starts as on a new connection.
    if (hs.length >= need)
      return hs.length === need ? { hs, size: at } : refuse('bytes after the ClientHello in its record');
  }
}

/** The server name a TLS ClientHello asks for. */
export function peekTls(buf: Buffer): Peek {
  const h = handshake(buf);
  if (!('hs' in h)) return h;
  const p = helloName(h.hs);
  return p.state === 'name' ? { ...p, size: h.size } : p;
}

/**
 * The one server name of a whole ClientHello handshake message (its 4-byte header included),
 * and whether it offers early data (`early`, only when it does).
 */
function helloName(hs: Buffer): { state: 'name'; name: string; early?: true } | Refusal {
  let at = 4 + 2 + 32;
  const skip = (lenBytes: 1 | 2): boolean => {
    if (at + lenBytes > hs.length) return false;
    at += lenBytes + hs.readUIntBE(at, lenBytes);
    return at <= hs.length;
  };
  // session id, cipher suites, compression methods.
  if (!skip(1) || !skip(2) || !skip(1)) return refuse('a malformed ClientHello');
  if (at === hs.length) return refuse('a ClientHello without a server name');
  if (at + 2 > hs.length || at + 2 + hs.readUInt16BE(at) !== hs.length)
    return refuse('a malformed ClientHello');
  at += 2;
  const seen = new Set<number>();
  let name: string | undefined;
  let early = false;
  while (at < hs.length) {
    if (at + 4 > hs.length) return refuse('a malformed ClientHello');
    const type = hs.readUInt16BE(at);
    const len = hs.readUInt16BE(at + 2);
    const body = hs.subarray(at + 4, at + 4 + len);
    if (body.length !== len) return refuse('a malformed ClientHello');
    at += 4 + len;
    if (seen.has(type)) return refuse('an extension twice');
    seen.add(type);
    if (type === EXT_ECH || type === EXT_ESNI)
      return refuse('an encrypted ClientHello (its real name is hidden)');
    if (type === EXT_EARLY_DATA) early = true;
    if (type !== EXT_SERVER_NAME) continue;
    // One entry of type host_name: a list of two is two names.
    if (len < 5 || body.readUInt16BE(0) !== len - 2 || body[2] !== 0 || body.readUInt16BE(3) !== len - 5)
      return refuse('a server name list that is not one host name');
    name = plainName(body.toString('latin1', 5));
    if (!name) return refuse('a server name that is not a plain host name');
  }
  if (!name) return refuse('a ClientHello without a server name');
  return early ? { state: 'name', name, early } : { state: 'name', name };
}

const METHOD = /^[A-Z]{1,20}$/;
const HEADER = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$/;

/** The host of `authority` (`host[:port]`), as a plain name. */
function hostOf(authority: string): string | undefined {
  const m = /^([^:@[\]]+)(:\d{1,5})?$/.exec(authority);
  return m ? plainName(m[1]) : undefined;
}

/** How a request's body is framed: its Content-Length, or chunked. */
export type Body = number | 'chunked';

/** An HTTP/1.x request head read: its one name, its length in bytes and how its body is framed. */
export type Head = typeof MORE | Refusal | { state: 'name'; name: string; size: number; body: Body };

/**
 * The name an HTTP/1.x request's head asks for: its one Host, which an absolute target must
 * repeat. Also how its body is framed (the gate reads every request on the connection,
 * HttpFollower): what cannot be framed for sure is refused, as a server could frame it
 * otherwise and read a request the gate took for a body (an Upgrade or CONNECT hands the
 * connection to another protocol; both Content-Length and Transfer-Encoding, two of
 * either, a coding other than `chunked` alone, or chunked in HTTP/1.0).
 */
export function peekHttp(buf: Buffer): Head {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0)
    return buf.length >= MAX_PEEK_BYTES ? refuse('a request head larger than the fence reads') : MORE;
  if (end + 4 > MAX_PEEK_BYTES) return refuse('a request head larger than the fence reads');
  const lines = buf.toString('latin1', 0, end).split('\r\n');
  const [method, target, version, ...extra] = lines[0].split(' ');
  if (extra.length || !METHOD.test(method ?? '') || !/^HTTP\/1\.[01]$/.test(version ?? ''))
    return refuse('not an HTTP/1.x request line');
  if (method === 'CONNECT') return refuse('CONNECT (a tunnel the fence cannot read)');
  let hosts = 0;
  let name: string | undefined;
  const lengths: string[] = [];
  const codings: string[] = [];
  for (const line of lines.slice(1)) {
    const h = HEADER.exec(line);
    // A folded or unreadable line could carry a second Host for a lenient server.
    if (!h) return refuse('a header line that is not `name: value`');
    const field = h[1].toLowerCase();
    if (field === 'upgrade') return refuse('an Upgrade (another protocol the fence cannot read)');
    if (field === 'content-length') lengths.push(h[2]);
    if (field === 'transfer-encoding') codings.push(h[2]);
    if (field !== 'host') continue;
    hosts++;
    name = hostOf(h[2]);
  }
  if (hosts !== 1) return refuse(hosts ? 'more than one Host header' : 'no Host header');
  if (!name) return refuse('a Host that is not a plain host name');
  if (!target.startsWith('/') && !(target === '*' && method === 'OPTIONS')) {
    // Absolute form: the server takes its host over the Host header (RFC 9112 3.2.2).
    const abs = /^https?:\/\/([^/?#]*)/i.exec(target);
    if (!abs || hostOf(abs[1]) !== name) return refuse('a request target naming another host');
  }
  if (lengths.length && codings.length) return refuse('both Content-Length and Transfer-Encoding');
  if (codings.length) {
    if (codings.length > 1 || codings[0].toLowerCase() !== 'chunked' || version === 'HTTP/1.0')
      return refuse('a Transfer-Encoding other than one `chunked` in HTTP/1.1');
    return { state: 'name', name, size: end + 4, body: 'chunked' };
  }
  if (lengths.length > 1 || (lengths.length && !/^\d{1,15}$/.test(lengths[0])))
    return refuse('a Content-Length that is not one number');
  return { state: 'name', name, size: end + 4, body: lengths.length ? Number(lengths[0]) : 0 };
}

/**
 * What the gate does with bytes of a joined connection's client side: send them on (`go`),
 * send them on and stop reading (`done`: the rest is encrypted), or reset the connection.
 * `other` is a later name that is not the first.
 */
export type Follow =
  { state: 'go' | 'done'; out: Buffer[] } | { state: 'refuse'; why: string; other?: boolean };

/** Appends `b` to `out`, as one view with the last when they are adjacent in one buffer (no copy). */
function emit(out: Buffer[], b: Buffer): void {
  if (!b.length) return;
  const last = out.at(-1);
  if (last && last.buffer === b.buffer && last.byteOffset + last.length === b.byteOffset)
    out[out.length - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + b.length);
  else out.push(b);
}

const CRLF2 = Buffer.from('\r\n\r\n');
/** The longest chunk-size line read: 16 hex digits and CRLF (extensions are refused). */
const MAX_SIZE_LINE = 18;

/**
 * Reads every request on a kept-alive (or pipelined) port 80 connection, in order, and
 * lets it on only when it asks for the connection's first name. A request's head (and a
 * chunk-size line, a trailer) is held until it is whole and read; a body is counted
 * through, never held. Memory is bounded by MAX_PEEK_BYTES of a head.
 */
export class HttpFollower {
  /** What is being read: a head, a body of known length, or a chunked body's parts. */
  private state: 'head' | 'body' | 'size' | 'data' | 'data-end' | 'trailer' = 'head';
  /** Bytes of a head or line not whole yet. */
  private held: Buffer = Buffer.alloc(0);
  /** Body (or chunk) bytes still to count through. */
  private left = 0;

  /**
   * `first`: how the body of the connection's first head is framed, when that head was read
   * already (peekHttp, by the gate before it joined): the follower starts after it, and is fed
   * only what came after it.
   */
  constructor(
    private readonly name: string,
    first?: Body,
  ) {
    if (first === 'chunked') this.state = 'size';
    else if (first) {
      this.state = 'body';
      this.left = first;
    }
  }

  feed(d: Buffer): Follow {
    const out: Buffer[] = [];
    let at = 0;
    while (at < d.length) {
      if (this.state === 'body' || this.state === 'data') {
        const n = Math.min(this.left, d.length - at);
        emit(out, d.subarray(at, at + n));
        at += n;
        this.left -= n;
        if (!this.left) this.state = this.state === 'body' ? 'head' : 'data-end';
        continue;
      }
      const max = this.state === 'size' ? MAX_SIZE_LINE : this.state === 'data-end' ? 2 : MAX_PEEK_BYTES;
      const had = this.held.length;
      const piece = d.subarray(at, at + max - had);
      const joined = had ? Buffer.concat([this.held, piece]) : piece;
      // Empty lines before a request line are skipped by servers (RFC 9112 2.2): sent on.
      if (this.state === 'head' && joined[0] === 13 && joined[1] === 10) {
        emit(out, joined.subarray(0, 2));
        this.held = Buffer.alloc(0);
        at += 2 - had;
        continue;
      }
      const r = this.read(joined);
      if (typeof r === 'string') return { state: 'refuse', why: r, other: r === OTHER_NAME };
      if (r < 0) {
        if (joined.length >= max) return { state: 'refuse', why: this.tooLong() };
        this.held = joined;
        break;
      }
      emit(out, joined.subarray(0, r));
      this.held = Buffer.alloc(0);
      at += r - had;
    }
    return { state: 'go', out };
  }

  /** Reads a whole head or line at the start of `b`: its length, -1 while it is not whole, or why it is refused. */
  private read(b: Buffer): number | string {
    switch (this.state) {
      case 'data-end':
        if (b.length < 2) return b.length && b[0] !== 13 ? 'a chunk not followed by CRLF' : -1;
        if (b[0] !== 13 || b[1] !== 10) return 'a chunk not followed by CRLF';
        this.state = 'size';
        return 2;
      case 'size': {
        const end = b.indexOf('\r\n');
        if (end < 0) return -1;
        const line = b.toString('latin1', 0, end);
        const size = /^[0-9A-Fa-f]{1,16}$/.test(line) ? parseInt(line, 16) : NaN;
        if (!Number.isSafeInteger(size)) return 'a chunk size that is not hex digits alone';
        this.left = size;
        this.state = size ? 'data' : 'trailer';
        return end + 2;
      }
      case 'trailer': {
        if (b.length >= 2 && b[0] === 13 && b[1] === 10) {
          this.state = 'head';
          return 2;
        }
        const end = b.indexOf(CRLF2);
        if (end < 0) return -1;
        for (const line of b.toString('latin1', 0, end).split('\r\n'))
          if (!HEADER.test(line)) return 'a trailer line that is not `name: value`';
        this.state = 'head';
        return end + 4;
      }
      default: {
        const h = peekHttp(b);
        if (h.state === 'more') return -1;
        if (h.state === 'refuse') return h.why;
        if (h.name !== this.name) return OTHER_NAME;

        if (h.body === 'chunked') this.state = 'size';
        else if (h.body > 0) {
          this.state = 'body';
          this.left = h.body;
        }
        return h.size;
      }
    }
  }

  private tooLong(): string {
    if (this.state === 'size') return 'a chunk size that is not hex digits alone';
    return this.state === 'trailer'
      ? 'trailers larger than the fence reads'
      : 'a request head larger than the fence reads';
  }

  /** Whether the client stopped inside a head or line the gate holds (which then never goes on). */
  get holding(): boolean {
    return this.held.length > 0;
  }
}

const OTHER_NAME = 'a later request or ClientHello names another site';

/**
 * Reads a TLS connection's client records up to its first application_data record, and
 * lets them on only when every ClientHello among them (the first, and a second one sent
 * after a HelloRetryRequest) names the connection's first name. CCS and alert records are
 * passed over; a TLS 1.2 Finished (an encrypted handshake record after CCS) reads as
 * random bytes, not a ClientHello, unless by a 2^-27 chance. Nothing is held but the
 * bytes of a ClientHello (at most MAX_PEEK_BYTES) and of record and message headers. The
 * gate feeds it what follows the first ClientHello's records (peekTls read those, and they
 * end with it), so it starts as on a new connection.
 *
 * Early data: after a ClientHello that offers it, application_data records may be 0-RTT
 * data the server skips unread when it rejects it, and a HelloRetryRequest's second
 * ClientHello comes after them (RFC 8446 4.2.10): an agent can send any bytes as such a
 * record, so they are passed over, not taken as the encryption, until a later ClientHello
 * that does not offer early data (none may: then the records are the handshake's), to the
 * connection's end when none comes.
 */
export class TlsFollower {
  /** A record header not whole yet. */
  private header: Buffer = Buffer.alloc(0);
  private type = 0;
  /** Payload bytes of the current record still to read. */
  private recordLeft = 0;
  /** A handshake message header not whole yet. */
  private msgHeader: Buffer = Buffer.alloc(0);
  /** Bytes of the current non-ClientHello handshake message still to pass over. */
  private skip = 0;
  /** The ClientHello being joined, and the bytes it still needs. */
  private hello: Buffer[] = [];
  private helloLeft = 0;
  /** A ClientHello longer than the fence reads: refused if another record continues it. */
  private tooBig = false;

  /** `early`: the first ClientHello (read by peekTls) offers early data. */
  constructor(
    private readonly name: string,
    private early = false,
  ) {}

  feed(d: Buffer): Follow {
    let at = 0;
    while (at < d.length) {
      if (!this.recordLeft) {
        const need = 5 - this.header.length;
        this.header = Buffer.concat([this.header, d.subarray(at, at + need)]);
        at += Math.min(need, d.length - at);
        if (this.header.length < 5) break;
        this.type = this.header[0];
        const len = this.header.readUInt16BE(3);
        this.header = Buffer.alloc(0);
        if (this.type === 23 && !this.early) return { state: 'done', out: [d] };
        if (this.type < 20 || this.type > 23)
          return { state: 'refuse', why: 'a TLS record of another type before the encrypted data' };
        if (len > 16384 + 2048) return { state: 'refuse', why: 'a TLS record of an invalid length' };
        if (this.type === 22 && this.tooBig && len)
          return { state: 'refuse', why: 'a ClientHello larger than the fence reads' };
        this.recordLeft = len;
        continue;
      }
      const n = Math.min(this.recordLeft, d.length - at);
      const part = d.subarray(at, at + n);
      at += n;
      this.recordLeft -= n;
      if (this.type !== 22) continue;
      const why = this.handshake(part);
      if (why) return { state: 'refuse', why, other: why === OTHER_NAME };
    }
    return { state: 'go', out: [d] };
  }

  /** Reads handshake bytes: message headers, ClientHellos whole; why it is refused, if it is. */
  private handshake(b: Buffer): string | undefined {
    let at = 0;
    while (at < b.length) {
      if (this.skip) {
        const n = Math.min(this.skip, b.length - at);
        this.skip -= n;
        at += n;
        continue;
      }
      if (this.helloLeft) {
        const n = Math.min(this.helloLeft, b.length - at);
        this.hello.push(b.subarray(at, at + n));
        this.helloLeft -= n;
        at += n;
        if (this.helloLeft) continue;
        const p = helloName(Buffer.concat(this.hello));
        this.hello = [];
        if (p.state !== 'name') return p.state === 'refuse' ? p.why : 'a malformed ClientHello';
        if (p.name !== this.name) return OTHER_NAME;
        this.early = p.early === true;
        continue;
      }
      const need = 4 - this.msgHeader.length;
      this.msgHeader = Buffer.concat([this.msgHeader, b.subarray(at, at + need)]);
      at += Math.min(need, b.length - at);
      if (this.msgHeader.length < 4) break;
      const h = this.msgHeader;
      this.msgHeader = Buffer.alloc(0);
      const len = h.readUIntBE(1, 3);
      if (h[0] !== 1) this.skip = len;
      else if (4 + len > MAX_PEEK_BYTES) {
        // Not read, and refused once more of it comes (another record, or its end in this one):
        // a TLS 1.2 Finished that reads as such a header by chance is alone in its record.
        this.tooBig = true;
        this.skip = len;
        if (b.length - at >= len) return 'a ClientHello larger than the fence reads';
      } else {
        this.hello = [h];
        this.helloLeft = len;
        if (!len) return 'a malformed ClientHello';
      }
    }
    return undefined;
  }
}
