/**
 * A GET over node:http/https shaped like the part of `fetch` that `getIdToken` uses. Node's
 * global `fetch` loads undici on first use (about 100 ms and several MiB here); an action
 * that already loads node:http for the AWS SDK can fetch its ID token without it.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { proxyAgents } from './proxy.js';
import type { Env } from './runner.js';

const MAX_BODY_BYTES = 1024 * 1024;

/** What a GET answers: the part of `Response` that callers read. */
export interface GetResponse {
  ok: boolean;
  status: number;
  text(): Promise<string>;
  json(): Promise<unknown>;
}

/** A GET shaped like `fetch`: the global `fetch` is one, and so is `httpGet`. */
export type HttpGet = (
  input: string | URL,
  init?: { headers?: Record<string, string>; signal?: AbortSignal },
) => Promise<GetResponse>;

/** A GET through the proxies `env` names (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), if any. */
export function httpGetFor(env: Env): HttpGet {
  const agents = proxyAgents(env);
  return (input, init = {}) => get(input, init, agents);
}

const get = (
  input: string | URL,
  init: { headers?: Record<string, string>; signal?: AbortSignal },
  agents: ReturnType<typeof proxyAgents>,
): Promise<GetResponse> =>
  new Promise((resolve, reject) => {
    const url = new URL(String(input));
    const https = url.protocol === 'https:';
    const send = https ? httpsRequest : httpRequest;
    const agent = https ? agents.httpsAgent : agents.httpAgent;
    const req = send(url, { method: 'GET', headers: init.headers, signal: init.signal, agent }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY_BYTES)
          req.destroy(new Error(`response from ${url.host} is larger than ${MAX_BODY_BYTES} bytes`));
        else chunks.push(c);
      });
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const status = res.statusCode ?? 0;
        resolve({
          ok: status >= 200 && status < 300,
          status,
          text: async () => text,
          json: async () => JSON.parse(text) as unknown,
        });
      });
    });
    req.on('error', reject);
    req.end();
  });
