/**
 * The stand-ins a workflow's Cordon steps call, as one program so they can run inside the
 * fenced "runner" namespace (started with `node --import tsx`, on its loopback): the OIDC
 * issuer, the GitHub API with an App installed on octo-org, and the moto server holding
 * the Secrets Manager secrets named in the argument. Prints one JSON line when ready;
 * SIGTERM closes everything.
 *
 * usage: standins.ts '{"secrets": {"ci/npm-token": "value"}}'
 */
import { startGithubApi, makeAppKey } from '../../src/devkit/github-api.js';
import { createMotoSecret, startMoto } from '../../src/devkit/moto.js';
import { startOidcIssuer } from '../../src/devkit/oidc-issuer.js';

export interface StandIns {
  /** ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN. */
  oidcEnv: Record<string, string>;
  githubUrl: string;
  appId: string;
  /** The App's private key (PKCS#1 PEM), for `secrets.*_APP_KEY`. */
  appKey: string;
  motoEndpoint: string;
}

const APP_ID = 4242;

const { secrets } = JSON.parse(process.argv[2] ?? '{}') as { secrets?: Record<string, string> };
const issuer = await startOidcIssuer();
const key = makeAppKey();
const github = await startGithubApi({
  appId: APP_ID,
  slug: 'cordon-example-agent',
  publicKey: key.publicKey,
  botId: 990042,
  installations: [
    {
      id: 77,
      account: 'octo-org',
      repositories: ['octo-repo'],
      permissions: { contents: 'write', pull_requests: 'write', issues: 'write', metadata: 'read' },
    },
  ],
});
const moto = await startMoto();
for (const [name, value] of Object.entries(secrets ?? {})) await createMotoSecret(moto.endpoint, name, value);

const ready: StandIns = {
  oidcEnv: issuer.env,
  githubUrl: github.url,
  appId: String(APP_ID),
  appKey: key.pkcs1,
  motoEndpoint: moto.endpoint,
};
console.log(JSON.stringify(ready));

process.once('SIGTERM', () => {
  void Promise.allSettled([issuer.close(), github.close(), moto.stop()]).then(() => process.exit(0));
});
