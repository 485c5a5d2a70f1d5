import { describe, expect, test } from '@jest/globals';
import { RUN_AWS_INPUT_NAMES } from '../../../src/actions/run/broker.js';
import type { BrokerAwsConfig } from '../../../src/broker/config.js';
import { awsSource, CachedCredential } from '../../../src/broker/sources.js';
import { startFaultProxy, STS_FAULTS, type Fault } from '../../../src/devkit/fault-proxy.js';
import { startOidcIssuer } from '../../../src/devkit/oidc-issuer.js';
import { CordonError } from '../../../src/platform/errors.js';
import { SecretRegistry } from '../../../src/platform/mask.js';

function clock(start = 1_000_000): { now: () => number; advance: (s: number) => void } {
  let t = start;
  return { now: () => t, advance: (s) => (t += s) };
}

describe('CachedCredential', () => {
  test('hands out the cached value until fewer than refresh-before seconds remain', async () => {
    const c = clock();
    let n = 0;
    const cache = new CachedCredential(async () => ({ value: ++n, expiresAt: c.now() + 900 }), 300, c.now);
    expect((await cache.get()).issued).toMatchObject({ value: 1, issuance: 1, reason: 'start' });
    c.advance(599);
    const cached = await cache.get();
    expect(cached.issued.value).toBe(1);
    expect(cached.started).toBeUndefined();
    c.advance(2);
    const refreshed = await cache.get();
    expect(refreshed.issued).toMatchObject({ value: 2, issuance: 2, reason: 'expiring' });
    expect(refreshed.started).toBeDefined();
    expect(cache.refreshes).toBe(2);
    expect(cache.issued.map((i) => i.value)).toEqual([1, 2]);
  });

  test('concurrent callers share one exchange', async () => {
    let calls = 0;
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const cache = new CachedCredential(async () => {
      calls++;
      await gate;
      return { value: 'v', expiresAt: Date.now() / 1000 + 900 };
    }, 300);
    const all = Promise.all([cache.get(), cache.get(), cache.get()]);
    release();
    const got = await all;
    expect(calls).toBe(1);
    expect(got.filter((g) => g.started)).toHaveLength(1);
  });

  test('a failed refresh falls back to a still-valid value, and fails once it has expired', async () => {
    const c = clock();
    let fail = false;
    const cache = new CachedCredential(
      async () => {
        if (fail) throw new Error('sts down');
        return { value: 'first', expiresAt: c.now() + 900 };
      },
      300,
      c.now,
    );
    await cache.get();
    fail = true;
    c.advance(700);
    expect(await cache.get()).toMatchObject({ issued: { value: 'first' } });
    c.advance(200);
    await expect(cache.get()).rejects.toThrow('sts down');
  });

  test('with a wait, a slow refresh answers with the still-valid value and finishes on its own', async () => {
    const c = clock();
    let n = 0;
    let release: () => void = () => undefined;
    const cache = new CachedCredential(
      async () => {
        n++;
        if (n > 1) await new Promise<void>((r) => (release = r));
        return { value: n, expiresAt: c.now() + 900 };
      },
      300,
      c.now,
    );
    await cache.get();
    c.advance(700);
    const t0 = Date.now();
    const got = await cache.get(50);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(got.issued.value).toBe(1);
    release();
    expect((await got.started!).value).toBe(2);
    expect((await cache.get(50)).issued.value).toBe(2);
  });

  test('with a wait but nothing valid left, the caller waits for the refresh', async () => {
    const c = clock();
    let n = 0;
    const cache = new CachedCredential(
      async () => {
        n++;
        await new Promise((r) => setTimeout(r, 100));
        return { value: n, expiresAt: c.now() + 900 };
      },
      300,
      c.now,
    );
    await cache.get();
    c.advance(860);
    expect((await cache.get(10)).issued.value).toBe(2);
  });

  test('after close no exchange starts; one on its way still lands in issued, and settled says when', async () => {
    const c = clock();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    let n = 0;
    const cache = new CachedCredential(
      async () => {
        n++;
        if (n === 2) await gate;
        return { value: n, expiresAt: c.now() + 900 };
      },
      300,
      c.now,
    );
    await cache.get();
    c.advance(700);
    const waiting = cache.get();
    expect(cache.inFlight).toBe(true);
    cache.close();
    expect(await cache.settled(20)).toBe(false);
    release();
    expect(await cache.settled(1000)).toBe(true);
    expect((await waiting).issued.value).toBe(2);
    expect(cache.issued.map((i) => i.value)).toEqual([1, 2]);
    c.advance(700);
    await expect(cache.get()).rejects.toThrow(/stopping/);
    expect(n).toBe(2);
  });
});

