/**
 * The leak scan's view inside compressed files and archives: gzip, zip (stored and deflate)
 * and tar, nested, read with Node's zlib and two small readers. A value a command wrapped in
 * one of these is in what an upload or a push sends. Bounded in decompressed bytes, entries
 * and depth; what is past a bound, damaged, encrypted or compressed another way is named as
 * not scanned, never passed as clean.
 */
import { gunzipSync, inflateRawSync } from 'node:zlib';

export interface ContainerLimits {
  /** Bytes decompressed at most, over all layers of one file or git object. */
  maxBytes: number;
  /** Archive entries (zip and tar) read at most in one file or git object. */
  maxEntries: number;
  /** Layers of containers opened at most (a gzip in a tar in a zip is 3). */
  maxDepth: number;
}

export const CONTAINER_LIMITS: ContainerLimits = {
  maxBytes: 64 * 1024 * 1024,
  maxEntries: 10_000,
  maxDepth: 4,
};

/** Called with each content to search: the raw bytes first, then every decompressed layer. */
export type ScanContent = (path: string, data: Buffer) => void;

interface Walk {
  scan: ScanContent;
  limits: ContainerLimits;
  bytes: number;
  entries: number;
  notScanned: string[];
}

const GZIP = (b: Buffer): boolean => b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;
const ZIP = (b: Buffer): boolean =>
  b.length >= 4 && b[0] === 0x50 && b[1] === 0x4b && (b[2] === 3 || b[2] === 5) && b[3] === b[2] + 1;

/** A tar header: its checksum (the header's bytes summed, the checksum field as spaces) matches. */
function tarHeaderOk(h: Buffer): boolean {
  if (h.length < 512) return false;
  const stored = parseInt(
    h
      .subarray(148, 156)
      .toString('latin1')
      .replace(/[\0 ]+$/, ''),
    8,
  );
  if (!Number.isInteger(stored)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
  return sum === stored;
}

function isContainer(b: Buffer): boolean {
  return GZIP(b) || ZIP(b) || tarHeaderOk(b);
}

/** Compressed formats recognised but not read: named as not scanned, never passed as clean. */
const UNREAD: [string, Buffer][] = [
  ['xz', Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])],
  ['zstd', Buffer.from([0x28, 0xb5, 0x2f, 0xfd])],
  ['7z', Buffer.from([0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c])],
  ['rar', Buffer.from('Rar!\x1a\x07', 'latin1')],
  ['lzip', Buffer.from('LZIP', 'latin1')],
];

function unreadFormat(b: Buffer): string | undefined {
  if (/^BZh[1-9]1AY&SY/.test(b.subarray(0, 10).toString('latin1'))) return 'bzip2';
  return UNREAD.find(([, magic]) => b.subarray(0, magic.length).equals(magic))?.[0];
}

/**
 * Scans `data` (as `path`) and everything compressed or archived inside it, within `limits`.
 * Returns what was not fully scanned, each with the reason.
 */
export function scanContainers(
  data: Buffer,
  path: string,
  scan: ScanContent,
  limits: ContainerLimits = CONTAINER_LIMITS,
): string[] {
  const w: Walk = { scan, limits, bytes: 0, entries: 0, notScanned: [] };
  visit(w, data, path, 0, true);
  return w.notScanned;
}

/** `unscanned` is false for bytes already searched as part of an outer layer (a stored entry). */
function visit(w: Walk, data: Buffer, path: string, depth: number, unscanned: boolean): void {
  if (unscanned) w.scan(path, data);
  const unread = unreadFormat(data);
  if (unread) w.notScanned.push(`${path} (${unread} compressed: not read)`);
  if (!isContainer(data)) return;
  if (depth >= w.limits.maxDepth) {
    w.notScanned.push(`${path} (archives nested deeper than ${w.limits.maxDepth})`);
    return;
  }
  if (GZIP(data)) gunzip(w, data, path, depth);
  else if (ZIP(data)) unzip(w, data, path, depth);
  else untar(w, data, path, depth);
}

