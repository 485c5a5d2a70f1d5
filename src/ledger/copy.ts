/**
 * The egress daemon's root-owned copy of the ledger. While the daemon runs, every line a
 * Cordon step appends is also sent to its `ledger.sock`; the daemon appends it to a file
 * the runner user can read but not write, so the summary can be rendered from it and
 * compared with the user-writable ledger. Sending is best effort and never blocks an
 * append: a step awaits `flushLedgerCopy` before it ends (see `runEntry`).
 */
import net from 'node:net';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

export const STATE_ROOT = '/run/cordon';
/** The daemon's copy of the ledger, in its state directory. */
export const LEDGER_COPY = 'ledger.jsonl';

/** A stable id per job: the same RUNNER_TEMP gives the same state directory in every step. */
export function fenceId(runnerTemp: string): string {
  return createHash('sha256').update(resolve(runnerTemp)).digest('hex').slice(0, 16);
}

export function stateDir(id: string): string {
  return join(STATE_ROOT, `egress-${id}`);
}

/**
 * Where a step sends its ledger lines (one a line, over a Unix stream socket) and where the
 * daemon's copy of them is, for the job whose RUNNER_TEMP this is; the socket is there
 * only while the egress daemon runs.
 */
export function ledgerCopyPaths(runnerTemp: string): { socket: string; copy: string } {
  const dir = stateDir(fenceId(runnerTemp));
  return { socket: join(dir, 'ledger.sock'), copy: join(dir, LEDGER_COPY) };
}

/** The copy paths for a ledger at `$RUNNER_TEMP/cordon/ledger.jsonl`. */
export function ledgerCopyPathsFor(ledgerPath: string): { socket: string; copy: string } {
  return ledgerCopyPaths(dirname(dirname(ledgerPath)));
}

interface Connection {
  socket: net.Socket;
  closed: Promise<void>;
  failed: boolean;
  sent: number;
}

const connections = new Map<string, Connection>();

function connect(path: string): Connection {
  const socket = net.connect(path);
  const c: Connection = { socket, failed: false, sent: 0, closed: Promise.resolve() };
  c.closed = new Promise<void>((done) => socket.once('close', () => done()));
  // A dead daemon (stale socket) must not fail the step: the summary shows the gap.
  socket.on('error', () => {
    c.failed = true;
  });
  // Never keeps a process alive on its own: `flushLedgerCopy` waits when it matters.
  socket.unref();
  return c;
}

/**
 * Sends one raw ledger line to the daemon's socket when there is one; returns whether it
 * was queued. Lines go out in the order they were appended.
 */
export function sendLedgerLine(socketPath: string, raw: string): boolean {
  let c = connections.get(socketPath);
  if (!c || c.failed || c.socket.destroyed) {
    if (!existsSync(socketPath)) return false;
    c = connect(socketPath);
    connections.set(socketPath, c);
  }
  c.socket.write(raw + '\n');
  c.sent++;
  return true;
}

/**
 * Ends every connection to a daemon and waits (bounded) until the daemon has read what was
 * sent: it answers the end of the stream only after its last line is written. Returns the
 * number of lines that were sent and whether any connection failed.
 */
export async function flushLedgerCopy(timeoutMs = 2000): Promise<{ sent: number; failed: boolean }> {
  const all = [...connections.values()];
  connections.clear();
  let sent = 0;
  let failed = false;
  await Promise.all(
    all.map(async (c) => {
      sent += c.sent;
      if (!c.socket.destroyed) c.socket.end();
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        c.closed.then(() => false),
        new Promise<boolean>((r) => {
          timer = setTimeout(() => r(true), timeoutMs);
        }),
      ]);
      clearTimeout(timer);
      if (timedOut) c.socket.destroy();
      if (timedOut || c.failed) failed = true;
    }),
  );
  return { sent, failed };
}
