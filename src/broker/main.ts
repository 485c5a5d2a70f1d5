/**
 * The broker process. Started detached by `startBroker`; reads its configuration from the
 * stdin pipe and closes it, so the ID-token request token and the app key are never in its
 * argv, environment or a file. Prints one `READY {json}` (or `ERROR {json}`) line, then,
 * when asked, `MASK "<value>"` lines for the parent to mask; logs to the configured file.
 */
import { appendFileSync } from 'node:fs';
import { describeError, isCordonError } from '../platform/errors.js';
import { flushLedgerCopy } from '../ledger/copy.js';
import { parseBrokerConfig, type BrokerConfig } from './config.js';
import { serveBroker } from './server.js';

function readStdin(limit = 1 << 20): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    process.stdin.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) reject(new Error('the configuration is larger than 1 MiB'));
      else chunks.push(c);
    });
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    process.stdin.on('error', reject);
  });
}

let stdoutOpen = true;
process.stdout.on('error', () => {
  // The parent went away (actions/aws ends its step): nobody reads MASK lines any more.
  stdoutOpen = false;
});
function emit(line: string): void {
  if (stdoutOpen) process.stdout.write(line + '\n');
}

async function main(): Promise<void> {
  let cfg: BrokerConfig;
  try {
    cfg = parseBrokerConfig(await readStdin());
  } finally {
    process.stdin.destroy();
  }
  const logPath = cfg.logPath;
  const log = (line: string): void => {
    if (!logPath) return;
    try {
      appendFileSync(logPath, `${new Date().toISOString()} ${line}\n`, { mode: 0o600 });
    } catch {
      // A log that cannot be written must not stop the broker.
    }
  };
  const broker = await serveBroker(cfg, {
    log,
    onSecret: cfg.maskChannel ? (v) => emit(`MASK ${JSON.stringify(v)}`) : undefined,
  });
  emit(`READY ${JSON.stringify({ pid: process.pid, port: broker.port })}`);
  const lifetime = setTimeout(() => void broker.stop('lifetime'), cfg.maxLifetimeSeconds * 1000);
  lifetime.unref();
  if (cfg.parentPid) {
    const parent = cfg.parentPid;
    const watch = setInterval(() => {
      try {
        process.kill(parent, 0);
      } catch {
        void broker.stop('parent-exited');
      }
    }, 2000);
    watch.unref();
  }
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const)
    process.on(sig, () => void broker.stop('signal'));
  await broker.stopped;
  // broker.stopped reaches the egress daemon's copy of the ledger before the process ends.
  await flushLedgerCopy(1000);
  // Let the stop request's own answer go out before the process (and its port) is gone.
  setTimeout(() => process.exit(0), 250);
}

main().catch((e: unknown) => {
  const message = isCordonError(e) ? e.message : `broker failed: ${describeError(e)}`;
  // The input the error names and its fix go along, so the parent's error names run's input
  // (github-app-private-key): both are input names and fixed text, never a value.
  const named = isCordonError(e) ? { input: e.input, fix: e.fix } : {};
  emit(`ERROR ${JSON.stringify({ message, ...named })}`);
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 100);
});
