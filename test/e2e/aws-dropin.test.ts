/**
 * configure-aws-credentials' `with:` block on Cordon's aws, whole-program through the
 * harness against moto: role chaining from the first step's credentials with an external ID
 * and session tags, output-credentials, aws-expiration, unset-current-credentials, the retry
 * ceiling, and an input Cordon does not take failing the step by name (never its value).
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { motoAvailable, startMoto, type Moto } from '../../src/devkit/moto.js';
import { startOidcIssuer, type OidcIssuer } from '../../src/devkit/oidc-issuer.js';
import { startFaultProxy, type FaultProxy } from '../../src/devkit/fault-proxy.js';
import { Job } from '../../src/devkit/run-action.js';

const FIRST = 'arn:aws:iam::111122223333:role/first';
const SECOND = 'arn:aws:iam::444455556666:role/second';

const available = motoAvailable();
if (!available && process.env.CI === 'true')
  throw new Error('moto_server is not on PATH; CI must provide it');
const maybe = available ? describe : describe.skip;

let moto: Moto;
let issuer: OidcIssuer;
let proxy: FaultProxy;

beforeAll(async () => {
  if (!available) return;
  moto = await startMoto();
  issuer = await startOidcIssuer();
  proxy = await startFaultProxy(moto.endpoint);
}, 60000);

afterAll(async () => {
  await proxy?.close();
  await issuer?.close();
  await moto?.stop();
});

const newJob = (): Job =>
  new Job({ env: { ...issuer.env, ...proxy.env, GITHUB_REPOSITORY: 'o/r', GITHUB_SHA: 'abc123' } });
const base = { 'role-to-assume': FIRST, 'aws-region': 'eu-west-1' };

/** The STS requests' form parameters the proxy saw since `from`. */
const sentSince = (from: number): URLSearchParams[] => proxy.requests.slice(from).map((r) => r.params);

maybe('configure-aws-credentials inputs', () => {
  test('role-chaining: AssumeRole signed with the first step credentials, external id and session tags; outputs as configure-aws-credentials sets them', async () => {
    const job = newJob();
    const first = await job.run('aws', 'main', { inputs: base });
    expect(first.code).toBe(0);
    const firstKey = first.env.AWS_ACCESS_KEY_ID;
    expect(firstKey).toBeTruthy();
    const at = proxy.requests.length;
    const second = await job.run('aws', 'main', {
      inputs: {
        'role-to-assume': SECOND,
        'aws-region': 'eu-west-1',
        'role-chaining': 'true',
        'role-external-id': 'ext-id-7788',
        'role-duration-seconds': '3600',
        'output-credentials': 'true',
        'retry-max-attempts': '12',
      },
      // No ID token for the second step: chaining must not need one.
      env: { ACTIONS_ID_TOKEN_REQUEST_URL: undefined, ACTIONS_ID_TOKEN_REQUEST_TOKEN: undefined },
    });
    expect(second.stderr + second.stdout).not.toContain('::error');
    expect(second.code).toBe(0);
    expect(second.outputs['assumed-role-arn']).toContain(':assumed-role/second/');
    expect(second.outputs['aws-expiration']).toBe(second.outputs.expiration);
    expect(Date.parse(second.outputs['aws-expiration'])).toBeGreaterThan(Date.now());
    // output-credentials with export: env: both the variables and the outputs, masked.
    expect(second.outputs['aws-access-key-id']).toBe(second.env.AWS_ACCESS_KEY_ID);
    expect(second.outputs['aws-secret-access-key']).toBeTruthy();
    expect(second.masks).toContain(second.outputs['aws-secret-access-key']);
    expect(second.env.AWS_ACCESS_KEY_ID).not.toBe(firstKey);
    const sent = sentSince(at);
    expect(sent).toHaveLength(1);
    expect(sent[0].get('Action')).toBe('AssumeRole');
    expect(sent[0].get('ExternalId')).toBe('ext-id-7788');
    expect(sent[0].get('Tags.member.1.Key')).toBe('GitHub');
    expect(sent[0].get('Tags.member.2.Key')).toBe('Repository');
    expect(sent[0].get('Tags.member.2.Value')).toBe('o/r');
    // Signed with the first step's key, not anonymous.
    expect(proxy.requests[at].authorization).toContain(`Credential=${firstKey}/`);
    expect(second.stdout).toContain('chained to');
  });

  test('role-skip-session-tagging sends no tags; unset-current-credentials blanks the keys before a profile export', async () => {
    const job = newJob();
    expect((await job.run('aws', 'main', { inputs: base })).code).toBe(0);
    const at = proxy.requests.length;
    const r = await job.run('aws', 'main', {
      inputs: {
        ...base,
        'role-to-assume': SECOND,
        'role-chaining': 'true',
        'role-skip-session-tagging': 'true',
        'unset-current-credentials': 'true',
        export: 'profile',
      },
    });
    expect(r.code).toBe(0);
    expect(sentSince(at)[0].get('Action')).toBe('AssumeRole');
    expect([...sentSince(at)[0].keys()].filter((k) => k.startsWith('Tags'))).toEqual([]);
    expect(r.env.AWS_ACCESS_KEY_ID).toBe('');
    expect(r.env.AWS_SECRET_ACCESS_KEY).toBe('');
    expect(r.env.AWS_PROFILE).toBe('cordon');
  });

  test('role-chaining with no credentials in the environment is an error naming the input', async () => {
    const r = await newJob().run('aws', 'main', { inputs: { ...base, 'role-chaining': 'true' } });
    expect(r.code).not.toBe(0);
    expect(r.stdout).toContain('role-chaining found no AWS credentials');
  });

  test('role-external-id without role-chaining, and retry-max-attempts above 12, are errors naming the input', async () => {
    const a = await newJob().run('aws', 'main', { inputs: { ...base, 'role-external-id': 'ext-1' } });
    expect(a.code).not.toBe(0);
    expect(a.stdout).toMatch(/::error.*role-external-id/);
    const b = await newJob().run('aws', 'main', { inputs: { ...base, 'retry-max-attempts': '13' } });
    expect(b.code).not.toBe(0);
    expect(b.stdout).toMatch(/::error.*retry-max-attempts/);
  });

  test('an input Cordon does not take fails the step by name, without quoting its value and before any call', async () => {
    const at = proxy.requests.length;
    const r = await newJob().run('aws', 'main', {
      inputs: { ...base, 'aws-secret-access-key': 'long-lived-secret-9f8e7d6c', 'role-session-tags': 'a=b' },
    });
    expect(r.code).not.toBe(0);
    expect(r.stdout).toMatch(
      /::error.*inputs `aws-secret-access-key`, `role-session-tags` are not supported/,
    );
    expect(r.stdout + r.stderr).not.toContain('long-lived-secret-9f8e7d6c');
    expect(proxy.requests.length).toBe(at);
  });

  test('special-characters-workaround ends with a key of letters and digits only', async () => {
    const r = await newJob().run('aws', 'main', {
      inputs: {
        ...base,
        'special-characters-workaround': 'true',
        'retry-max-attempts': '12',
        'output-credentials': 'true',
      },
    });
    // moto's keys may or may not hold + or /; either the key is clean or the step says none was.
    if (r.code === 0) expect(r.outputs['aws-secret-access-key']).toMatch(/^[A-Za-z0-9]+$/);
    else expect(r.stdout).toContain('special-characters-workaround');
  });
});
