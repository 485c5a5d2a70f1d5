/**
 * The root-owned copy of the ledger: every Cordon step sends each line it appends to
 * `ledger.sock` as well, and the daemon appends it to `ledger.jsonl` in its own directory.
 * The file is opened as root before the daemon gives up root, and is root's, readable by
 * the runner's group, so the runner user can read it but not write it; the summary can
 * compare it with the user-writable file. Only the runner user and root may send
 * (access.ts), so a line here proves when it arrived, not which of their processes wrote it.
 * Sizes are bytes, whatever the characters: a line is at most 256 KiB, the copy 64 MiB.
 */
import net from 'node:net';
import { openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { readableByClient, socketForClient, type Client } from './access.js';
import { LEDGER_COPY, LEDGER_SOCKET } from './protocol.js';

export const MAX_LEDGER_LINE = 256 * 1024;
export const MAX_LEDGER_BYTES = 64 * 1024 * 1024;
const LEDGER_IDLE_MS = 60_000;
const LEDGER_MAX_CONNECTIONS = 64;
const NL = 0x0a;

/** Serves `ledger.sock` in `dir`; returns a function that stops serving. */
export async function keepLedgerCopy(
  dir: string,
  client: Client,
  log: (l: string) => void,
  limits: { line: number; total: number } = { line: MAX_LEDGER_LINE, total: MAX_LEDGER_BYTES },
): Promise<() => void> {
  const copy = join(dir, LEDGER_COPY);
  const fd = openSync(copy, 'a', 0o640);
  readableByClient(copy, client);
  let bytes = 0;
  let full = false;
  const append = (line: Buffer): void => {
    if (bytes + line.length + 1 > limits.total) {
      // Once, a line that is no event: the copy's chain breaks here, so the summary
      // says the record was altered instead of quietly missing what came after.
      if (!full) writeSync(fd, `copy full: lines after ${limits.total} bytes were dropped\n`);
      if (!full) log('ledger copy: full, later lines dropped');
      full = true;
      return;
    }
    bytes += line.length + 1;
    writeSync(fd, Buffer.concat([line, Buffer.from('\n')]));
  };
  const server = net.createServer((c) => {
    c.on('error', () => c.destroy());
    // Steps reconnect on their next line; an idle connection only holds a descriptor.
    c.setTimeout(LEDGER_IDLE_MS, () => c.destroy());
    // Bytes as they came: a character split across two reads is joined again here.
    let buf: Buffer = Buffer.alloc(0);
    c.on('data', (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      for (let nl = buf.indexOf(NL); nl >= 0; nl = buf.indexOf(NL)) {
        const line = buf.subarray(0, nl);
        buf = buf.subarray(nl + 1);
        if (line.length > limits.line) {
          log(`ledger copy: a line longer than ${limits.line} bytes was dropped`);
          return void c.destroy();
        }
        if (line.length) append(line);
      }
      if (buf.length > limits.line) {
        log(`ledger copy: a line longer than ${limits.line} bytes was dropped`);
        c.destroy();
      }
    });
  });
  server.maxConnections = LEDGER_MAX_CONNECTIONS;
  const path = join(dir, LEDGER_SOCKET);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  socketForClient(path, client);
  return () => server.close();
}
