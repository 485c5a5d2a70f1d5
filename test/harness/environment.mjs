/**
 * The Node environment, plus what cleanup.ts registered: run after the test file's own
 * `afterAll` hooks, so its jobs' post steps have run before their roots go.
 */
import { TestEnvironment } from 'jest-environment-node';

export default class CleanupEnvironment extends TestEnvironment {
  async teardown() {
    const hooks = this.global.__cordonAfterFile ?? [];
    try {
      for (const hook of hooks) hook();
    } finally {
      await super.teardown();
    }
  }
}
