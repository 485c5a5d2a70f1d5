/** Certificates for the tests' own TLS servers. */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

/**
 * A self-signed certificate (EC P-256, one day) for `names` (the first its CN, all its
 * SANs) and its key, written by openssl to cert.pem and key.pem in `dir` (bounded: 20 s);
 * returns their paths.
 */
export function selfSignedCert(dir: string, names: string[]): { cert: string; key: string } {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const made = spawnSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      `/CN=${names[0]}`,
      '-addext',
      `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`,
    ],
    { encoding: 'utf8', timeout: 20000 },
  );
  if (made.status !== 0)
    throw new Error(`openssl req failed (status ${made.status}): ${made.stderr ?? made.error?.message}`);
  return { cert, key };
}
