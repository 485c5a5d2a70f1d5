/**
 * The broker's HTTP server on a loopback port. The command presents the per-run bearer
 * token; the parent presents a separate control token to stop it. Anything else is a 401,
 * counted. Ledger events carry expiries, counts and the requesting process, never a value.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AwsCredentials } from '../aws/sts.js';
import { describeError } from '../platform/errors.js';
import type {
  BrokerRequester,
  BrokerStarted,
  BrokerStopped,
  CredentialsRefreshed,
  EventTypes,
  TokenRefreshed,
} from '../ledger/events.js';
import { Ledger } from '../ledger/ledger.js';
import { SecretRegistry } from '../platform/mask.js';
import type { MintedToken } from '../github/token.js';
import { BearerCheck } from './auth.js';
import {
  assertLoopback,
  AWS_PATH,
  DEFAULT_REFRESH_WAIT_MS,
  DEFAULT_STOP_WAIT_MS,
  GITHUB_TOKEN_PATH,
  STOP_PATH,
  type BrokerConfig,
} from './config.js';
import { findPeerProcess } from './peer.js';
import { awsSource, CachedCredential, githubSource, revokeAll, type Issued } from './sources.js';

export interface BrokerDeps {
  fetch?: typeof fetch;
  /** Log sink; every line is scrubbed of registered secrets before it gets here. */
  log?: (line: string) => void;
  /** Called with every new secret value (the process entry sends them to the parent to mask). */
  onSecret?: (value: string) => void;
  /** Find the requesting process (default: /proc lookup). */
  findPeer?: (
    clientPort: number,
    serverPort: number,
    clientAddress?: string,
    serverAddress?: string,
  ) => Promise<BrokerRequester | undefined>;
}

export interface RunningBroker {
  port: number;
  /** Stops serving, revokes every minted token, records `broker.stopped`; idempotent. */
  stop(reason: BrokerStopped['reason']): Promise<BrokerStopped>;
  stopped: Promise<BrokerStopped>;
}

/** Answer for the container-credentials protocol, exactly the fields the SDKs read. */
function containerCredentials(c: AwsCredentials): string {
  return JSON.stringify({
    AccessKeyId: c.accessKeyId,
    SecretAccessKey: c.secretAccessKey,
    Token: c.sessionToken,
    Expiration: c.expiration.toISOString(),
  });
}

/**
 * Starts the broker in this process: checks the bind address, fetches the first
 * credentials (so a bad role or app fails at once), listens, records `broker.started`.
 */
