/**
 * The GitHub stand-in (src/devkit/github-api.ts) with one App installed on octo-org/octo-repo
 * with contents: write, as the e2e tests of the agent's App token use it.
 */
import type { KeyObject } from 'node:crypto';
import { afterEach } from '@jest/globals';
import { startGithubApi, type GithubApiServer } from '../../src/devkit/github-api.js';

/**
 * Starts the stand-in for the App (`appId`, `slug`, its bot's `botId`, its `publicKey`) with
 * installation `installationId` on octo-org/octo-repo (contents: write, metadata: read);
 * pushes its close onto `cleanup`.
 */
export async function startAppApi(
  app: { appId: number; slug: string; botId: number; publicKey: string | KeyObject; installationId: number },
  cleanup: (() => Promise<void> | void)[],
): Promise<GithubApiServer> {
  const s = await startGithubApi({
    appId: app.appId,
    slug: app.slug,
    botId: app.botId,
    publicKey: app.publicKey,
    installations: [
      {
        id: app.installationId,
        account: 'octo-org',
        repositories: ['octo-repo'],
        permissions: { contents: 'write', metadata: 'read' },
      },
    ],
  });
  cleanup.push(() => s.close());
  return s;
}

/**
 * A test file's closers: what a test pushes (servers, temporary roots) is run, last first,
 * after that test, however it ended.
 */
export function closeAfterEach(): (() => Promise<void> | void)[] {
  const cleanup: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });
  return cleanup;
}
