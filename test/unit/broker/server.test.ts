/** serveBroker in this process against the loopback GitHub API: routes, counts, masking, revocation. */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CONFIG_VERSION, type BrokerConfig } from '../../../src/broker/config.js';
import { serveBroker } from '../../../src/broker/server.js';
import { makeAppKey, startGithubApi, type GithubApiServer } from '../../../src/devkit/github-api.js';
import { appNames, GITHUB_TOKEN_NAMES } from '../../../src/github/inputs.js';
import { RUN_GITHUB_APP_NAMING } from '../../../src/actions/run/broker.js';
import { tempDir } from '../../harness/tmp.js';

let api: GithubApiServer;
let key: ReturnType<typeof makeAppKey>;
let dir: string;

beforeAll(async () => {
  key = makeAppKey();
  dir = tempDir('cordon-broker-unit-');
  api = await startGithubApi({
    appId: 11,
    slug: 'cordon-agent',
    botId: 5,
    publicKey: key.publicKey,
    installations: [
      { id: 9, account: 'octo-org', repositories: ['octo-repo'], permissions: { contents: 'write' } },
    ],
  });
});

afterAll(async () => {
  await api.close();
  rmSync(dir, { recursive: true, force: true });
});

function config(over: Partial<BrokerConfig> = {}): BrokerConfig {
  return {
    v: CONFIG_VERSION,
    bind: '127.0.0.1',
    bearer: 'c'.repeat(64),
    controlToken: 'd'.repeat(64),
    ledgerPath: join(dir, `ledger-${Math.random()}.jsonl`),
    action: 'run',
    refreshBeforeSeconds: 300,
    maxLifetimeSeconds: 60,
    github: {
      issuer: '11',
      issuerInput: 'app-id',
      privateKey: key.pkcs8,
      owner: 'octo-org',
      repositories: ['octo-repo'],
      permissions: { contents: 'write' },
      apiUrl: api.url,
      names: GITHUB_TOKEN_NAMES,
    },
    ...over,
  };
}

describe('serveBroker', () => {
  test('serves the token, answers 404/405 for the rest, sends new secrets to be masked, revokes at stop', async () => {
    const masked: string[] = [];
    const lines: string[] = [];
    const cfg = config({ refreshBeforeSeconds: 4000 });
    const b = await serveBroker(cfg, { onSecret: (v) => masked.push(v), log: (l) => lines.push(l) });
    const base = `http://127.0.0.1:${b.port}`;
    const auth = { authorization: `Bearer ${cfg.bearer}` };
    const r1 = await fetch(`${base}/github/token`, { headers: auth });
    const t1 = (await r1.json()) as { token: string; expiresAt: string };
    expect(r1.headers.get('cache-control')).toBe('no-store');
    expect(masked).toContain(t1.token);
    expect(masked).toContain(cfg.bearer);
    expect((await fetch(`${base}/aws/credentials`, { headers: auth })).status).toBe(404);
    expect((await fetch(`${base}/github/token`, { method: 'POST', headers: auth })).status).toBe(405);
    const report = await b.stop('stop');
    expect(report).toMatchObject({ reason: 'stop', requests: 3, unauthorized: 0, tokenRefreshes: 2 });
    expect(report.revocations).toEqual({ revoked: 2, failed: 0, skipped: 0 });
    expect(api.tokens.filter((t) => !t.revoked)).toHaveLength(0);
    const ledger = readFileSync(cfg.ledgerPath, 'utf8');
    expect(ledger).not.toContain(t1.token);
    expect(lines.join('\n')).not.toContain(t1.token);
    expect(ledger).toContain('"type":"broker.stopped"');
    await expect(fetch(`${base}/github/token`, { headers: auth })).rejects.toThrow();
  });

  test('a failed revocation is counted and the report says until when tokens stay valid', async () => {
    const cfg = config();
    const b = await serveBroker(cfg);
    api.breakRevoke(500);
    try {
      const report = await b.stop('stop');
      expect(report.revocations.failed).toBe(1);
      expect(report.handedOutValidUntil).toBeDefined();
    } finally {
      api.breakRevoke(0);
    }
  });

  test('an issuance still looking up its requester is recorded before broker.stopped', async () => {
    const cfg = config({ refreshBeforeSeconds: 4000 });
    const slowPeer = (): Promise<{ pid: number; comm: string }> =>
      new Promise((r) => setTimeout(() => r({ pid: 1, comm: 'slow' }), 300));
    const b = await serveBroker(cfg, { findPeer: slowPeer });
    const res = await fetch(`http://127.0.0.1:${b.port}/github/token`, {
      headers: { authorization: cfg.bearer },
    });
    expect(res.status).toBe(200);
    await b.stop('stop');
    const types = readFileSync(cfg.ledgerPath, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; data: { requester?: { comm: string } } });
    expect(types.map((t) => t.type)).toEqual([
      'token.refreshed',
      'broker.started',
      'token.refreshed',
      'broker.stopped',
    ]);
    expect(types[2].data.requester?.comm).toBe('slow');
  });

  test('issuances are recorded in their order even when an earlier requester takes longer to find', async () => {
    const cfg = config({ refreshBeforeSeconds: 4000 });
    let asked = 0;
    // The first request's requester is found after 400 ms, the second's at once.
    const peer = (): Promise<{ pid: number; comm: string }> => {
      const n = ++asked;
      return new Promise((r) => setTimeout(() => r({ pid: n, comm: `asker${n}` }), n === 1 ? 400 : 0));
    };
    const b = await serveBroker(cfg, { findPeer: peer });
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`http://127.0.0.1:${b.port}/github/token`, {
        headers: { authorization: cfg.bearer },
      });
      expect(res.status).toBe(200);
    }
    await b.stop('stop');
    const refreshed = readFileSync(cfg.ledgerPath, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; data: { issuance: number; requester?: { comm: string } } })
      .filter((e) => e.type === 'token.refreshed');
    expect(refreshed.map((e) => [e.data.issuance, e.data.requester?.comm])).toEqual([
      [1, undefined],
      [2, 'asker1'],
      [3, 'asker2'],
    ]);
  });

  test('serves on the IPv6 loopback too', async () => {
    const cfg = config({ bind: '::1' });
    const b = await serveBroker(cfg);
    try {
      const res = await fetch(`http://[::1]:${b.port}/github/token`, {
        headers: { authorization: cfg.bearer },
      });
      expect(res.status).toBe(200);
    } finally {
      await b.stop('stop');
    }
  });

  test("a key of another app fails the start naming run's github-app-* inputs, the key in no error, log or ledger", async () => {
    const wrong = makeAppKey();
    const body = wrong.pkcs1.trim().split('\n')[10] as string;
    const lines: string[] = [];
    const cfg = config();
    cfg.github = { ...cfg.github!, privateKey: wrong.pkcs1, names: appNames('run', RUN_GITHUB_APP_NAMING) };
    const err = await serveBroker(cfg, { log: (l) => lines.push(l) }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toContain('run: GitHub does not accept the app JWT for github-app-id 11 (HTTP 401');
    expect(err?.message).toContain('github-app-private-key is not a key of the app with github-app-id 11');
    expect(err?.message).not.toMatch(/github-token|(?<![\w-])(private-key|app-id)(?![\w-])/);
    expect(err?.message).not.toContain(body);
    expect(lines.join('\n')).not.toContain(body);
    expect(existsSync(cfg.ledgerPath) ? readFileSync(cfg.ledgerPath, 'utf8') : '').not.toContain(body);
  });

  test('refuses a non-loopback bind before doing anything', async () => {
    const cfg = config({ bind: '0.0.0.0' });
    const before = api.calls.length;
    await expect(serveBroker(cfg)).rejects.toThrow(/refused to bind/);
    expect(api.calls.length).toBe(before);
  });
});

