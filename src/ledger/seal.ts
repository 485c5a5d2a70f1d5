/**
 * Sealing each agent window: proof that the lines closing a command's window were written
 * by the `run` step that opened it, and not by the command after it killed `run`.
 *
 * A chain proves order, not authorship: anyone who can hash extends it. So `start` makes an
 * Ed25519 key pair, keeps the public key in its saved state (the runner holds it), and
 * leaves the private key in a 0600 file beside the ledger. Each `run` takes that file
 * (reads it and removes it) before its command starts, so the command never finds it on
 * disk; the key lives on only in `run`'s memory. When the command's processes are gone,
 * `run` makes the next pair, writes `run.sealed` (window number, next public key, and a
 * signature over both and the hash of the line before it, which the chain ties to every
 * line up to there), and leaves the next private key in the file. `start`'s post walks the
 * seals from its public key: a window without a valid seal, or a key file that is not the
 * last seal's, means some `run` ended without proving its lines, and the record cannot be
 * trusted. The post holds only public keys: reading its environment gives nothing to sign.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { LedgerLine } from './ledger.js';
import { agentWindows } from './verify.js';
import { dataOf } from './events.js';

/** What the key file holds: the private key for window `window` (PKCS#8 DER, base64). */
export interface SealKey {
  window: number;
  privateKey: string;
}

export function sealKeyPath(ledgerFile: string): string {
  return join(dirname(ledgerFile), 'seal.key');
}

/** A new key pair for window `window`: the key file's content and the public key (SPKI DER, base64). */
export function newSealKey(window: number): { key: SealKey; publicKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    key: { window, privateKey: privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64') },
    publicKey: publicKey.export({ format: 'der', type: 'spki' }).toString('base64'),
  };
}

/**
 * Writes the key file, 0600, never through a link: whatever is at the path is removed and
 * the file made anew (a command that planted a symlink there gets nothing written through it).
 */
export function writeSealKey(path: string, key: SealKey): void {
  rmSync(path, { force: true });
  const fd = openSync(
    path,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o600,
  );
  try {
    writeFileSync(fd, JSON.stringify(key));
  } finally {
    closeSync(fd);
  }
}

/** A key file is about 150 bytes; anything much larger is not one. */
const MAX_KEY_FILE_BYTES = 4096;

/**
 * Reads the key file without following a link; undefined when it is missing or not a key.
 * Opened non-blocking and read only as a small regular file: a FIFO the command left at the
 * path would otherwise hold start's post (or the next run) until the job times out, with no
 * verdict written.
 */
