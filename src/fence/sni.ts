/**
 * The name a connection's first bytes ask for, read without terminating anything: the
 * server_name of a TLS ClientHello (port 443) or the Host of an HTTP/1.x request (port
 * 80). Strict on purpose: anything the server could read as another name (two names, an
 * encrypted ClientHello, a request target naming another host, a folded header) is a
 * refusal, not a guess. Both read at most MAX_PEEK_BYTES.
 */

/** Bytes read from a connection before its name must be known. */
export const MAX_PEEK_BYTES = 16 * 1024;

export type Peek = { state: 'more' } | { state: 'name'; name: string } | { state: 'refuse'; why: string };

const MORE: Peek = { state: 'more' };
const refuse = (why: string): Peek => ({ state: 'refuse', why });

const EXT_SERVER_NAME = 0;
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
 * split it); `more` until it is whole.
 */
function handshake(buf: Buffer): Buffer | Peek {
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
    if (hs.length >= need)
      return hs.length === need ? hs : refuse('bytes after the ClientHello in its record');
  }
}

/** The server name a TLS ClientHello asks for. */
export function peekTls(buf: Buffer): Peek {
  const hs = handshake(buf);
  if (!Buffer.isBuffer(hs)) return hs;
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
    if (type !== EXT_SERVER_NAME) continue;
    // One entry of type host_name: a list of two is two names.
    if (len < 5 || body.readUInt16BE(0) !== len - 2 || body[2] !== 0 || body.readUInt16BE(3) !== len - 5)
      return refuse('a server name list that is not one host name');
    name = plainName(body.toString('latin1', 5));
    if (!name) return refuse('a server name that is not a plain host name');
  }
  return name ? { state: 'name', name } : refuse('a ClientHello without a server name');
}

const METHOD = /^[A-Z]{1,20}$/;
const HEADER = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$/;

/** The host of `authority` (`host[:port]`), as a plain name. */
function hostOf(authority: string): string | undefined {
  const m = /^([^:@[\]]+)(:\d{1,5})?$/.exec(authority);
  return m ? plainName(m[1]) : undefined;
}

/** The name an HTTP/1.x request's head asks for: its one Host, which an absolute target must repeat. */
export function peekHttp(buf: Buffer): Peek {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0)
    return buf.length >= MAX_PEEK_BYTES ? refuse('a request head larger than the fence reads') : MORE;
  const lines = buf.toString('latin1', 0, end).split('\r\n');
  const [method, target, version, ...extra] = lines[0].split(' ');
  if (extra.length || !METHOD.test(method ?? '') || !/^HTTP\/1\.[01]$/.test(version ?? ''))
    return refuse('not an HTTP/1.x request line');
  let hosts = 0;
  let name: string | undefined;
  for (const line of lines.slice(1)) {
    const h = HEADER.exec(line);
    // A folded or unreadable line could carry a second Host for a lenient server.
    if (!h) return refuse('a header line that is not `name: value`');
    if (h[1].toLowerCase() !== 'host') continue;
    hosts++;
    name = hostOf(h[2]);
  }
  if (hosts !== 1) return refuse(hosts ? 'more than one Host header' : 'no Host header');
  if (!name) return refuse('a Host that is not a plain host name');
  if (target.startsWith('/') || (target === '*' && method === 'OPTIONS')) return { state: 'name', name };
  // Absolute form: the server takes its host over the Host header (RFC 9112 3.2.2).
  const abs = /^https?:\/\/([^/?#]*)/i.exec(target);
  if (!abs || hostOf(abs[1]) !== name) return refuse('a request target naming another host');
  return { state: 'name', name };
}
