/**
 * The root-owned copy of the ledger: every Cordon step sends each line it appends to
 * `ledger.sock` as well, and the daemon appends it to `ledger.jsonl` in its own directory.
 * The file is opened as root before the daemon gives up root, so the runner user can read
 * it but not write it; the summary can compare it with the user-writable file. Anyone may
 * send, so a line here proves when it arrived, not who wrote it.
 */
import net from 'node:net';
import { chmodSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { LEDGER_COPY, LEDGER_SOCKET } from './protocol.js';

const MAX_LEDGER_LINE = 256 * 1024;
const MAX_LEDGER_BYTES = 64 * 1024 * 1024;
const LEDGER_IDLE_MS = 60_000;
const LEDGER_MAX_CONNECTIONS = 64;

/** Serves `ledger.sock` in `dir`; returns a function that stops serving. */
export async function keepLedgerCopy(dir: string, log: (l: string) => void): Promise<() => void> {
  const fd = openSync(join(dir, LEDGER_COPY), 'a', 0o644);
  let bytes = 0;
  let full = false;
  const server = net.createServer((c) => {
    c.on('error', () => c.destroy());
    // Steps reconnect on their next line; an idle connection only holds a descriptor.
    c.setTimeout(LEDGER_IDLE_MS, () => c.destroy());
    let buf = '';
    c.setEncoding('utf8');
    c.on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!line) continue;
        if (bytes + line.length > MAX_LEDGER_BYTES) {
          // Once, a line that is no event: the copy's chain breaks here, so the summary
          // says the record was altered instead of quietly missing what came after.
          if (!full) writeSync(fd, `copy full: lines after ${MAX_LEDGER_BYTES} bytes were dropped\n`);
          if (!full) log('ledger copy: full, later lines dropped');
          full = true;
          continue;
        }
        bytes += line.length + 1;
        writeSync(fd, `${line}\n`);
      }
      if (buf.length > MAX_LEDGER_LINE) {
        log('ledger copy: a line longer than 256 KiB was dropped');
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
  chmodSync(path, 0o666);
  return () => server.close();
}
