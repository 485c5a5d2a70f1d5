/**
 * The GitHub App's JWT: RS256, signed with the app's private key, `iss` = app id or client
 * id. `iat` is set 60 s in the past and `exp` 9 min ahead, so a runner clock up to a minute
 * behind or several minutes ahead of GitHub's is still accepted (GitHub refuses an `iat`
 * in the future and an `exp` more than 10 minutes ahead).
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { CordonError } from '../platform/errors.js';
import { GITHUB_TOKEN_NAMES, type GithubAppNames } from './inputs.js';

export const IAT_BACKDATE_S = 60;
export const EXP_AHEAD_S = 540;

/**
 * Reads a PKCS#1 or PKCS#8 RSA key; throws a CordonError naming the input as `names` spells
 * it (github-token's `private-key`, run's `github-app-private-key`), never quoting the key.
 */
export function loadAppKey(pem: string, names: GithubAppNames = GITHUB_TOKEN_NAMES): KeyObject {
  const input = names.input['private-key'];
  const what = `${names.action}: input ${input}`;
  const fix =
    `paste the whole .pem file from the app's settings page (Private keys > Generate) into the secret given as ${input}, ` +
    'BEGIN and END lines included; a one-line secret may use \\n for the line breaks';
  if (!/-----BEGIN (RSA )?PRIVATE KEY-----/.test(pem)) {
    const encrypted = /-----BEGIN ENCRYPTED PRIVATE KEY-----/.test(pem);
    throw new CordonError({
      what: `${what} is not a GitHub App private key`,
      why: encrypted
        ? 'it is an encrypted PKCS#8 key; GitHub App keys are not encrypted'
        : 'it has no "-----BEGIN RSA PRIVATE KEY-----" (PKCS#1) or "-----BEGIN PRIVATE KEY-----" (PKCS#8) line',
      fix,
      input,
    });
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch {
    throw new CordonError({
      what: `${what} is malformed`,
      why: 'its PEM armour is there but the key inside does not decode (cut short, wrapped, or quoted?)',
      fix,
      input,
    });
  }
  if (key.asymmetricKeyType !== 'rsa') {
    throw new CordonError({
      what: `${what} is a ${key.asymmetricKeyType ?? 'non-RSA'} key`,
      why: 'GitHub App JWTs are signed with RS256, which needs the RSA key GitHub generated',
      fix,
      input,
    });
  }
  return key;
}

/** Signs an app JWT as of `nowS` (seconds, already corrected for any known clock offset). */
export async function signAppJwt(key: KeyObject, issuer: string, nowS: number): Promise<string> {
  // GitHub wants the app id as a number, the client id as a string.
  const iss = /^\d+$/.test(issuer) ? Number(issuer) : issuer;
  return new SignJWT({ iss } as Record<string, unknown>)
    .setProtectedHeader({ alg: 'RS256', typ: 'JWT' })
    .setIssuedAt(nowS - IAT_BACKDATE_S)
    .setExpirationTime(nowS + EXP_AHEAD_S)
    .sign(key);
}
