/**
 * Fails the test run if it left anything in its temporary directory (global-setup.mjs):
 * every test removes what it made. The directory itself goes either way.
 */
import { readdirSync, rmSync } from 'node:fs';

/** What tools the tests run keep there as a cache (tsx: `tsx-<uid>`), not a test's leftover. */
const CACHES = /^tsx-\d+$/;

export default function globalTeardown() {
  const dir = process.env.CORDON_TEST_RUN_TMP;
  if (!dir) return;
  const left = readdirSync(dir).filter((name) => !CACHES.test(name));
  rmSync(dir, { recursive: true, force: true });
  if (left.length > 0)
    throw new Error(`the test run left ${left.length} entries in ${dir}: ${left.sort().join(', ')}`);
}
