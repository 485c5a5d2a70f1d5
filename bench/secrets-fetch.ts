/**
 * Fetching 100 secrets from the moto server on loopback: bounded parallel fetch (the
 * default, 8 in flight) against one at a time; directly, and through a loopback proxy that
 * holds each request 25 ms, about a round trip to a regional AWS endpoint.
 * Run: npx tsx bench/secrets-fetch.ts
 */
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { startFaultProxy } from '../src/devkit/fault-proxy.js';
import { startMoto } from '../src/devkit/moto.js';
import { fetchSecrets } from '../src/secrets/fetch.js';
import { parseSecretSpecs } from '../src/secrets/spec.js';

const COUNT = 100;
const moto = await startMoto();
try {
  const sm = new SecretsManagerClient({
    region: 'us-east-1',
    endpoint: moto.endpoint,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  });
  for (let i = 0; i < COUNT; i++) {
    await sm.send(
      new CreateSecretCommand({ Name: `bench/${i}`, SecretString: `bench-secret-value-${i}-abcdef` }),
    );
  }
  sm.destroy();
  const specs = parseSecretSpecs(
    Array.from({ length: COUNT }, (_, i) => `S${i}=aws-sm:bench/${i}`).join('\n'),
  );
  const proxy = await startFaultProxy(moto.endpoint);
  proxy.always({ kind: 'delay', ms: 25 });
  const time = async (concurrency: number, endpoint: string): Promise<number> => {
    let best = Infinity;
    for (let r = 0; r < 3; r++) {
      const t = performance.now();
      const got = await fetchSecrets(specs, {
        env: { ...moto.env, AWS_ENDPOINT_URL: endpoint },
        concurrency,
      });
      if (got.length !== COUNT) throw new Error('short fetch');
      best = Math.min(best, performance.now() - t);
    }
    return best;
  };
  for (const c of [1, 4, 8, 16]) {
    console.log(
      `fetch ${COUNT} secrets from moto, ${c} in flight: ${(await time(c, moto.endpoint)).toFixed(0)} ms (best of 3)`,
    );
  }
  for (const c of [1, 8]) {
    console.log(
      `fetch ${COUNT} secrets, 25 ms added per request, ${c} in flight: ${(await time(c, proxy.url)).toFixed(0)} ms (best of 3)`,
    );
  }
  await proxy.close();
} finally {
  await moto.stop();
}
