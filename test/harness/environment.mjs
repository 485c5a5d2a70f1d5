/**
 * The Node environment, plus what cleanup.ts registered: run after the test file's own
 * `afterAll` hooks, so its jobs' post steps have run before their roots go. An e2e file
 * leaves a mark in the run's directory (global-setup.mjs), so global-teardown.mjs checks the
 * machine only after runs that touched it (run under the e2e lock, never beside another).
 */
import { writeFileSync } from 'node:fs';
import { join, sep } from 'node:path';
import { TestEnvironment } from 'jest-environment-node';
import { E2E_MARK } from './machine-state.mjs';

export default class CleanupEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    const dir = process.env.CORDON_TEST_RUN_TMP;
    if (dir && context.testPath.includes(`${sep}test${sep}e2e${sep}`)) writeFileSync(join(dir, E2E_MARK), '');
  }

  async teardown() {
    const hooks = this.global.__cordonAfterFile ?? [];
    try {
      for (const hook of hooks) hook();
    } finally {
      await super.teardown();
    }
  }
}