/** Decompresses within what is left of the byte budget; undefined (and named) past it or damaged. */
function inflate(w: Walk, data: Buffer, path: string, raw: boolean): Buffer | undefined {
  const left = w.limits.maxBytes - w.bytes;
  if (left <= 0) {
    w.notScanned.push(`${path} (over ${w.limits.maxBytes} decompressed bytes)`);
    return undefined;
  }
  try {
    const out = raw
      ? inflateRawSync(data, { maxOutputLength: left })
      : gunzipSync(data, { maxOutputLength: left });
    w.bytes += out.length;
    return out;
  } catch (e) {
    const over = e instanceof RangeError || (e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE';
    w.notScanned.push(
      over ? `${path} (over ${w.limits.maxBytes} decompressed bytes)` : `${path} (damaged compressed data)`,
    );
    return undefined;
  }
}

function gunzip(w: Walk, data: Buffer, path: string, depth: number): void {
  const out = inflate(w, data, path, false);
  if (out) visit(w, out, `${path}!gunzip`, depth + 1, true);
}

function entry(w: Walk, path: string): boolean {
  if (++w.entries <= w.limits.maxEntries) return true;
  if (w.entries === w.limits.maxEntries + 1)
    w.notScanned.push(`${path} (over ${w.limits.maxEntries} archive entries)`);
  return false;
}

function cstring(b: Buffer, at: number, len: number): string {
  const s = b.subarray(at, at + len);
  const nul = s.indexOf(0);
  return s.subarray(0, nul < 0 ? s.length : nul).toString('utf8');
}

/**
 * tar: the archive's bytes were scanned as they are (headers, names, every stored file), so
 * only entries that are containers themselves are opened.
 */
function untar(w: Walk, data: Buffer, path: string, depth: number): void {
  let at = 0;
  let longName = '';
  while (at + 512 <= data.length) {
    const h = data.subarray(at, at + 512);
    if (h.every((b) => b === 0)) return;
    if (!tarHeaderOk(h)) {
      w.notScanned.push(`${path} (damaged tar header at byte ${at})`);
      return;
    }
    if (h[124] & 0x80) {
      w.notScanned.push(`${path} (tar entry over 8 GiB)`);
      return;
    }
    const size = parseInt(
      h
        .subarray(124, 136)
        .toString('latin1')
        .replace(/[\0 ]+$/, '') || '0',
      8,
    );
    // A size that is no octal number would end the walk here with nothing named.
    if (!Number.isSafeInteger(size) || size < 0) {
      w.notScanned.push(`${path} (damaged tar header at byte ${at})`);
      return;
    }
    const type = String.fromCharCode(h[156] || 48);
    const body = data.subarray(at + 512, at + 512 + size);
    const prefix = h.subarray(257, 262).toString('latin1') === 'ustar' ? cstring(h, 345, 155) : '';
    const name = longName || (prefix ? `${prefix}/` : '') + cstring(h, 0, 100);
    longName = '';
    if (type === 'L') longName = cstring(body, 0, body.length);
    else if (type === '0' || type === '7') {
      const inner = `${path}!${name}`;
      if (!entry(w, inner)) return;
      if (body.length < size) w.notScanned.push(`${inner} (the tar ends inside it)`);
      visit(w, body, inner, depth + 1, false);
    }
    at += 512 + Math.ceil(size / 512) * 512;
  }
}

/** The end of central directory record: searched back from the end (a comment may follow it). */
function endOfDirectory(data: Buffer): number {
  for (let i = data.length - 22; i >= Math.max(0, data.length - 22 - 0xffff); i--)
    if (data.readUInt32LE(i) === 0x06054b50) return i;
  return -1;
}

/**
 * zip, by its central directory: stored entries were scanned with the archive's bytes and are
 * opened only when they are containers; deflated ones are inflated and scanned. Other methods,
 * encryption and zip64 are named as not scanned.
 */
function unzip(w: Walk, data: Buffer, path: string, depth: number): void {
  const eocd = endOfDirectory(data);
  if (eocd < 0) {
    w.notScanned.push(`${path} (no zip central directory)`);
    return;
  }
  const count = data.readUInt16LE(eocd + 10);
  let at = data.readUInt32LE(eocd + 16);
  if (count === 0xffff || at === 0xffffffff) {
    w.notScanned.push(`${path} (zip64)`);
    return;
  }
  for (let i = 0; i < count; i++) {
    if (at + 46 > data.length || data.readUInt32LE(at) !== 0x02014b50) {
      w.notScanned.push(`${path} (damaged zip central directory)`);
      return;
    }
    const flags = data.readUInt16LE(at + 8);
    const method = data.readUInt16LE(at + 10);
    const compressed = data.readUInt32LE(at + 20);
    const nameLen = data.readUInt16LE(at + 28);
    const local = data.readUInt32LE(at + 42);
    const name = data.subarray(at + 46, at + 46 + nameLen).toString('utf8');
    at += 46 + nameLen + data.readUInt16LE(at + 30) + data.readUInt16LE(at + 32);
    const inner = `${path}!${name}`;
    if (!entry(w, inner)) return;
    if (name.endsWith('/') && compressed === 0) continue;
    if (flags & 1) {
      w.notScanned.push(`${inner} (encrypted)`);
      continue;
    }
    if (compressed === 0xffffffff || local + 30 > data.length || data.readUInt32LE(local) !== 0x04034b50) {
      w.notScanned.push(`${inner} (damaged or zip64 entry)`);
      continue;
    }
    const start = local + 30 + data.readUInt16LE(local + 26) + data.readUInt16LE(local + 28);
    const body = data.subarray(start, start + compressed);
    if (method === 0) visit(w, body, inner, depth + 1, false);
    else if (method === 8) {
      const out = inflate(w, body, inner, true);
      if (out) visit(w, out, inner, depth + 1, true);
    } else w.notScanned.push(`${inner} (compression method ${method})`);
  }
}