export async function serveBroker(cfg: BrokerConfig, deps: BrokerDeps = {}): Promise<RunningBroker> {
  assertLoopback(cfg.bind);
  const registry = new SecretRegistry(deps.onSecret ?? (() => undefined));
  registry.register(cfg.bearer, { name: 'broker bearer token' });
  registry.register(cfg.controlToken, { name: 'broker control token' });
  if (cfg.aws) registry.register(cfg.aws.idTokenRequestToken, { name: 'ACTIONS_ID_TOKEN_REQUEST_TOKEN' });
  if (cfg.github) registry.register(cfg.github.privateKey, { name: 'GitHub App private key' });
  const log = (line: string): void => deps.log?.(registry.scrub(line));
  const ledger = new Ledger(cfg.ledgerPath, { action: cfg.action, registry });
  /** Set once broker.stopped is written: the ledger's last word from this broker. */
  let ledgerClosed = false;
  const record = <K extends keyof EventTypes>(type: K, data: EventTypes[K]): void => {
    if (ledgerClosed) {
      // A refresh that settled after stop stopped waiting: stop counted it (a GitHub token as
      // a failed revocation; AWS credentials are never handed out while stopping).
      log(`ledger: ${type} came after broker.stopped and is not recorded`);
      return;
    }
    try {
      ledger.append(type, data);
    } catch (e) {
      log(`ledger: could not record ${type}: ${describeError(e)}`);
    }
  };
  const bearer = new BearerCheck(cfg.bearer);
  const control = new BearerCheck(cfg.controlToken);
  const sourceDeps = { registry, log, fetch: deps.fetch, proxyEnv: cfg.proxyEnv ?? {}, action: cfg.action };
  const aws = cfg.aws
    ? new CachedCredential<AwsCredentials>(awsSource(cfg.aws, sourceDeps), cfg.refreshBeforeSeconds)
    : undefined;
  const github = cfg.github
    ? new CachedCredential<MintedToken>(githubSource(cfg.github, sourceDeps), cfg.refreshBeforeSeconds)
    : undefined;
  const findPeer =
    deps.findPeer ??
    ((client: number, server: number, clientAddress?: string, serverAddress?: string) =>
      findPeerProcess(client, server, { selfPid: process.pid, clientAddress, serverAddress }));
  let port = 0;
  let requests = 0;
  let unauthorized = 0;
  let stopping: Promise<BrokerStopped> | undefined;
  /** Issuance events still waiting for their requester: written before broker.stopped. */
  const recording = new Set<Promise<void>>();
  /** Credential requests being answered: stop waits for them (bounded) before it revokes. */
  const serving = new Set<Promise<void>>();
  let resolveStopped: (r: BrokerStopped) => void = () => undefined;
  const stopped = new Promise<BrokerStopped>((r) => (resolveStopped = r));

  const recordAws = (i: Issued<AwsCredentials>, requester?: BrokerRequester): void => {
    const c = cfg.aws!;
    const event: CredentialsRefreshed = {
      provider: 'aws',
      role: c.roleArn,
      assumedRoleArn: i.value.assumedRoleArn,
      sessionName: c.sessionName,
      expiration: i.value.expiration.toISOString(),
      durationSeconds: c.durationSeconds,
      issuance: i.issuance,
      reason: i.reason,
      ...(i.issuance === 1 && c.statements?.length ? { statements: c.statements } : {}),
      ...(i.issuance === 1 && c.managedPolicyArns?.length ? { managedPolicies: c.managedPolicyArns } : {}),
      ...(c.unscoped ? { unscoped: c.unscoped } : {}),
      ...(requester ? { requester } : {}),
    };
    record('credentials.refreshed', event);
    log(`aws: credentials #${i.issuance} issued, valid until ${event.expiration}`);
  };
  const recordGithub = (i: Issued<MintedToken>, requester?: BrokerRequester): void => {
    const event: TokenRefreshed = {
      app: i.value.appSlug,
      installationId: i.value.installationId,
      repositories: i.value.repositories,
      permissions: i.value.permissions,
      expiresAt: i.value.expiresAt,
      issuance: i.issuance,
      reason: i.reason,
      ...(requester ? { requester } : {}),
    };
    record('token.refreshed', event);
    log(`github: token #${i.issuance} minted, valid until ${event.expiresAt}`);
  };

  // The first credentials before serving: a wrong role or app fails the step at once.
  if (aws) recordAws((await aws.get()).issued);
  if (github) recordGithub((await github.get()).issued);

  // The cached answer is rendered once per issuance: the hot path is a digest compare and a write.
  const bodies = new WeakMap<object, Buffer>();
  const rendered = <T>(i: Issued<T>, render: (v: T) => string): Buffer => {
    let b = bodies.get(i);
    if (!b) bodies.set(i, (b = Buffer.from(render(i.value), 'utf8')));
    return b;
  };
  const send = (
    res: ServerResponse,
    status: number,
    body: string | Buffer,
    type = 'application/json',
  ): void => {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
    res.end(body);
  };
  const fail = (res: ServerResponse, status: number, message: string): void =>
    send(res, status, JSON.stringify({ message }));

  /** Each source's latest issuance record, which the next waits for. */
  const lastRecorded = new WeakMap<object, Promise<void>>();

  /** Serves a source: the cached value at once, or a new one recorded with its requester. */
  async function serve<T>(
    req: IncomingMessage,
    res: ServerResponse,
    source: CachedCredential<T>,
    render: (v: T) => string,
    recordIssued: (i: Issued<T>, requester?: BrokerRequester) => void,
  ): Promise<void> {
    const cached = source.fresh();
    if (cached) return send(res, 200, rendered(cached, render));
    // Looked up while the exchange runs; recorded after the answer, so it never delays it.
    const peer = findPeer(
      req.socket.remotePort ?? 0,
      port,
      req.socket.remoteAddress,
      req.socket.localAddress,
    ).catch(() => undefined);
    let got: { issued: Issued<T>; started?: Promise<Issued<T>> };
    try {
      got = await source.get(cfg.refreshWaitMs ?? DEFAULT_REFRESH_WAIT_MS);
    } catch (e) {
      if (stopping) return fail(res, 503, 'the broker is stopping');
      log(`refresh failed: ${describeError(e)}`);
      return fail(res, 503, 'the broker could not get new credentials; see the step log');
    }
    // Stop began while this request waited on a refresh: what the refresh brought is
    // revoked (GitHub) or never handed out (AWS), and recorded below all the same.
    if (stopping) fail(res, 503, 'the broker is stopping');
    else send(res, 200, rendered(got.issued, render));
    if (!got.started) return;
    // Recorded when the refresh this request began settles, even if it was answered before,
    // and after the source's previous issuance was (its requester's lookup may take longer
    // than the next refresh: the ledger keeps issuances in their order).
    const recorded = Promise.all([got.started, peer, lastRecorded.get(source)]).then(
      ([issued, p]) => recordIssued(issued, p),
      (e: unknown) => log(`refresh failed: ${describeError(e)}`),
    );
    lastRecorded.set(source, recorded);
    recording.add(recorded);
    await recorded.finally(() => recording.delete(recorded));
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'POST' && path === STOP_PATH) {
      if (!control.accepts(req.headers.authorization)) {
        unauthorized++;
        return fail(res, 401, 'unauthorized');
      }
      const report = await stop('stop');
      res.setHeader('connection', 'close');
      return send(res, 200, JSON.stringify(report));
    }
    requests++;
    if (!bearer.accepts(req.headers.authorization)) {
      unauthorized++;
      return fail(res, 401, 'unauthorized');
    }
    if (stopping) return fail(res, 503, 'the broker is stopping');
    if (req.method !== 'GET') return fail(res, 405, 'method not allowed');
    let served: Promise<void> | undefined;
    if (path === AWS_PATH && aws) served = serve(req, res, aws, containerCredentials, recordAws);
    else if (path === GITHUB_TOKEN_PATH && github)
      served = serve(
        req,
        res,
        github,
        (t) => JSON.stringify({ token: t.token, expiresAt: t.expiresAt }),
        recordGithub,
      );
    else return fail(res, 404, 'not found');
    // Tracked from the moment it is taken: a stop that comes while it waits on a refresh
    // waits for that refresh, so what it mints is revoked and recorded.
    serving.add(served);
    return served.finally(() => serving.delete(served));
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      log(`request failed: ${describeError(e)}`);
      if (!res.headersSent) fail(res, 500, 'internal error');
      else res.end();
    });
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(cfg.port ?? 0, cfg.bind, () => {
      server.off('error', reject);
      resolve();
    });
  });
  port = (server.address() as AddressInfo).port;
  const started: BrokerStarted = {
    port,
    serves: [...(aws ? (['aws'] as const) : []), ...(github ? (['github'] as const) : [])],
    refreshBeforeSeconds: cfg.refreshBeforeSeconds,
    stopsBy: new Date(Date.now() + cfg.maxLifetimeSeconds * 1000).toISOString(),
  };
  record('broker.started', started);
  log(`listening on ${cfg.bind}:${port}`);

  function stop(reason: BrokerStopped['reason']): Promise<BrokerStopped> {
    stopping ??= (async () => {
      log(`stopping (${reason})`);
      // No refresh starts from here on; one already on its way is waited for (bounded),
      // with the requests waiting on it, so what it brings is in `issued` to be revoked.
      aws?.close();
      github?.close();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...serving, ...recording]),
        new Promise<void>((r) => (timer = setTimeout(r, cfg.stopWaitMs ?? DEFAULT_STOP_WAIT_MS))),
      ]);
      clearTimeout(timer);
      // A mint still on its way may leave a token at GitHub that nothing here can revoke.
      const unsettled = github && !(await github.settled(0)) ? 1 : 0;
      if (unsettled)
        log('github: a token mint was still on its way at stop; it may stay valid until it expires');
      if (aws && !(await aws.settled(0)))
        log('aws: an STS exchange was still on its way at stop; its credentials are handed to no one');
      const revoked = github
        ? await revokeAll(cfg.github!.apiUrl, [...github.issued], {
            fetch: deps.fetch,
            env: cfg.proxyEnv ?? {},
          })
        : { revoked: 0, failed: 0, skipped: 0, results: [] };
      const revocations = { ...revoked, failed: revoked.failed + unsettled };
      for (const r of revocations.results)
        if (r.status === 'failed') log(`github: a token may stay valid until it expires: ${r.detail ?? ''}`);
      const latest = Math.max(aws?.latestExpiry ?? 0, revocations.failed ? (github?.latestExpiry ?? 0) : 0);
      const report: BrokerStopped = {
        reason,
        port,
        requests,
        unauthorized,
        awsRefreshes: aws?.refreshes ?? 0,
        tokenRefreshes: github?.refreshes ?? 0,
        revocations: {
          revoked: revocations.revoked,
          failed: revocations.failed,
          skipped: revocations.skipped,
        },
        ...(latest > 0 ? { handedOutValidUntil: new Date(latest * 1000).toISOString() } : {}),
      };
      record('broker.stopped', report);
      ledgerClosed = true;
      // Answers in flight (the stop request's own) finish; nothing new is accepted.
      server.close();
      setTimeout(() => server.closeAllConnections(), 200).unref();
      resolveStopped(report);
      return report;
    })();
    return stopping;
  }

  return { port, stop, stopped };
}
