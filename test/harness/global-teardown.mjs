/**
 * Fails the test run if it left anything in its temporary directory (global-setup.mjs):
 * every test removes what it made. The directory itself goes either way. The egress
 * daemon's system user (`cordon-dns`, made by the first fence and kept, as on a runner) is
 * removed when this run made it and no daemon is left using it. Then fails the run for
 * anything the tests name on the machine (machine-state.mjs: /run/cordon*, users, sudoers
 * drop-ins, namespaces, nft tables, cgroups, mounts) that was not there at its start.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { E2E_MARK, machineState, newSince } from './machine-state.mjs';

/**
 * What tools the tests run keep there as a cache (tsx: `tsx-<uid>`), and environment.mjs's
 * mark that an e2e file ran: not a test's leftover.
 */
const CACHES = /^(tsx-\d+|\.e2e-ran)$/;

async function removeDnsUser() {
  if (process.env.CORDON_TEST_DNS_USER_BEFORE !== 'false') return;
  if (spawnSync('getent', ['passwd', 'cordon-dns']).status !== 0) return;
  // A daemon the last test killed may take a moment to end (at most 3 s here).
  for (let i = 0; i < 30 && spawnSync('pgrep', ['-u', 'cordon-dns']).status === 0; i++)
    await new Promise((r) => setTimeout(r, 100));
  if (spawnSync('pgrep', ['-u', 'cordon-dns']).status === 0) return;
  spawnSync('userdel', ['cordon-dns']);
  spawnSync('groupdel', ['cordon-dns']);
}

export default async function globalTeardown() {
  await removeDnsUser();
  const problems = [];
  const before = process.env.CORDON_TEST_MACHINE_BEFORE;
  const dir = process.env.CORDON_TEST_RUN_TMP;
  // Only after e2e files (they hold the e2e lock): a unit run beside an e2e run would see
  // that run's fences as its own.
  if (before && dir && existsSync(join(dir, E2E_MARK))) {
    const made = newSince(JSON.parse(before), machineState());
    if (made.length > 0)
      problems.push(
        `the test run left ${made.length} things on the machine that were not there at its start (each test removes what it made, by name, however it ends): ${made.join(', ')}`,
      );
  }
  if (dir) {
    const left = readdirSync(dir).filter((name) => !CACHES.test(name));
    rmSync(dir, { recursive: true, force: true });
    if (left.length > 0)
      problems.push(`the test run left ${left.length} entries in ${dir}: ${left.sort().join(', ')}`);
  }
  if (problems.length > 0) throw new Error(problems.join('; '));
}
