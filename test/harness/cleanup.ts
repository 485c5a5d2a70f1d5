/**
 * Loaded before each test file (jest `setupFilesAfterEnv`). It hands the environment
 * (environment.mjs) what to run once the file's own `afterAll` hooks are done, since a
 * hook declared here would run before them: remove the job roots and temporary
 * directories the file made, then check that no fence of those jobs left its state
 * behind in /run/cordon.
 */
import { existsSync } from 'node:fs';
import { removeJobs } from '../../src/devkit/run-action.js';
import { cgroupMountDir, fenceId, launcherDropIn, stateDir } from '../../src/rootd/protocol.js';
import { removeTempDirs } from './tmp.js';

const hooks = ((globalThis as { __cordonAfterFile?: (() => void)[] }).__cordonAfterFile ??= []);
hooks.push(() => {
  removeTempDirs();
  const left: string[] = [];
  for (const job of removeJobs()) {
    const dir = stateDir(fenceId(job.runnerTemp));
    for (const p of [dir, cgroupMountDir(dir), launcherDropIn(fenceId(job.runnerTemp))])
      if (existsSync(p)) left.push(p);
  }
  if (left.length > 0) throw new Error(`fences of this file's jobs left behind: ${left.join(', ')}`);
});
