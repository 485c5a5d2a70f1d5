import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { readFileSync, writeFileSync } from 'node:fs';
import { Job } from '../../src/devkit/run-action.js';
import { startOidcIssuer, type OidcIssuer } from '../../src/devkit/oidc-issuer.js';

let issuer: OidcIssuer;
beforeAll(async () => {
  issuer = await startOidcIssuer();
});
afterAll(() => issuer.close());

describe('start action, as a whole program', () => {
  test('main records the run with OIDC claims; post renders the summary and attribution.json', async () => {
    const job = new Job({ env: issuer.env });
    const main = await job.run('start', 'main');
    expect(main.code).toBe(0);
    expect(main.state.nonce).toMatch(/^[0-9a-f]{64}$/);
    expect(main.state.head).toMatch(/^[0-9a-f]{64}$/);
    const ledgerFile = main.outputs['ledger-path'];
    const event = JSON.parse(readFileSync(ledgerFile, 'utf8').trim());
    expect(event.type).toBe('run.recorded');
    expect(event.data).toMatchObject({ repository: 'octo-org/octo-repo', runId: '4242', actor: 'octocat' });
    expect(event.data.oidc.sub).toBe('repo:octo-org/octo-repo:ref:refs/heads/main');
    expect(issuer.requests).toContain('cordon');
    // The ID token is masked before anything else, and never written anywhere.
    expect(main.masks.length).toBeGreaterThan(0);
    const token = main.masks.find((m) => m.startsWith('ey')) as string;
    expect(token).toBeDefined();
    expect(readFileSync(ledgerFile, 'utf8')).not.toContain(token);

    const post = await job.run('start', 'post', { state: main.state });
    expect(post.code).toBe(0);
    expect(post.summary).toContain('## Cordon: what the agent did');
    expect(post.summary).toContain('Record intact');
    expect(post.summary).toContain('octo-org/octo-repo');
    const attribution = JSON.parse(readFileSync(post.outputs['attribution-path'], 'utf8'));
    expect(attribution.run.repository).toBe('octo-org/octo-repo');
    for (const text of [post.stdout, post.summary, JSON.stringify(attribution)])
      expect(text).not.toContain(token);
  });

  test('without id-token permission it still records the run, and says so', async () => {
    const job = new Job();
    const main = await job.run('start', 'main');
    expect(main.code).toBe(0);
    expect(main.stdout).toContain('no id-token permission');
  });

  test('post fails the job when the ledger was edited after start (fail-on-tamper default)', async () => {
    const job = new Job();
    const main = await job.run('start', 'main');
    const file = main.outputs['ledger-path'];
    writeFileSync(file, readFileSync(file, 'utf8').replace('octocat', 'someone-else'));
    const post = await job.run('start', 'post', { state: main.state });
    expect(post.code).toBe(1);
    expect(post.summary).toContain('RECORD ALTERED');
    const error = post.commands.find((c) => c.command === 'error');
    expect(error?.message).toContain('the run ledger was altered');

    const job2 = new Job();
    const main2 = await job2.run('start', 'main');
    writeFileSync(main2.outputs['ledger-path'], '');
    const post2 = await job2.run('start', 'post', {
      state: main2.state,
      inputs: { 'fail-on-tamper': 'false' },
    });
    expect(post2.code).toBe(0);
    expect(post2.summary).toContain('RECORD ALTERED');
    expect(post2.summary).toContain('the ledger is empty or missing');
  });

  test('a bad input fails with the input named', async () => {
    const job = new Job();
    const main = await job.run('start', 'main', { inputs: { 'fail-on-tamper': 'sometimes' } });
    expect(main.code).toBe(1);
    expect(main.commands.find((c) => c.command === 'error')?.message).toContain(
      'input fail-on-tamper "sometimes"',
    );
  });
});
