/**
 * Gives the test run a temporary directory of its own (TMPDIR, so `os.tmpdir()` in the
 * tests), so global-teardown.mjs can tell what this run left from what other runs on the
 * machine make meanwhile. 0755: a step's own user must reach the job roots inside.
 */
import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function globalSetup() {
  const dir = mkdtempSync(join(tmpdir(), 'cordon-test-run-'));
  chmodSync(dir, 0o755);
  process.env.CORDON_TEST_RUN_TMP = dir;
  process.env.TMPDIR = dir;
}
