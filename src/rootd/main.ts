/**
 * The egress daemon, run as root (dist/egress/daemon.js; the action starts it through
 * platform/detached and talks to it through protocol.ts):
 *  - `start <config.json>` sets the fence up and serves it (setup.ts);
 *  - `helper <dir> <pid file> <proxy uid> <client uid> <client gid>` is its root helper, started by the daemon
 *    itself before it gives up root (helper.ts);
 *  - `teardown <id>` removes it all (teardown.ts).
 * Runs on import: this module is the bundle's entry.
 */
import { rootOnlyPath } from '../platform/root-path.js';
import { serveHelper } from './helper.js';
import { start } from './setup.js';
import { teardown } from './teardown.js';

// Root (and its helper, and what they start) looks programs up only where root alone writes:
// sudo's secure_path may name a directory the runner user can write (root-path.ts, T70).
process.env.PATH = rootOnlyPath(process.env.PATH);
process.stdout.on('error', () => undefined);
process.on('SIGHUP', () => undefined);
process.on('SIGPIPE', () => undefined);
const [cmd, arg] = process.argv.slice(2);
if (cmd === 'start' && arg) await start(arg);
else if (cmd === 'teardown' && arg) teardown(arg);
else if (cmd === 'helper' && arg)
  serveHelper(arg, process.argv[4] || undefined, Number(process.argv[5]) || undefined, {
    uid: Number(process.argv[6]) || 0,
    gid: Number(process.argv[7]) || 0,
  });
else {
  process.stderr.write(
    'usage: daemon.js start <config.json> | helper <dir> <pid file> <proxy uid> <client uid> <client gid> | teardown <id>\n',
  );
  process.exitCode = 2;
}
