import { describe, expect, test } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { REPO_ROOT } from '../../../src/devkit/run-action.js';
import { errorOf } from '../../harness/errors.js';
import { normalizePem, parseGithubTokenInputs } from '../../../src/github/inputs.js';
import { excessGrants, missingGrants, PERMISSIONS } from '../../../src/github/permissions.js';

const base = {
  GITHUB_REPOSITORY: 'octo-org/octo-repo',
  GITHUB_API_URL: 'https://api.github.com',
  'INPUT_APP-ID': '123',
  'INPUT_PRIVATE-KEY': '-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n',
  'INPUT_PERMISSION-CONTENTS': 'write',
};

function parseWith(extra: Record<string, string | undefined>) {
  return parseGithubTokenInputs({ ...base, ...extra });
}

describe('github-token inputs', () => {
  test('defaults: current repository only, the asked permission in API spelling, revoke and git on', () => {
    const i = parseWith({ 'INPUT_PERMISSION-PULL-REQUESTS': 'read' });
    expect(i).toMatchObject({
      issuer: '123',
      issuerInput: 'app-id',
      owner: 'octo-org',
      repositories: ['octo-repo'],
      permissions: { contents: 'write', pull_requests: 'read' },
      apiUrl: 'https://api.github.com',
      skipTokenRevoke: false,
      configureGit: true,
    });
  });

  test('no permission asked is refused with the fix', () => {
    expect(() => parseWith({ 'INPUT_PERMISSION-CONTENTS': '' })).toThrow(/no permission-\* input was given/);
  });

  test('a level a permission does not accept is refused', () => {
    expect(() => parseWith({ 'INPUT_PERMISSION-WORKFLOWS': 'read' })).toThrow(
      /permission-workflows "read".*accepts write/,
    );
    expect(() => parseWith({ 'INPUT_PERMISSION-CONTENTS': 'admin' })).toThrow(/accepts read or write/);
  });

  test('an unknown permission input is refused', () => {
    expect(() => parseWith({ 'INPUT_PERMISSION-EVERYTHING': 'write' })).toThrow(
      /unknown permission input permission-everything/,
    );
  });

  test('repositories: names, owner/name, *, and another owner refused', () => {
    expect(parseWith({ INPUT_REPOSITORIES: 'a, octo-org/b\nc' }).repositories).toEqual(['a', 'b', 'c']);
    expect(parseWith({ INPUT_REPOSITORIES: '*' }).repositories).toEqual([]);
    expect(() => parseWith({ INPUT_REPOSITORIES: 'other/x' })).toThrow(
      /one owner's repositories, and owner is octo-org/,
    );
    expect(() => parseWith({ INPUT_OWNER: 'elsewhere' })).toThrow(/no default repository/);
    expect(parseWith({ INPUT_OWNER: 'elsewhere', INPUT_REPOSITORIES: 'x' }).repositories).toEqual(['x']);
  });

  test('repositories: an entry is taken whole or refused, never cut (owner/repo/extra, a URL, * among names)', () => {
    expect(() => parseWith({ INPUT_REPOSITORIES: 'octo-org/b/extra' })).toThrow(
      /repositories "octo-org\/b\/extra" is not valid.*has 3 parts.*write `octo-org\/b`/s,
    );
    expect(() => parseWith({ INPUT_REPOSITORIES: 'a, octo-org/b/tree/main' })).toThrow(/has 4 parts/);
    expect(() => parseWith({ INPUT_REPOSITORIES: 'https://github.com/octo-org/b' })).toThrow(
      /that is a URL, not a repository/,
    );
    expect(() => parseWith({ INPUT_REPOSITORIES: 'github.com/octo-org/b' })).toThrow(/that is a URL/);
    expect(() => parseWith({ INPUT_REPOSITORIES: '*, a' })).toThrow(/cannot be listed with names/);
    expect(() => parseWith({ INPUT_REPOSITORIES: 'octo-org/..' })).toThrow(/not a repository name/);
    expect(() => parseWith({ INPUT_REPOSITORIES: 'octo-org / b' })).toThrow(/is not valid/);
    // Blank entries and trailing commas lose nothing; the same name in another case is one repository.
    expect(parseWith({ INPUT_REPOSITORIES: 'a,, b,\n\nA, octo-org/B,' }).repositories).toEqual(['a', 'b']);
  });

  test('app-id and client-id: exactly one, well formed', () => {
    expect(() => parseWith({ 'INPUT_CLIENT-ID': 'Iv23abc' })).toThrow(/both app-id and client-id/);
    expect(() => parseWith({ 'INPUT_APP-ID': '' })).toThrow(/app-id \(or client-id\) is required/);
    expect(() => parseWith({ 'INPUT_APP-ID': 'my-app' })).toThrow(/an app id is a number/);
    expect(parseWith({ 'INPUT_APP-ID': '', 'INPUT_CLIENT-ID': 'Iv23abc' })).toMatchObject({
      issuer: 'Iv23abc',
      issuerInput: 'client-id',
    });
  });

  test('the private key never appears in an input error', () => {
    expect(() => parseWith({ 'INPUT_PRIVATE-KEY': '' })).toThrow(/private-key is required/);
  });

  test('github-api-url: a bad input is named as the input; a bad GITHUB_API_URL with no input, as the variable', () => {
    const input = errorOf(() => parseWith({ 'INPUT_GITHUB-API-URL': 'ghes.example.com' }));
    expect(input.input).toBe('github-api-url');
    expect(input.message).toContain('github-token: input github-api-url "ghes.example.com" is not valid');
    const variable = errorOf(() => parseWith({ GITHUB_API_URL: 'ghes.example.com' }));
    expect(variable.input).toBeUndefined();
    expect(variable.message).toContain('github-token: GITHUB_API_URL "ghes.example.com" is not valid');
    expect(variable.message).toContain('github-api-url');
  });

  test('escaped \\n and CRLF in a PEM become newlines', () => {
    expect(normalizePem('-----BEGIN X-----\\nAB\\n-----END X-----')).toBe(
      '-----BEGIN X-----\nAB\n-----END X-----\n',
    );
    expect(normalizePem('-----BEGIN X-----\r\nAB\r\n-----END X-----\r\n')).toBe(
      '-----BEGIN X-----\nAB\n-----END X-----\n',
    );
  });

  test('action.yml declares exactly one input per permission', () => {
    const meta = parse(readFileSync(join(REPO_ROOT, 'actions/github-token/action.yml'), 'utf8')) as {
      inputs: Record<string, unknown>;
      outputs: Record<string, unknown>;
    };
    const declared = Object.keys(meta.inputs)
      .filter((k) => k.startsWith('permission-'))
      .map((k) => k.slice('permission-'.length));
    expect(declared.sort()).toEqual(Object.keys(PERMISSIONS).sort());
    expect(Object.keys(meta.outputs).sort()).toEqual(
      [
        'app-slug',
        'bot-id',
        'bot-login',
        'expires-at',
        'git-user-email',
        'git-user-name',
        'installation-id',
        'permissions',
        'token',
      ].sort(),
    );
  });
});

describe('grants', () => {
  test('excess: a permission not asked, a higher level; metadata: read is tolerated', () => {
    expect(excessGrants({ contents: 'read' }, { contents: 'read', metadata: 'read' })).toEqual([]);
    expect(excessGrants({ contents: 'read' }, { contents: 'write' })).toEqual([
      'contents: write (asked read)',
    ]);
    expect(
      excessGrants({ contents: 'read' }, { contents: 'read', metadata: 'write', issues: 'read' }),
    ).toEqual(['metadata: write (not asked)', 'issues: read (not asked)']);
    expect(excessGrants({ contents: 'write' }, { contents: 'read' })).toEqual([]);
  });

  test('missing: what the installation lacks for the ask', () => {
    expect(
      missingGrants({ contents: 'write', issues: 'read' }, { contents: 'read', issues: 'write' }),
    ).toEqual(['contents: write (installation has read)']);
    expect(missingGrants({ administration: 'read' }, {})).toEqual([
      'administration: read (installation has none)',
    ]);
  });
});
