/**
 * HTTPS_PROXY / HTTP_PROXY / NO_PROXY for every outbound client (ID token, GitHub API, STS,
 * Secrets Manager, SSM): self-hosted runners behind a corporate proxy reach nothing
 * otherwise. Node 20's `fetch` and `node:https` ignore these variables, and the project
 * adds no proxy package, so this is a minimal CONNECT tunnel: an agent whose
 * `createConnection` asks the proxy for `CONNECT host:port`, then speaks TLS (or plain HTTP)
 * inside the tunnel. A host NO_PROXY names is reached directly.
 */
import { Agent as HttpAgent, request as httpRequest, type AgentOptions } from 'node:http';
import {
  Agent as HttpsAgent,
  request as httpsRequest,
  type AgentOptions as HttpsAgentOptions,
} from 'node:https';
import { connect as netConnect, isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { CordonError } from './errors.js';
import type { Env } from './runner.js';

/** The variables that steer the proxy; a step hands them on to the processes it starts for Cordon. */
export const PROXY_VARIABLES = [
  'HTTPS_PROXY',
  'https_proxy',
  'HTTP_PROXY',
  'http_proxy',
  'NO_PROXY',
  'no_proxy',
];

/** The proxy variables `env` sets, to hand on (they may hold a proxy password: never to a command line). */
export function proxyEnv(env: Env): Record<string, string> {
  return Object.fromEntries(PROXY_VARIABLES.flatMap((k) => (env[k] ? [[k, env[k] as string]] : [])));
}

const MAX_CONNECT_HEADER = 16 * 1024;
const MAX_BODY_BYTES = 8 * 1024 * 1024;

/** Node's agent callback; on an error the stream is the failed (destroyed) one. */
type Done = (err: Error | null, stream: Duplex) => void;

/** The proxy for a target scheme, or undefined; only `http://` proxies are supported. */
export function proxyFor(protocol: 'http:' | 'https:', env: Env): URL | undefined {
  const name = protocol === 'https:' ? 'https_proxy' : 'http_proxy';
  const raw = env[name] || env[name.toUpperCase()];
  if (!raw) return undefined;
  let url: URL;
  try {
    url = new URL(raw.includes('://') ? raw : `http://${raw}`);
  } catch {
    url = new URL('invalid:');
  }
  if (url.protocol !== 'http:' || !url.hostname) {
    throw new CordonError({
      what: `${name.toUpperCase()} is not an http:// proxy URL`,
      why: 'Cordon tunnels through an HTTP proxy with CONNECT; it does not speak TLS to the proxy itself',
      fix: `set ${name.toUpperCase()} to e.g. http://proxy.example:3128 (user:password@ before the host if it asks for one)`,
    });
  }
  return url;
}

/** Whether NO_PROXY / no_proxy names `host` (exact, a parent domain, `*`, optionally with `:port`). */
export function bypassesProxy(host: string, port: number, env: Env): boolean {
  const list = (env.no_proxy ?? env.NO_PROXY ?? '').toLowerCase();
  const h = host
    .toLowerCase()
    .replace(/^\[|\]$/g, '')
    .replace(/\.$/, '');
  for (const raw of list.split(/[\s,]+/)) {
    if (!raw) continue;
    if (raw === '*') return true;
    const m = /^(.*?)(?::(\d+))?$/.exec(raw.startsWith('[') ? raw.replace(/^\[(.*)\]/, '$1') : raw);
    if (!m) continue;
    if (m[2] && Number(m[2]) !== port) continue;
    const entry = m[1].replace(/^\*?\./, '');
    if (entry && (h === entry || h.endsWith(`.${entry}`))) return true;
  }
  return false;
}

/** Opens `CONNECT host:port` through `proxy`; calls `done` with the tunnel or why it failed. */
function tunnel(proxy: URL, host: string, port: number, done: Done): void {
  const target = isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
  const auth = proxy.username
    ? `Proxy-Authorization: Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64')}\r\n`
    : '';
  const sock = netConnect({ host: proxy.hostname.replace(/^\[|\]$/g, ''), port: Number(proxy.port || 80) });
  let head = Buffer.alloc(0);
  let settled = false;
  const finish = (err: Error | null): void => {
    if (settled) return;
    settled = true;
    sock.off('readable', read);
    sock.off('error', finish);
    if (err) {
      sock.destroy();
      // The proxy's URL may hold a password: only its host is named.
      done(new Error(`proxy ${proxy.host}: ${err.message}`), sock);
    } else done(null, sock);
  };
  const read = (): void => {
    for (let chunk = sock.read() as Buffer | null; chunk; chunk = sock.read() as Buffer | null) {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > MAX_CONNECT_HEADER) finish(new Error('its answer to CONNECT is over 16 KiB'));
        continue;
      }
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(head.subarray(0, end).toString('latin1'))?.[1];
      if (status !== '200') {
        finish(
          new Error(`CONNECT ${target} was answered ${status ? `HTTP ${status}` : 'with no HTTP status'}`),
        );
        return;
      }
      if (head.length > end + 4) sock.unshift(head.subarray(end + 4));
      finish(null);
      return;
    }
  };
  sock.once('connect', () => sock.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${auth}\r\n`));
  sock.on('readable', read);
  sock.on('error', finish);
  sock.once('end', () => finish(new Error(`it closed the connection before answering CONNECT ${target}`)));
}

type ConnOpts = ConnectionOptions & { host?: string | null; port?: number | string | null };

/** Node's agents call `createConnection(options, done)`; `done` is always passed. */
function required(done: Done | undefined): Done {
  if (!done) throw new Error('createConnection needs its callback');
  return done;
}

class TunnelHttpAgent extends HttpAgent {
  constructor(
    private readonly proxy: URL,
    private readonly env: Env,
    opts: AgentOptions,
  ) {
    super(opts);
  }

  override createConnection(options: ConnOpts, done?: Done): Duplex | undefined {
    const host = options.host || 'localhost';
    const port = Number(options.port ?? 80);
    if (bypassesProxy(host, port, this.env)) return netConnect({ ...options, host, port });
    tunnel(this.proxy, host, port, required(done));
    return undefined;
  }
}

class TunnelHttpsAgent extends HttpsAgent {
  constructor(
    private readonly proxy: URL,
    private readonly env: Env,
    opts: HttpsAgentOptions,
  ) {
    super(opts);
  }

  override createConnection(options: ConnOpts, done?: Done): Duplex | undefined {
    const host = options.host || 'localhost';
    const port = Number(options.port ?? 443);
    const servername = options.servername || (isIP(host) ? undefined : host);
    if (bypassesProxy(host, port, this.env)) return tlsConnect({ ...options, host, port, servername });
    const cb = required(done);
    tunnel(this.proxy, host, port, (err, socket) =>
      err ? cb(err, socket) : cb(null, tlsConnect({ ...options, host, servername, socket })),
    );
    return undefined;
  }
}

export interface ProxyAgents {
  httpAgent?: HttpAgent;
  httpsAgent?: HttpsAgent;
}

/**
 * Agents for the proxies the environment names; empty when it names none, so callers keep
 * their defaults. The AWS SDK takes these as `requestHandler: { httpAgent, httpsAgent }`.
 */
export function proxyAgents(env: Env, opts: HttpsAgentOptions = {}): ProxyAgents {
  const out: ProxyAgents = {};
  const http = proxyFor('http:', env);
  const https = proxyFor('https:', env);
  if (http) out.httpAgent = new TunnelHttpAgent(http, env, opts);
  if (https) out.httpsAgent = new TunnelHttpsAgent(https, env, opts);
  return out;
}

/**
 * A `fetch` that goes through the environment's proxies, or undefined when it names none
 * (callers then use the global `fetch`, which would ignore them).
 */
export function proxiedFetch(env: Env): typeof fetch | undefined {
  const agents = proxyAgents(env);
  if (!agents.httpAgent && !agents.httpsAgent) return undefined;
  return (input, init = {}) =>
    new Promise<Response>((resolve, reject) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      const https = url.protocol === 'https:';
      const headers: Record<string, string> = {};
      new Headers(init.headers).forEach((v, k) => (headers[k] = v));
      if (init.body !== undefined && init.body !== null && typeof init.body !== 'string')
        return reject(new TypeError('only a string body is supported through the proxy'));
      const send = https ? httpsRequest : httpRequest;
      const req = send(
        url,
        {
          method: init.method ?? 'GET',
          headers,
          signal: init.signal ?? undefined,
          agent: https ? agents.httpsAgent : agents.httpAgent,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_BODY_BYTES) req.destroy(new Error(`response from ${url.host} is too large`));
            else chunks.push(c);
          });
          res.on('error', reject);
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            const h = new Headers();
            for (const [k, v] of Object.entries(res.headers)) {
              for (const one of Array.isArray(v) ? v : v === undefined ? [] : [v]) h.append(k, one);
            }
            const nullBody = [204, 205, 304].includes(status);
            resolve(new Response(nullBody ? null : Buffer.concat(chunks), { status, headers: h }));
          });
        },
      );
      req.on('error', reject);
      req.end(init.body ?? undefined);
    });
}
