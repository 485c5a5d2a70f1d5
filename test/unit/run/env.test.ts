import { describe, expect, test } from '@jest/globals';
import { readFileSync, statSync } from 'node:fs';
import { buildCommandEnv, prepareShell } from '../../../src/actions/run/env.js';
import { tempDir } from '../../harness/tmp.js';

describe('buildCommandEnv', () => {
  const base = {
    PATH: '/usr/bin',
    HOME: '/home/runner',
    ACTIONS_ID_TOKEN_REQUEST_TOKEN: 't',
    ACTIONS_ID_TOKEN_REQUEST_URL: 'u',
    ACTIONS_RUNTIME_TOKEN: 'r',
    ACTIONS_CACHE_URL: 'c',
    ACTIONS_RESULTS_URL: 'res',
    GITHUB_TOKEN: 'g',
    INPUT_SECRETS: 'A=env:B',
    STATE_x: 'y',
    GITHUB_WORKSPACE: '/w',
    AWS_PROFILE: 'old',
  };

  test('removes the runner credentials and inputs unless kept, and adds what the command gets', () => {
    const { env, removed } = buildCommandEnv({
      base,
      keepEnv: ['ACTIONS_CACHE_URL'],
      secrets: [{ name: 'API_KEY', value: 'v1' }],
      githubToken: 'tok',
      aws: { accessKeyId: 'AKIA', secretAccessKey: 'S', sessionToken: 'T', region: 'eu-west-1' },
    });
    expect(removed).toEqual([
      'ACTIONS_ID_TOKEN_REQUEST_TOKEN',
      'ACTIONS_ID_TOKEN_REQUEST_URL',
      'ACTIONS_RESULTS_URL',
      'ACTIONS_RUNTIME_TOKEN',
      'AWS_PROFILE',
      'GITHUB_TOKEN',
      'INPUT_SECRETS',
      'STATE_x',
    ]);
    expect(env).toEqual({
      PATH: '/usr/bin',
      HOME: '/home/runner',
      GITHUB_WORKSPACE: '/w',
      ACTIONS_CACHE_URL: 'c',
      GH_TOKEN: 'tok',
      GITHUB_TOKEN: 'tok',
      AWS_ACCESS_KEY_ID: 'AKIA',
      AWS_SECRET_ACCESS_KEY: 'S',
      AWS_SESSION_TOKEN: 'T',
      AWS_REGION: 'eu-west-1',
      AWS_DEFAULT_REGION: 'eu-west-1',
      API_KEY: 'v1',
    });
  });

  test('no github-token: no GH_TOKEN, and GITHUB_TOKEN is removed', () => {
    const { env } = buildCommandEnv({ base, keepEnv: [], secrets: [] });
    expect(env.GH_TOKEN).toBeUndefined();
    expect(env.GITHUB_TOKEN).toBeUndefined();
  });

  test('a secret may not also be set by github-token', () => {
    expect(() =>
      buildCommandEnv({ base, keepEnv: [], secrets: [{ name: 'GH_TOKEN', value: 'x' }], githubToken: 't' }),
    ).toThrow('GH_TOKEN would be set by both github-token and secrets');
  });
});

describe('prepareShell', () => {
  const dir = tempDir('cordon-run-shell-');
  test('uses the runner shell lines and a private script file', () => {
    const def = prepareShell('echo hi', '', dir);
    expect(def.argv).toEqual(['bash', '-e', def.scriptPath]);
    expect(readFileSync(def.scriptPath, 'utf8')).toBe('echo hi');
    expect(statSync(def.scriptPath).mode & 0o777).toBe(0o700);
    expect(prepareShell('x', 'bash', dir).argv.slice(0, 4)).toEqual(['bash', '--noprofile', '--norc', '-eo']);
    expect(prepareShell('x', 'perl {0}', dir).argv[0]).toBe('perl');
    expect(() => prepareShell('x', 'zsh', dir)).toThrow('is not a known shell and has no {0}');
  });
});
