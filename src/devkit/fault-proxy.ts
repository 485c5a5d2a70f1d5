/**
 * A loopback HTTP proxy in front of the moto server that injects the failures a real AWS
 * endpoint produces: throttling and other errors with the XML bodies STS sends, 5xx,
 * connection resets and delays, chosen per request number. Moto never throttles and never
 * refuses a web identity, so the retry and error paths are tested through this.
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { randomUUID } from 'node:crypto';

export type Fault =
  /** HTTP 400 `Throttling` / `Rate exceeded`, as STS answers a burst. */
  | { kind: 'throttle' }
  /** An STS error response: `<ErrorResponse><Error><Type/><Code/><Message/></Error>`. */
  | { kind: 'sts-error'; status: number; code: string; message: string; type?: 'Sender' | 'Receiver' }
  /** A bare 5xx with STS's `InternalFailure` body (or `ServiceUnavailable` for 503). */
  | { kind: 'status'; status: number }
  /** The connection is destroyed after the request arrives, before any response byte. */
  | { kind: 'reset' }
  /** The request is held this long, then forwarded. */
  | { kind: 'delay'; ms: number };

/** STS's real answers for the errors a user must act on. */
export const STS_FAULTS = {
  accessDenied: {
    kind: 'sts-error',
    status: 403,
    code: 'AccessDenied',
    message: 'Not authorized to perform sts:AssumeRoleWithWebIdentity',
  },
  invalidIdentityToken: {
    kind: 'sts-error',
    status: 400,
    code: 'InvalidIdentityToken',
    message:
      'No OpenIDConnect provider found in your account for https://token.actions.githubusercontent.com',
  },
  durationTooLong: {
    kind: 'sts-error',
    status: 400,
    code: 'ValidationError',
    message: 'The requested DurationSeconds exceeds the MaxSessionDuration set for this role.',
  },
} as const satisfies Record<string, Fault>;

export interface ProxiedRequest {
  /** 1-based request number. */
  n: number;
  method: string;
  path: string;
  /** Form parameters of an AWS Query request (`Action`, `RoleArn`, ...). */
  params: URLSearchParams;
  /** The request's Authorization header (SigV4 names the signing key id), '' when unsigned. */
  authorization: string;
  fault?: Fault['kind'];
  /** Status the client got; undefined for a reset. */
  status?: number;
  /** The body the client got (forwarded or injected), so tests can grep outputs for its secrets. */
  response?: string;
}

export interface FaultProxy {
  url: string;
  port: number;
  /** Steers the AWS SDK's STS client through the proxy. */
  env: { AWS_ENDPOINT_URL_STS: string };
  requests: ProxiedRequest[];
  /** Faults for the next requests, in order (`undefined` lets one through). */
  plan(...faults: (Fault | undefined)[]): void;
  /** A fault for every request from now on (until `always(undefined)`), after the plan. */
  always(fault: Fault | undefined): void;
  close(): Promise<void>;
}

export function stsErrorXml(code: string, message: string, type: 'Sender' | 'Receiver' = 'Sender'): string {
  return (
    '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">\n' +
    `  <Error>\n    <Type>${type}</Type>\n    <Code>${code}</Code>\n    <Message>${message}</Message>\n  </Error>\n` +
    `  <RequestId>${randomUUID()}</RequestId>\n</ErrorResponse>\n`
  );
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Starts the proxy on 127.0.0.1 in front of `target` (e.g. moto's endpoint). */
export async function startFaultProxy(
  target: string,
  opts: {
    plan?: (Fault | undefined)[];
    /**
     * Rewrite every forwarded `<Expiration>` to this many seconds from now: credentials
     * shorter-lived than STS's 900 s floor, so a broker test sees refreshes within a
     * `refresh-before-seconds` the inputs accept.
     */
    lifetimeS?: number;
  } = {},
): Promise<FaultProxy> {
  const upstream = new URL(target);
  const queue: (Fault | undefined)[] = [...(opts.plan ?? [])];
  let standing: Fault | undefined;
  const requests: ProxiedRequest[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  const server: Server = createServer((req, res) => {
    void readBody(req).then(async (body) => {
      const fault = queue.length ? queue.shift() : standing;
      const record: ProxiedRequest = {
        n: requests.length + 1,
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        params: new URLSearchParams(body.toString('utf8')),
        authorization: req.headers.authorization ?? '',
        fault: fault?.kind,
      };
      requests.push(record);
      const sendXml = (status: number, xml: string): void => {
        record.status = status;
        record.response = xml;
        res.writeHead(status, { 'content-type': 'text/xml', 'x-amzn-requestid': randomUUID() });
        res.end(xml);
      };
      if (fault?.kind === 'reset') {
        req.socket.destroy();
        return;
      }
      if (fault?.kind === 'throttle') return sendXml(400, stsErrorXml('Throttling', 'Rate exceeded'));
      if (fault?.kind === 'sts-error')
        return sendXml(fault.status, stsErrorXml(fault.code, fault.message, fault.type));
      if (fault?.kind === 'status') {
        const code = fault.status === 503 ? 'ServiceUnavailable' : 'InternalFailure';
        const message =
          fault.status === 503 ? 'Service is unable to handle request.' : 'An internal error occurred.';
        return sendXml(fault.status, stsErrorXml(code, message, 'Receiver'));
      }
      if (fault?.kind === 'delay') {
        await new Promise<void>((r) => {
          const t = setTimeout(() => {
            timers.delete(t);
            r();
          }, fault.ms);
          timers.add(t);
        });
        if (req.socket.destroyed) return;
      }
      const up = httpRequest(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: upstream.host, 'content-length': String(body.length) },
        },
        (upRes) => {
          record.status = upRes.statusCode;
          const chunks: Buffer[] = [];
          upRes.on('data', (c: Buffer) => chunks.push(c));
          if (opts.lifetimeS === undefined) {
            res.writeHead(upRes.statusCode ?? 502, upRes.headers);
            upRes.on('end', () => {
              record.response = Buffer.concat(chunks).toString('utf8');
            });
            upRes.pipe(res);
            return;
          }
          const lifetimeS = opts.lifetimeS;
          upRes.on('end', () => {
            const expires = new Date(Date.now() + lifetimeS * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
            const text = Buffer.concat(chunks)
              .toString('utf8')
              .replace(/<Expiration>[^<]*<\/Expiration>/g, `<Expiration>${expires}</Expiration>`);
            record.response = text;
            const body = Buffer.from(text, 'utf8');
            const headers = { ...upRes.headers, 'content-length': String(body.length) };
            delete headers['transfer-encoding'];
            res.writeHead(upRes.statusCode ?? 502, headers);
            res.end(body);
          });
        },
      );
      up.on('error', () => {
        if (!res.headersSent)
          sendXml(502, stsErrorXml('InternalFailure', 'upstream unreachable', 'Receiver'));
        else res.destroy();
      });
      up.end(body);
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    port,
    env: { AWS_ENDPOINT_URL_STS: url },
    requests,
    plan(...faults) {
      queue.push(...faults);
    },
    always(fault) {
      standing = fault;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
