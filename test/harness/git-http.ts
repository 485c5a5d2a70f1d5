/**
 * A loopback git server in GitHub's shape for publish's tests: real `git http-backend`
 * (CGI) over a temporary GIT_PROJECT_ROOT, answering only a request whose
 * `Authorization: Basic base64("x-access-token:" + token)` names a token the GitHub
 * stand-in issued, not revoked, with `contents: write` on the repository (401 otherwise, as
 * GitHub). Every request is recorded; while each is held, every process's command line is
 * read from /proc and searched for the secrets the test names.
 */
import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdirSync, readFileSync } from 'node:fs';
import type { IssuedToken } from '../../src/devkit/github-api.js';

export interface GitRequest {
  method: string;
  path: string;
  status: number;
  /** The token the request authenticated with was accepted. */
  authorized: boolean;
}

export interface GitHttpServer {
  url: string;
  requests: GitRequest[];
  /** Command lines (NUL as space) that held one of `watch` while a request was held. */
  cmdlinesWithSecret: string[];
  /** How many times /proc was sampled. */
  samples: number;
  /** Adds a value to look for in command lines. */
  watch(value: string): void;
  close(): Promise<void>;
}

/** Every process's command line, bounded (what any local user can read). */
function cmdlines(): string[] {
  const out: string[] = [];
  let names: string[] = [];
  try {
    names = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const n of names.slice(0, 100_000)) {
    if (!/^\d+$/.test(n)) continue;
    try {
      out.push(readFileSync(`/proc/${n}/cmdline`).toString('utf8').replace(/\0/g, ' '));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function authorized(req: IncomingMessage, tokens: IssuedToken[], repo: string): boolean {
  const m = /^Basic (.+)$/i.exec(req.headers.authorization ?? '');
  if (!m) return false;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  if (!decoded.startsWith('x-access-token:')) return false;
  const token = decoded.slice('x-access-token:'.length);
  const t = tokens.find((x) => x.token === token && !x.revoked);
  return !!t && t.permissions.contents === 'write' && t.repositories.some((r) => r.toLowerCase() === repo);
}

/**
 * Serves `projectRoot` (bare repositories at `<owner>/<name>.git`). `tokens`: the stand-in's
 * issued tokens, read live; `repo`: the repository name a token must reach. With no
 * `tokens` (a server playing the agent's), every request is answered 401 and recorded.
 */
export async function startGitHttp(opts: {
  projectRoot?: string;
  tokens?: IssuedToken[];
  repo?: string;
}): Promise<GitHttpServer> {
  const requests: GitRequest[] = [];
  const found: string[] = [];
  const watched: string[] = [];
  let samples = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const record = (status: number, ok: boolean): void => {
        requests.push({ method: req.method ?? 'GET', path: url.pathname, status, authorized: ok });
      };
      // Held here: the client's processes are alive, waiting for this answer.
      samples++;
      // Every token the stand-in issued, as itself and as the basic-auth value git sends.
      const needles = [
        ...watched,
        ...(opts.tokens ?? []).flatMap((t) => [
          t.token,
          Buffer.from(`x-access-token:${t.token}`).toString('base64'),
        ]),
      ];
      for (const line of cmdlines()) if (needles.some((w) => line.includes(w))) found.push(line);
      if (!opts.projectRoot || !opts.tokens) {
        // The agent's server asks for credentials: a git that reads its helpers runs them.
        record(401, false);
        res.writeHead(401, { 'www-authenticate': 'Basic realm="agent"' }).end();
        return;
      }
      const ok = authorized(req, opts.tokens, (opts.repo ?? '').toLowerCase());
      if (!ok) {
        record(401, false);
        res.writeHead(401, { 'www-authenticate': 'Basic realm="GitHub"', 'content-type': 'text/plain' });
        res.end('Invalid username or password.\n');
        return;
      }
      const body = Buffer.concat(chunks);
      const env: Record<string, string> = {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        GIT_PROJECT_ROOT: opts.projectRoot,
        GIT_HTTP_EXPORT_ALL: '1',
        GIT_CONFIG_NOSYSTEM: '1',
        GIT_CONFIG_GLOBAL: '/dev/null',
        REMOTE_USER: 'x-access-token',
        REMOTE_ADDR: '127.0.0.1',
        REQUEST_METHOD: req.method ?? 'GET',
        PATH_INFO: decodeURIComponent(url.pathname),
        QUERY_STRING: url.search.replace(/^\?/, ''),
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        CONTENT_LENGTH: String(body.length),
      };
      if (req.headers['content-encoding'])
        env.HTTP_CONTENT_ENCODING = String(req.headers['content-encoding']);
      if (req.headers['git-protocol']) env.GIT_PROTOCOL = String(req.headers['git-protocol']);
      const cgi = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'ignore'] });
      const out: Buffer[] = [];
      cgi.stdout.on('data', (c: Buffer) => out.push(c));
      // http-backend may answer (a GET) without reading its stdin: EPIPE is no failure.
      cgi.stdin.on('error', () => undefined);
      cgi.stdin.end(body);
      cgi.on('close', () => {
        const all = Buffer.concat(out);
        let at = all.indexOf('\r\n\r\n');
        let sep = 4;
        if (at < 0) {
          at = all.indexOf('\n\n');
          sep = 2;
        }
        const head = at < 0 ? '' : all.subarray(0, at).toString('utf8');
        const headers: Record<string, string> = {};
        let status = 200;
        for (const line of head.split(/\r?\n/)) {
          const i = line.indexOf(':');
          if (i <= 0) continue;
          const k = line.slice(0, i).trim().toLowerCase();
          const v = line.slice(i + 1).trim();
          if (k === 'status') status = Number(v.split(' ')[0]) || 200;
          else headers[k] = v;
        }
        record(status, true);
        res.writeHead(status, headers);
        res.end(at < 0 ? all : all.subarray(at + sep));
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    requests,
    cmdlinesWithSecret: found,
    get samples() {
      return samples;
    },
    watch: (v) => void watched.push(v),
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
