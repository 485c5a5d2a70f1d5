/**
 * The egress daemon's root-owned copy of the ledger. While the daemon runs, every line a
 * Cordon step appends is also sent to its `ledger.sock`; the daemon appends it to a file
 * the runner user can read but not write, so the summary can be rendered from it and
 * compared with the user-writable ledger. Sending is best effort and never blocks an
 * append: a step awaits `flushLedgerCopy` before it ends (see `runEntry`).
 */
import net from 'node:net';
import { existsSync } from 'node:fs';

// The state directory's paths are the root side's (rootd/protocol); re-exported for the
// modules that reach them through the ledger.
export { fenceId, stateDir, ledgerCopyPathsFor } from '../rootd/protocol.js';

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
