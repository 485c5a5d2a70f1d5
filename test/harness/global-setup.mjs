/**
 * Gives the test run a temporary directory of its own (TMPDIR, so `os.tmpdir()` in the
 * tests), so global-teardown.mjs can tell what this run left from what other runs on the
 * machine make meanwhile. 0755: a step's own user must reach the job roots inside. Notes
 * whether the egress daemon's system user (`cordon-dns`) was there before the run, so
 * global-teardown.mjs removes it only when the run made it. Keeps what the tests name on
 * the machine (machine-state.mjs), so global-teardown.mjs can fail the run for what it left.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { machineState } from './machine-state.mjs';

export default function globalSetup() {
  const dir = mkdtempSync(join(tmpdir(), 'cordon-test-run-'));
  chmodSync(dir, 0o755);
  process.env.CORDON_TEST_RUN_TMP = dir;
  process.env.TMPDIR = dir;
  process.env.CORDON_TEST_MACHINE_BEFORE = JSON.stringify(machineState());
  process.env.CORDON_TEST_DNS_USER_BEFORE = String(
    spawnSync('getent', ['passwd', 'cordon-dns']).status === 0,
  );
}
