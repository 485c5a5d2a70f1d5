/**
 * Fails the test run if it left anything in its temporary directory (global-setup.mjs):
 * every test removes what it made. The directory itself goes either way. The egress
 * daemon's system user (`cordon-dns`, made by the first fence and kept, as on a runner) is
 * removed when this run made it and no daemon is left using it.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';

/** What tools the tests run keep there as a cache (tsx: `tsx-<uid>`), not a test's leftover. */
const CACHES = /^tsx-\d+$/;

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
  const dir = process.env.CORDON_TEST_RUN_TMP;
  if (!dir) return;
  const left = readdirSync(dir).filter((name) => !CACHES.test(name));
  rmSync(dir, { recursive: true, force: true });
  if (left.length > 0)
    throw new Error(`the test run left ${left.length} entries in ${dir}: ${left.sort().join(', ')}`);
}