export function readSealKey(path: string): SealKey | undefined {
  let text: string;
  try {
    const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try {
      if (!fstatSync(fd).isFile()) return undefined;
      // One byte more than allowed, so a file that grows while it is read is refused too.
      const buf = Buffer.alloc(MAX_KEY_FILE_BYTES + 1);
      let n = 0;
      for (let r = 1; r > 0 && n < buf.length; n += r) r = readSync(fd, buf, n, buf.length - n, null);
      if (n > MAX_KEY_FILE_BYTES) return undefined;
      text = buf.subarray(0, n).toString('utf8');
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
  try {
    const k = JSON.parse(text) as Partial<SealKey>;
    if (typeof k.window !== 'number' || !Number.isInteger(k.window) || k.window < 1) return undefined;
    if (typeof k.privateKey !== 'string') return undefined;
    privateKeyOf(k.privateKey);
    return { window: k.window, privateKey: k.privateKey };
  } catch {
    return undefined;
  }
}

/** Takes the key file: reads it and removes it, so that nothing run starts after finds it. */
export function takeSealKey(path: string): SealKey | undefined {
  const key = readSealKey(path);
  rmSync(path, { force: true });
  return key;
}

function privateKeyOf(b64: string): KeyObject {
  return createPrivateKey({ key: Buffer.from(b64, 'base64'), format: 'der', type: 'pkcs8' });
}

function publicKeyOf(b64: string): KeyObject {
  return createPublicKey({ key: Buffer.from(b64, 'base64'), format: 'der', type: 'spki' });
}

/** What a seal signs: the window, the line it follows (and so every line before), the next key. */
function sealMessage(window: number, prev: string, next: string): Buffer {
  return Buffer.from(`cordon run.sealed v1\nwindow ${window}\nprev ${prev}\nnext ${next}\n`, 'utf8');
}

/** The data of a `run.sealed` line chained to `prev`, signed with `key`, naming the next public key. */
export function sealData(
  key: SealKey,
  prev: string,
  next: string,
): { window: number; next: string; signature: string } {
  const signature = sign(null, sealMessage(key.window, prev, next), privateKeyOf(key.privateKey));
  return { window: key.window, next, signature: signature.toString('base64') };
}

function publicOf(privateKey: string): string {
  return createPublicKey(privateKeyOf(privateKey)).export({ format: 'der', type: 'spki' }).toString('base64');
}

function verifies(publicKey: string, window: number, line: LedgerLine): { next: string } | undefined {
  const d = dataOf(line.event, 'run.sealed');
  if (
    !line.event ||
    !d ||
    d.window !== window ||
    typeof d.next !== 'string' ||
    typeof d.signature !== 'string'
  )
    return undefined;
  try {
    const ok = verify(
      null,
      sealMessage(window, line.event.prev, d.next),
      publicKeyOf(publicKey),
      Buffer.from(d.signature, 'base64'),
    );
    return ok ? { next: d.next } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * What run writes once its command has ended, in this order: the lines a command that killed
 * run would forge. (Lines in run's name before the next `run.started`, such as its AWS
 * credentials or its broker's start, belong to the next run.)
 */
const CLOSING = ['ledger.verified', 'ledger.tampered', 'run.finished', 'run.sealed'];

/**
 * Checks every window opened after `head` (start's own line) against the seals, from
 * `publicKey` (start's), and the key file left at the end (`held`, read by the caller).
 * Returns one detail per window (or key file) whose lines cannot be proven to be run's, and
 * the lines of those windows that claim to be run's (not to be rendered as Cordon's).
 */
export function checkSeals(
  lines: LedgerLine[],
  opts: { head?: string; publicKey: string; held: SealKey | undefined },
): { details: string[]; unproven: number[] } {
  const details: string[] = [];
  const unproven: number[] = [];
  const from = opts.head ? (lines.find((l) => l.hash === opts.head)?.line ?? 0) : 0;
  const windows = agentWindows(lines).filter((w) => w.started > from);
  let key: string | undefined = opts.publicKey;
  let brokenAt: number | undefined;
  windows.forEach((w, i) => {
    const window = i + 1;
    const end = windows[i + 1]?.started ?? lines.length + 1;
    const seals = lines.filter(
      (l) => l.line > w.started && l.line < end && l.event?.type === 'run.sealed' && l.event.action === 'run',
    );
    const claimed = lines.filter(
      (l) =>
        l.line > w.started && l.line < end && l.event?.action === 'run' && CLOSING.includes(l.event.type),
    );
    if (key === undefined) {
      unproven.push(...claimed.map((l) => l.line));
      details.push(
        `the record of the command started at line ${w.started} cannot be trusted: the seals broke at line ${brokenAt}, so nothing after it can be proven to be run's`,
      );
      return;
    }
    const good = seals.map((s) => ({ s, ok: verifies(key as string, window, s) }));
    for (const { s, ok } of good)
      if (!ok)
        details.push(
          `line ${s.line} claims to seal the command started at line ${w.started}, but its signature is not run's: it was forged, and the record cannot be trusted`,
        );
    const valid = good.find((g) => g.ok);
    if (!valid?.ok) {
      if (!seals.length)
        details.push(
          `the record of the command started at line ${w.started} cannot be trusted: run never sealed it (run was killed or failed before it ended), so the lines that close it may be the command's`,
        );
      unproven.push(...claimed.map((l) => l.line));
      brokenAt = w.started;
      key = undefined;
      return;
    }
    // run writes nothing of these after its seal: a later one in its name is someone else's.
    for (const l of claimed.filter((c) => c.line > valid.s.line && c.event?.type !== 'run.sealed')) {
      unproven.push(l.line);
      details.push(
        `line ${l.line} claims to be run's but comes after run sealed the command started at line ${w.started}: it is not run's, and the record cannot be trusted`,
      );
    }
    key = valid.ok.next;
  });
  if (key === undefined) return { details, unproven };
  const expected = windows.length + 1;
  if (!opts.held)
    details.push(
      `the key run leaves for the next command's seal is missing: a run step took it and never sealed its command (killed), or the key file was removed; the record cannot be trusted`,
    );
  else if (opts.held.window !== expected || publicOf(opts.held.privateKey) !== key)
    details.push(
      `the key left for the next command's seal is not the one the last seal names (it is for command ${opts.held.window}, ${expected} expected): a run step that was killed took the real one, or the file was replaced; the record cannot be trusted`,
    );
  return { details, unproven };
}
