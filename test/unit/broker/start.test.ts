/** startBroker's checks before it starts anything (no process is spawned). */
import { describe, expect, test } from '@jest/globals';
import { startBroker } from '../../../src/broker/start.js';
import { GITHUB_TOKEN_NAMES, type GithubTokenInputs } from '../../../src/github/inputs.js';
import { CordonError } from '../../../src/platform/errors.js';

const github: GithubTokenInputs = {
  issuer: '123',
  issuerInput: 'app-id',
  privateKey: '-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n',
  owner: 'octo-org',
  repositories: ['octo-repo'],
  permissions: { contents: 'read' },
  apiUrl: 'http://127.0.0.1:1',
  skipTokenRevoke: false,
  configureGit: true,
  names: GITHUB_TOKEN_NAMES,
};

describe('startBroker: refresh-before-seconds', () => {
  test('a programmatic caller gets the same refresh-before error as the inputs, before anything starts', async () => {
    const start = startBroker(
      { action: 'run', env: {}, github, refreshBeforeSeconds: 3600 },
      { brokerScript: '/nonexistent/cordon/broker/main.js' },
    );
    await expect(start).rejects.toBeInstanceOf(CordonError);
    await expect(start).rejects.toMatchObject({
      input: 'refresh-before-seconds',
      what: 'run: input refresh-before-seconds "3600" is not valid',
    });
    await expect(start).rejects.toThrow(/an installation token lives 3600 s.*up to 3540/s);
  });
});
