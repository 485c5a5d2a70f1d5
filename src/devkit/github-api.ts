/**
 * A loopback stand-in for the GitHub REST API, as far as a GitHub App token goes: it checks
 * the app JWT's RS256 signature and claims with the app's public key, finds installations,
 * issues tokens honouring `repositories` and `permissions`, revokes them, and answers with
 * GitHub's real shapes and error bodies. Used by the tests and `cordon demo`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { compactVerify } from 'jose';

export interface FakeInstallation {
  id: number;
  account: string;
  accountType?: 'Organization' | 'User';
  /** Repository names the installation reaches; `'all'` for every repository of the account. */
  repositories: string[] | 'all';
  /** What the owner granted the app on this installation. */
  permissions: Record<string, string>;
}

export interface GithubApiOptions {
  appId: number;
  clientId?: string;
  slug: string;
  /** PEM (public or private; only the public half is used) of the app's key. */
  publicKey: string | KeyObject;
  botId: number;
  installations: FakeInstallation[];
  /** Seconds added to this server's clock, to play a runner whose clock is off. */
  clockOffsetS?: number;
  /** Whether answers carry a Date header (real GitHub always sends one). */
  sendDate?: boolean;
  /** Permissions added to every token beyond what was asked, to play a GitHub that over-grants. */
  overGrant?: Record<string, string>;
  /** Repositories added to every token beyond those asked, to play a GitHub that over-grants them. */
  overGrantRepositories?: string[];
  /** Token lifetime in seconds (GitHub: one hour). */
  tokenLifetimeS?: number;
  /** `default_branch` of every repository (GET /repos/{owner}/{repo}); `main` by default. */
  defaultBranch?: string;
}

export interface ApiCall {
  method: string;
  path: string;
  status: number;
  /** `jwt`, `token` or `none`. */
  auth: string;
}

export interface IssuedToken {
  token: string;
  installationId: number;
  permissions: Record<string, string>;
  repositories: string[];
  revoked: boolean;
}

export interface GithubApiServer {
  url: string;
  calls: ApiCall[];
  tokens: IssuedToken[];
  count(method: string, pathPrefix: string): number;
  /** The next `n` calls (after any already queued) answer this status (5xx or a rate limit). */
  failNext(status: number, n?: number, retryAfterS?: number): void;
  /** The next `n` calls answer a secondary rate limit: 403 with `retry-after`. */
  rateLimitNext(n: number, retryAfterS?: number): void;
  /**
   * Makes DELETE /installation/token answer this status instead of revoking; `204` plays a
   * GitHub that says it revoked and did not (the token keeps working).
   */
  breakRevoke(status: number): void;
  close(): Promise<void>;
}

const DOCS = 'https://docs.github.com/rest';

