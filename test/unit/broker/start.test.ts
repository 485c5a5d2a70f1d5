/**
 * startBroker's checks before it starts anything, and the error of a broker that did not
 * start (the real broker from src through tsx, or a stand-in that prints one ERROR line).
 */
import { afterAll, describe, expect, test } from '@jest/globals';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startBroker } from '../../../src/broker/start.js';
import { RUN_GITHUB_APP_NAMING } from '../../../src/actions/run/broker.js';
import { appNames, GITHUB_TOKEN_NAMES, type GithubTokenInputs } from '../../../src/github/inputs.js';
import { CordonError } from '../../../src/platform/errors.js';
import { MAX_ERROR_FIX, parseErrorLine } from '../../../src/platform/detached.js';
import { removeTempDirs, tempDir } from '../../harness/tmp.js';

afterAll(removeTempDirs);

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

const TSX = join(process.cwd(), 'node_modules', '.bin', 'tsx');
const SRC_BROKER = join(process.cwd(), 'src', 'broker', 'main.ts');
const SRC_HELPER = join(process.cwd(), 'src', 'broker', 'helper.ts');

/** A stand-in broker that prints `line` on stdout and exits 1. */
function standIn(dir: string, line: string): string {
  const f = join(dir, 'main.mjs');
  writeFileSync(
    f,
    `process.stdin.resume(); process.stdin.on('end', () => { process.stdout.write(${JSON.stringify(line + '\n')}); setTimeout(() => process.exit(1), 50); });\n`,
  );
  return f;
}

describe('startBroker: a broker that does not start', () => {
  test("a broker start that fails on a bad key gives an error whose input is run's github-app-private-key", async () => {
    const dir = tempDir('cordon-broker-start-');
    const key = '-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\n-----END RSA PRIVATE KEY-----\n';
    const start = startBroker(
      {
        action: 'run',
        env: { RUNNER_TEMP: dir, PATH: process.env.PATH ?? '/usr/bin:/bin' },
        github: { ...github, privateKey: key, names: appNames('run', RUN_GITHUB_APP_NAMING) },
      },
      { node: TSX, brokerScript: SRC_BROKER, helperScript: SRC_HELPER, timeoutMs: 25000 },
    );
    await expect(start).rejects.toBeInstanceOf(CordonError);
    const err = (await start.catch((e: unknown) => e)) as CordonError;
    expect(err.input).toBe('github-app-private-key');
    expect(err.what).toBe('run: the credential broker did not start');
    expect(err.why).toBe(
      'run: input github-app-private-key is malformed — its PEM armour is there but the key inside does not decode (cut short, wrapped, or quoted?)',
    );
    expect(err.fix).toMatch(
      /^paste the whole \.pem file .* given as github-app-private-key, .*; see the broker log \//,
    );
    // The fix is said once, and the key is in none of it.
    expect(err.message.split('paste the whole .pem').length).toBe(2);
    expect(err.message).not.toContain('MIIBOgIBAAJBAKj34GkxFhD9');
  }, 30000);

  test('an input and fix that are not plain bounded strings are dropped; the message stays', async () => {
    const dir = tempDir('cordon-broker-standin-');
    const line = `ERROR ${JSON.stringify({ message: 'run: it failed', input: 'github-app-private-key\nx', fix: 'a'.repeat(MAX_ERROR_FIX + 1) })}`;
    const start = startBroker(
      { action: 'run', env: { RUNNER_TEMP: dir, PATH: process.env.PATH ?? '/usr/bin:/bin' }, github },
      { brokerScript: standIn(dir, line), helperScript: SRC_HELPER, timeoutMs: 10000 },
    );
    const err = (await start.catch((e: unknown) => e)) as CordonError;
    expect(err).toBeInstanceOf(CordonError);
    expect(err.input).toBeUndefined();
    expect(err.why).toBe('run: it failed');
    expect(err.fix).toMatch(/^see the broker log \/.*; check the role, the app and the network$/);
  }, 15000);

  test('the ERROR line: input is an input name and fix one line of bounded text, or neither is kept', () => {
    const ok = parseErrorLine(
      JSON.stringify({ message: 'm', input: 'aws-role-to-assume', fix: 'do this' }),
      'the broker',
    );
    expect([ok.message, ok.input, ok.fix]).toEqual(['m', 'aws-role-to-assume', 'do this']);
    for (const input of [42, 'A B', 'x'.repeat(65), '../etc', '', ['a']]) {
      expect(parseErrorLine(JSON.stringify({ message: 'm', input }), 'the broker').input).toBeUndefined();
    }
    for (const fix of [7, '', 'two\nlines', 'esc\u001b[31m', 'x'.repeat(MAX_ERROR_FIX + 1), { a: 1 }]) {
      expect(parseErrorLine(JSON.stringify({ message: 'm', fix }), 'the broker').fix).toBeUndefined();
    }
    expect(parseErrorLine('{not json', 'the broker').message).toBe(
      'the broker reported an error that is not JSON: {not json',
    );
    expect(parseErrorLine('null', 'the broker').message).toBe(
      'the broker reported an error without a message',
    );
  });
});