describe('awsSource: STS errors name the inputs the user wrote', () => {
  // STS answers AccessDenied from a loopback fault proxy (its upstream is never reached).
  async function deniedUnder(
    action: string,
    inputNames?: BrokerAwsConfig['inputNames'],
    plan: Fault[] = [STS_FAULTS.accessDenied],
    idTokenRequestToken?: string,
  ): Promise<CordonError> {
    const issuer = await startOidcIssuer();
    const proxy = await startFaultProxy('http://127.0.0.1:1', { plan });
    try {
      const get = awsSource(
        {
          roleArn: 'arn:aws:iam::111122223333:role/agent',
          region: 'us-east-1',
          audience: 'sts.amazonaws.com',
          sessionName: 's1',
          durationSeconds: 900,
          idTokenRequestUrl: issuer.env.ACTIONS_ID_TOKEN_REQUEST_URL,
          idTokenRequestToken: idTokenRequestToken ?? issuer.env.ACTIONS_ID_TOKEN_REQUEST_TOKEN,
          stsEnv: proxy.env,
          ...(inputNames ? { inputNames } : {}),
        },
        { registry: new SecretRegistry(() => undefined), log: () => undefined, proxyEnv: {}, action },
      );
      const e = await get().then(
        () => undefined,
        (x: unknown) => x,
      );
      if (!(e instanceof CordonError)) throw new Error(`expected a CordonError, got ${String(e)}`);
      return e;
    } finally {
      await proxy.close();
      await issuer.close();
    }
  }

  test("under run: run's aws-role-to-assume and aws-audience, prefixed run:", async () => {
    const e = await deniedUnder('run', RUN_AWS_INPUT_NAMES);
    expect(e.message).toMatch(
      /^run: STS refused to let this run assume arn:aws:iam::111122223333:role\/agent/,
    );
    expect(e.message).toContain('check aws-role-to-assume and aws-audience');
    expect(e.input).toBe('aws-role-to-assume');
    expect(e.message).not.toMatch(/^broker:/);
  });

  test('under actions/aws: its own role-to-assume and audience, prefixed aws:', async () => {
    const e = await deniedUnder('aws');
    expect(e.message).toMatch(/^aws: STS refused/);
    expect(e.message).toContain('check role-to-assume and audience');
    expect(e.input).toBe('role-to-assume');
  });

  test('STS failing on every try says to retry the job, never to raise retry-max-attempts (the broker has none)', async () => {
    // Five answers of 503: every try the broker makes (about 4 s of backoff).
    const plan: Fault[] = Array.from({ length: 5 }, () => ({ kind: 'status', status: 503 }) as const);
    for (const [action, names] of [
      ['run', RUN_AWS_INPUT_NAMES],
      ['aws', undefined],
    ] as const) {
      const e = await deniedUnder(action, names, plan);
      expect(e.message).toMatch(new RegExp(`^${action}: AssumeRoleWithWebIdentity failed`));
      expect(e.message).toContain('Fix: retry the job later');
      expect(e.message).not.toContain('retry-max-attempts');
    }
  }, 30000);

  test('an ID token refused names the audience input the user wrote: aws-audience under run, audience under actions/aws', async () => {
    // The token service answers 401 to a request token it did not issue (not retried).
    for (const [action, names, input] of [
      ['run', RUN_AWS_INPUT_NAMES, 'aws-audience'],
      ['aws', undefined, 'audience'],
    ] as const) {
      const e = await deniedUnder(action, names, [], 'not-the-request-token');
      expect(e.message).toMatch(
        new RegExp(
          `^${action}: could not get an ID token for audience "sts\\.amazonaws\\.com" \\(set by input ${input}\\) — the ID token service answered HTTP 401`,
        ),
      );
      expect(e.message).toContain(
        `Fix: check that the job has \`permissions: id-token: write\` and that ${input} is the audience meant`,
      );
      expect(e.input).toBe(input);
      expect(e.message).not.toContain('not-the-request-token');
    }
  });
});