describe('serveBroker: a refresh racing stop (T77)', () => {
  /** fetch that holds the n-th POST .../access_tokens (1-based) for `ms` before sending it. */
  function slowMint(n: number, ms: number): typeof fetch {
    let mints = 0;
    return async (input, init) => {
      const url = input instanceof Request ? input.url : String(input);
      if ((init?.method ?? 'GET') === 'POST' && url.endsWith('/access_tokens') && ++mints === n)
        await new Promise((r) => setTimeout(r, ms));
      return fetch(input, init);
    };
  }

  test('a token whose mint began before stop is revoked too, counted and recorded before broker.stopped', async () => {
    // Every request wants a new token (4000 s > the token's hour); the second mint is slow,
    // so the request is answered with the first token after refreshWaitMs and stop comes
    // while the mint is still on its way.
    const cfg = config({ refreshBeforeSeconds: 4000, refreshWaitMs: 100 });
    const before = api.tokens.length;
    const b = await serveBroker(cfg, { fetch: slowMint(2, 700) });
    const res = await fetch(`http://127.0.0.1:${b.port}/github/token`, {
      headers: { authorization: cfg.bearer },
    });
    expect(res.status).toBe(200);
    const report = await b.stop('stop');
    // Bounded: the slow mint has landed by now whatever stop did.
    for (let i = 0; i < 40 && api.tokens.length < before + 2; i++)
      await new Promise((r) => setTimeout(r, 50));
    const mine = api.tokens.slice(before);
    expect(mine).toHaveLength(2);
    expect(mine.filter((t) => !t.revoked)).toHaveLength(0);
    expect(report.tokenRefreshes).toBe(2);
    expect(report.revocations).toEqual({ revoked: 2, failed: 0, skipped: 0 });
    const types = readFileSync(cfg.ledgerPath, 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { type: string }).type);
    expect(types).toEqual(['token.refreshed', 'broker.started', 'token.refreshed', 'broker.stopped']);
  });

  test('hostile: a request waiting on a mint when stop comes gets no token that outlives the stop', async () => {
    // The request waits on the mint (refreshWaitMs longer than it takes); the mint is held
    // at GitHub's door until stop has answered, then let through.
    const cfg = config({ refreshBeforeSeconds: 4000, refreshWaitMs: 5000 });
    const before = api.tokens.length;
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    let mints = 0;
    const gated: typeof fetch = async (input, init) => {
      const url = input instanceof Request ? input.url : String(input);
      if ((init?.method ?? 'GET') === 'POST' && url.endsWith('/access_tokens') && ++mints === 2) await gate;
      return fetch(input, init);
    };
    const b = await serveBroker(cfg, { fetch: gated });
    const asked = fetch(`http://127.0.0.1:${b.port}/github/token`, {
      headers: { authorization: cfg.bearer },
    }).then(
      async (r) => ({ status: r.status, body: await r.text() }),
      () => ({ status: 0, body: '' }),
    );
    for (let i = 0; i < 100 && mints < 2; i++) await new Promise((r) => setTimeout(r, 10));
    expect(mints).toBe(2);
    const stopping = b.stop('stop');
    // Let the mint through a moment after stop began (a stop that waits for it, or not).
    setTimeout(release, 100);
    const report = await stopping;
    const got = await asked;
    for (let i = 0; i < 40 && api.tokens.length < before + 2; i++)
      await new Promise((r) => setTimeout(r, 50));
    const mine = api.tokens.slice(before);
    expect(mine).toHaveLength(2);
    // Every token minted is revoked, counted as such, and whatever the request got is dead.
    expect(mine.filter((t) => !t.revoked).map((t) => got.body.includes(t.token))).toEqual([]);
    expect(report.tokenRefreshes).toBe(2);
    expect(report.revocations).toEqual({ revoked: 2, failed: 0, skipped: 0 });
  });

  test('a mint still on its way when stop stops waiting is counted as a failed revocation', async () => {
    const cfg = config({ refreshBeforeSeconds: 4000, refreshWaitMs: 5000, stopWaitMs: 200 });
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    let mints = 0;
    const gated: typeof fetch = async (input, init) => {
      const url = input instanceof Request ? input.url : String(input);
      if ((init?.method ?? 'GET') === 'POST' && url.endsWith('/access_tokens') && ++mints === 2) await gate;
      return fetch(input, init);
    };
    const lines: string[] = [];
    const b = await serveBroker(cfg, { fetch: gated, log: (l) => lines.push(l) });
    const asked = fetch(`http://127.0.0.1:${b.port}/github/token`, {
      headers: { authorization: cfg.bearer },
    }).then(
      (r) => r.status,
      () => 0,
    );
    for (let i = 0; i < 100 && mints < 2; i++) await new Promise((r) => setTimeout(r, 10));
    try {
      const report = await b.stop('stop');
      expect(report.revocations).toEqual({ revoked: 1, failed: 1, skipped: 0 });
      expect(report.handedOutValidUntil).toBeDefined();
      expect(lines.join('\n')).toMatch(/mint was still on its way at stop/);
    } finally {
      release();
    }
    expect([0, 503]).toContain(await asked);
  });

  test('hostile: a mint that lands after stop stopped waiting writes nothing after broker.stopped', async () => {
    const cfg = config({ refreshBeforeSeconds: 4000, refreshWaitMs: 5000, stopWaitMs: 200 });
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    let mints = 0;
    let landed = 0;
    const gated: typeof fetch = async (input, init) => {
      const url = input instanceof Request ? input.url : String(input);
      const mint = (init?.method ?? 'GET') === 'POST' && url.endsWith('/access_tokens');
      if (mint && ++mints === 2) {
        await gate;
        const res = await fetch(input, init);
        landed++;
        return res;
      }
      return fetch(input, init);
    };
    const lines: string[] = [];
    const b = await serveBroker(cfg, { fetch: gated, log: (l) => lines.push(l) });
    const asked = fetch(`http://127.0.0.1:${b.port}/github/token`, {
      headers: { authorization: cfg.bearer },
    }).then(
      (r) => r.status,
      () => 0,
    );
    for (let i = 0; i < 100 && mints < 2; i++) await new Promise((r) => setTimeout(r, 10));
    expect(mints).toBe(2);
    let report;
    try {
      report = await b.stop('stop');
    } finally {
      // The mint lands after broker.stopped is written.
      release();
    }
    expect([0, 503]).toContain(await asked);
    for (let i = 0; i < 100 && landed < 1; i++) await new Promise((r) => setTimeout(r, 20));
    expect(landed).toBe(1);
    // Whatever the late mint's bookkeeping does, it has had time to do it.
    await new Promise((r) => setTimeout(r, 300));
    const types = readFileSync(cfg.ledgerPath, 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { type: string }).type);
    expect(types.at(-1)).toBe('broker.stopped');
    expect(types.filter((t) => t === 'broker.stopped')).toHaveLength(1);
    // The late token is not silently lost: stop counted it as a failed revocation, and the log says why.
    expect(report.revocations.failed).toBe(1);
    expect(lines.join('\n')).toMatch(/after broker\.stopped/);
  });
});
