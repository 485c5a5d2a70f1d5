/**
 * `daemon.js teardown <id>`, run by post as root: stops the daemon, then undoes what its
 * setup did, from the record it kept in `state.json`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { removeTable } from '../fence/firewall.js';
import { restoreLockdown } from '../fence/lockdown.js';
import { restoreResolver } from '../fence/resolver.js';
import { removeState, stateDir, type DaemonState } from './protocol.js';

/** Stops the daemon, removes the table, restores the resolver and the lockdown. */
export function teardown(id: string): void {
  const dir = stateDir(id);
  const file = join(dir, 'state.json');
  if (!existsSync(file)) {
    process.stdout.write(`ERROR ${JSON.stringify({ message: `no egress state in ${dir}` })}\n`);
    process.exit(1);
  }
  const state = JSON.parse(readFileSync(file, 'utf8')) as DaemonState;
  try {
    if (readFileSync(`/proc/${state.pid}/cmdline`, 'utf8').includes('daemon'))
      process.kill(state.pid, 'SIGTERM');
  } catch {
    // Already gone.
  }
  // The proxy must have let go of port 53 before systemd-resolved's stub is back.
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < 60 && existsSync(`/proc/${state.pid}`); i++) Atomics.wait(pause, 0, 0, 50);
  removeTable();
  if (state.resolver) restoreResolver(state.resolver);
  if (state.lockdown) restoreLockdown(state.lockdown, state.user);
  removeState(id);
  process.stdout.write('DONE\n');
}