export async function startGithubApi(opts: GithubApiOptions): Promise<GithubApiServer> {
  const publicKey =
    typeof opts.publicKey === 'string' ? createPublicKey(opts.publicKey) : createPublicKey(opts.publicKey);
  const calls: ApiCall[] = [];
  const tokens: IssuedToken[] = [];
  const failures: { status: number; retryAfterS?: number }[] = [];
  let revokeStatus: number | undefined;
  let base = '';
  const serverNow = (): number => Math.floor(Date.now() / 1000) + (opts.clockOffsetS ?? 0);

  const appJson = {
    id: opts.appId,
    client_id: opts.clientId ?? `Iv23li${opts.appId}`,
    slug: opts.slug,
    node_id: `A_${opts.appId}`,
    owner: { login: opts.installations[0]?.account ?? 'octo-org', type: 'Organization' },
    name: opts.slug,
    description: '',
    external_url: 'https://example.com',
    html_url: `https://github.com/apps/${opts.slug}`,
    created_at: '2024-01-01T00:00:00Z',
    updated_at: '2024-01-01T00:00:00Z',
    permissions: {},
    events: [],
    installations_count: opts.installations.length,
  };

  function installationJson(inst: FakeInstallation): Record<string, unknown> {
    return {
      id: inst.id,
      account: { login: inst.account, id: 1000 + inst.id, type: inst.accountType ?? 'Organization' },
      repository_selection: inst.repositories === 'all' ? 'all' : 'selected',
      access_tokens_url: `${base}/app/installations/${inst.id}/access_tokens`,
      repositories_url: `${base}/installation/repositories`,
      html_url: `https://github.com/organizations/${inst.account}/settings/installations/${inst.id}`,
      app_id: opts.appId,
      app_slug: opts.slug,
      target_id: 1000 + inst.id,
      target_type: inst.accountType ?? 'Organization',
      permissions: inst.permissions,
      events: [],
      created_at: '2024-01-01T00:00:00Z',
      updated_at: '2024-01-01T00:00:00Z',
      single_file_name: null,
      suspended_at: null,
    };
  }

  async function checkJwt(
    req: IncomingMessage,
  ): Promise<{ ok: true } | { ok: false; status: number; message: string }> {
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    if (!m) return { ok: false, status: 401, message: 'A JSON web token could not be decoded' };
    let payload: Record<string, unknown>;
    try {
      payload = JSON.parse(Buffer.from(m[1].split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<
        string,
        unknown
      >;
    } catch {
      return { ok: false, status: 401, message: 'A JSON web token could not be decoded' };
    }
    if (
      payload.iss !== opts.appId &&
      payload.iss !== String(opts.appId) &&
      payload.iss !== appJson.client_id
    ) {
      return { ok: false, status: 404, message: 'Integration not found' };
    }
    try {
      const { protectedHeader } = await compactVerify(m[1], publicKey, { algorithms: ['RS256'] });
      if (protectedHeader.alg !== 'RS256') throw new Error('alg');
    } catch {
      return { ok: false, status: 401, message: 'A JSON web token could not be decoded' };
    }
    const now = serverNow();
    const { iat, exp } = payload as { iat?: unknown; exp?: unknown };
    if (typeof iat !== 'number' || iat > now) {
      return {
        ok: false,
        status: 401,
        message: "'Issued at' claim ('iat') must be an Integer representing a time in the past.",
      };
    }
    if (typeof exp !== 'number' || exp <= now) {
      return {
        ok: false,
        status: 401,
        message:
          "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires.",
      };
    }
    if (exp > now + 600)
      return { ok: false, status: 401, message: "'Expiration time' claim ('exp') is too far in the future." };
    return { ok: true };
  }

  function tokenFor(req: IncomingMessage): IssuedToken | undefined {
    const m = /^(?:token|Bearer) (.+)$/.exec(req.headers.authorization ?? '');
    return m ? tokens.find((t) => t.token === m[1] && !t.revoked) : undefined;
  }

  async function handle(
    req: IncomingMessage,
    res: ServerResponse,
    body: string,
  ): Promise<{ status: number; auth: string }> {
    const url = new URL(req.url ?? '/', base);
    const path = url.pathname.replace(/\/+$/, '');
    const method = req.method ?? 'GET';
    const send = (
      status: number,
      data?: unknown,
      headers: Record<string, string> = {},
    ): { status: number; auth: string } => {
      res.sendDate = opts.sendDate ?? true;
      if (res.sendDate) res.setHeader('date', new Date(serverNow() * 1000).toUTCString());
      res.writeHead(status, {
        'content-type': 'application/json; charset=utf-8',
        'x-github-request-id': randomBytes(4).toString('hex'),
        ...headers,
      });
      res.end(data === undefined ? undefined : JSON.stringify(data));
      return { status, auth: authKind };
    };
    const error = (status: number, message: string, doc = DOCS): { status: number; auth: string } =>
      send(status, { message, documentation_url: doc, status: String(status) });
    const authKind = (req.headers.authorization ?? '').startsWith('Bearer ey')
      ? 'jwt'
      : req.headers.authorization
        ? 'token'
        : 'none';

    const failure = failures.shift();
    if (failure) {
      if (failure.status === 403 || failure.status === 429) {
        return send(
          failure.status,
          {
            message:
              'You have exceeded a secondary rate limit. Please wait a few minutes before you try again.',
            documentation_url: `${DOCS}/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits`,
            status: String(failure.status),
          },
          failure.retryAfterS === undefined ? {} : { 'retry-after': String(failure.retryAfterS) },
        );
      }
      return error(failure.status, failure.status === 502 ? 'Server Error' : 'Service Unavailable');
    }

    const jwtRoute =
      path === '/app' ||
      /^\/repos\/[^/]+\/[^/]+\/installation$/.test(path) ||
      /^\/(orgs|users)\/[^/]+\/installation$/.test(path) ||
      /^\/app\/installations\/\d+(\/access_tokens)?$/.test(path);
    if (jwtRoute) {
      const check = await checkJwt(req);
      if (!check.ok) return error(check.status, check.message);
      if (method === 'GET' && path === '/app') return send(200, appJson);
      let m = /^\/repos\/([^/]+)\/([^/]+)\/installation$/.exec(path);
      if (m && method === 'GET') {
        const [owner, repo] = [
          decodeURIComponent(m[1]).toLowerCase(),
          decodeURIComponent(m[2]).toLowerCase(),
        ];
        const inst = opts.installations.find(
          (i) =>
            i.account.toLowerCase() === owner &&
            (i.repositories === 'all' || i.repositories.some((r) => r.toLowerCase() === repo)),
        );
        return inst
          ? send(200, installationJson(inst))
          : error(
              404,
              'Not Found',
              `${DOCS}/apps/apps#get-a-repository-installation-for-the-authenticated-app`,
            );
      }
      m = /^\/(orgs|users)\/([^/]+)\/installation$/.exec(path);
      if (m && method === 'GET') {
        const kind = m[1] === 'orgs' ? 'Organization' : 'User';
        const inst = opts.installations.find(
          (i) =>
            i.account.toLowerCase() === decodeURIComponent(m![2]).toLowerCase() &&
            (i.accountType ?? 'Organization') === kind,
        );
        return inst ? send(200, installationJson(inst)) : error(404, 'Not Found');
      }
      m = /^\/app\/installations\/(\d+)\/access_tokens$/.exec(path);
      if (m && method === 'POST') {
        const inst = opts.installations.find((i) => i.id === Number(m![1]));
        if (!inst)
          return error(404, 'Not Found', `${DOCS}/apps/apps#create-an-installation-access-token-for-an-app`);
        let ask: { repositories?: string[]; permissions?: Record<string, string> } = {};
        try {
          ask = body ? JSON.parse(body) : {};
        } catch {
          return error(400, 'Problems parsing JSON');
        }
        const rank: Record<string, number> = { read: 1, write: 2, admin: 3 };
        const askedPerms = ask.permissions ?? { ...inst.permissions };
        for (const [name, level] of Object.entries(askedPerms)) {
          if ((rank[inst.permissions[name]] ?? 0) < (rank[level] ?? 99)) {
            return error(
              422,
              'The permissions requested are not granted to this installation.',
              `${DOCS}/apps/apps#create-an-installation-access-token-for-an-app`,
            );
          }
        }
        let repos: string[];
        if (ask.repositories) {
          const reachable = inst.repositories;
          const missing =
            reachable === 'all'
              ? []
              : ask.repositories.filter((r) => !reachable.some((x) => x.toLowerCase() === r.toLowerCase()));
          if (missing.length) {
            return error(
              422,
              'There is at least one repository that does not exist or is not accessible to the parent installation.',
              `${DOCS}/apps/apps#create-an-installation-access-token-for-an-app`,
            );
          }
          repos = ask.repositories;
        } else {
          repos = inst.repositories === 'all' ? [] : inst.repositories;
        }
        repos = [...repos, ...(opts.overGrantRepositories ?? [])];
        // GitHub adds metadata: read to any token that reaches repositories.
        const granted: Record<string, string> = { ...askedPerms, ...opts.overGrant };
        if (!granted.metadata) granted.metadata = 'read';
        const token = `ghs_${randomBytes(18).toString('base64url').replace(/[-_]/g, 'x')}`;
        tokens.push({
          token,
          installationId: inst.id,
          permissions: granted,
          repositories: repos,
          revoked: false,
        });
        const selection = ask.repositories || inst.repositories !== 'all' ? 'selected' : 'all';
        const expires = new Date((serverNow() + (opts.tokenLifetimeS ?? 3600)) * 1000)
          .toISOString()
          .replace(/\.\d+Z$/, 'Z');
        return send(201, {
          token,
          expires_at: expires,
          permissions: granted,
          repository_selection: selection,
          ...(selection === 'selected'
            ? {
                repositories: repos.map((r, n) => ({
                  id: 5000 + n,
                  name: r,
                  full_name: `${inst.account}/${r}`,
                  private: true,
                })),
              }
            : {}),
        });
      }
      return error(404, 'Not Found');
    }

    if (method === 'DELETE' && path === '/installation/token') {
      const t = tokenFor(req);
      if (!t) return error(401, 'Bad credentials');
      if (revokeStatus === 204) return send(204);
      if (revokeStatus) return error(revokeStatus, revokeStatus >= 500 ? 'Server Error' : 'Forbidden');
      t.revoked = true;
      return send(204);
    }
    if (method === 'GET' && path === '/installation/repositories') {
      const t = tokenFor(req);
      if (!t) return error(401, 'Bad credentials');
      const inst = opts.installations.find((i) => i.id === t.installationId);
      const names = t.repositories.length
        ? t.repositories
        : inst && inst.repositories !== 'all'
          ? inst.repositories
          : [];
      return send(200, {
        total_count: names.length,
        repositories: names.map((r, n) => ({ id: 5000 + n, name: r, full_name: `${inst?.account}/${r}` })),
      });
    }
    const repoPath = /^\/repos\/([^/]+)\/([^/]+)$/.exec(path);
    if (method === 'GET' && repoPath) {
      const t = tokenFor(req);
      if (!t) return error(401, 'Bad credentials');
      const inst = opts.installations.find((i) => i.id === t.installationId);
      const [owner, name] = [decodeURIComponent(repoPath[1]), decodeURIComponent(repoPath[2])];
      const reaches =
        inst?.account.toLowerCase() === owner.toLowerCase() &&
        (t.repositories.length
          ? t.repositories.some((r) => r.toLowerCase() === name.toLowerCase())
          : inst.repositories === 'all' ||
            inst.repositories.some((r) => r.toLowerCase() === name.toLowerCase()));
      if (!reaches) return error(404, 'Not Found', `${DOCS}/repos/repos#get-a-repository`);
      return send(200, {
        name,
        full_name: `${inst.account}/${name}`,
        private: true,
        default_branch: opts.defaultBranch ?? 'main',
      });
    }
    const user = /^\/users\/([^/]+)$/.exec(path);
    if (method === 'GET' && user) {
      const login = decodeURIComponent(user[1]);
      if (req.headers.authorization && !tokenFor(req)) return error(401, 'Bad credentials');
      if (login.toLowerCase() !== `${opts.slug}[bot]`)
        return error(404, 'Not Found', `${DOCS}/users/users#get-a-user`);
      return send(200, {
        login: `${opts.slug}[bot]`,
        id: opts.botId,
        node_id: `BOT_${opts.botId}`,
        type: 'Bot',
        site_admin: false,
        html_url: `https://github.com/apps/${opts.slug}`,
      });
    }
    return error(404, 'Not Found');
  }

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = new URL(req.url ?? '/', base).pathname;
      handle(req, res, Buffer.concat(chunks).toString('utf8')).then(
        ({ status, auth }) => calls.push({ method: req.method ?? 'GET', path, status, auth }),
        () => {
          res.writeHead(500);
          res.end();
          calls.push({ method: req.method ?? 'GET', path, status: 500, auth: 'none' });
        },
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: base,
    calls,
    tokens,
    count: (method, prefix) => calls.filter((c) => c.method === method && c.path.startsWith(prefix)).length,
    failNext(status, n = 1, retryAfterS) {
      for (let k = 0; k < n; k++) failures.push({ status, retryAfterS });
    },
    rateLimitNext(n, retryAfterS) {
      for (let k = 0; k < n; k++) failures.push({ status: 403, retryAfterS });
    },
    breakRevoke(status) {
      revokeStatus = status;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A fresh app key pair, made at test time: never a committed PEM. */
export function makeAppKey(): { pkcs1: string; pkcs8: string; publicKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    pkcs1: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
    pkcs8: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}
