/** The fault proxy's contract: faults by request number, STS's XML error shape, resets, delays. */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startFaultProxy, STS_FAULTS, type FaultProxy } from '../../../src/devkit/fault-proxy.js';

let upstream: Server;
let proxy: FaultProxy;

beforeAll(async () => {
  upstream = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`upstream saw ${req.method} ${req.url} ${body}`);
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  proxy = await startFaultProxy(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`);
});

afterAll(async () => {
  await proxy.close();
  await new Promise<void>((r) => upstream.close(() => r()));
});

const post = (body: string) =>
  fetch(proxy.url + '/', {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });

describe('fault proxy', () => {
  test('applies planned faults in request order, then forwards', async () => {
    proxy.plan({ kind: 'throttle' }, undefined, STS_FAULTS.accessDenied, { kind: 'status', status: 503 });
    const first = await post('Action=AssumeRoleWithWebIdentity&RoleArn=x');
    expect(first.status).toBe(400);
    const xml = await first.text();
    expect(xml).toContain('<Code>Throttling</Code>');
    expect(xml).toContain('<Message>Rate exceeded</Message>');
    expect(xml).toMatch(/^<ErrorResponse xmlns="https:\/\/sts.amazonaws.com\/doc\/2011-06-15\/">/);
    expect(await (await post('a=1')).text()).toBe('upstream saw POST / a=1');
    const denied = await post('a=2');
    expect(denied.status).toBe(403);
    expect(await denied.text()).toContain('<Code>AccessDenied</Code>');
    const unavailable = await post('a=3');
    expect(unavailable.status).toBe(503);
    expect(await unavailable.text()).toContain('<Code>ServiceUnavailable</Code>');
    expect((await post('a=4')).status).toBe(200);
    const mine = proxy.requests.slice(-5);
    expect(mine.map((r) => r.fault)).toEqual(['throttle', undefined, 'sts-error', 'status', undefined]);
    expect(mine[0].params.get('RoleArn')).toBe('x');
    expect(mine[1].response).toBe('upstream saw POST / a=1');
  });

  test('a reset closes the connection without an answer; a delay holds the request', async () => {
    proxy.plan({ kind: 'reset' }, { kind: 'delay', ms: 300 });
    await expect(post('r=1')).rejects.toThrow();
    const started = Date.now();
    expect((await post('d=1')).status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(280);
    expect(proxy.requests.at(-2)?.status).toBeUndefined();
  });

  test('always() applies to every request until cleared', async () => {
    proxy.always({ kind: 'status', status: 500 });
    expect((await post('x')).status).toBe(500);
    expect((await post('y')).status).toBe(500);
    proxy.always(undefined);
    expect((await post('z')).status).toBe(200);
  });

  test('lifetimeS rewrites every forwarded Expiration to that many seconds from now', async () => {
    const xmlUp = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/xml' });
      res.end('<R><Credentials><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials></R>');
    });
    await new Promise<void>((r) => xmlUp.listen(0, '127.0.0.1', r));
    const short = await startFaultProxy(`http://127.0.0.1:${(xmlUp.address() as AddressInfo).port}`, {
      lifetimeS: 120,
    });
    try {
      const text = await (await fetch(short.url + '/', { method: 'POST', body: 'Action=x' })).text();
      const m = /<Expiration>([^<]+)<\/Expiration>/.exec(text);
      const left = (Date.parse(m?.[1] ?? '') - Date.now()) / 1000;
      expect(left).toBeGreaterThan(110);
      expect(left).toBeLessThanOrEqual(120);
    } finally {
      await short.close();
      await new Promise<void>((r) => xmlUp.close(() => r()));
    }
  });
});
