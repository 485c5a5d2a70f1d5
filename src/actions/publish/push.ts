/**
 * publish's side of the remote: which remote (from the runner's variables), its default
 * branch (asked with the step's token), and the push itself, from a bare repository of
 * publish's own whose alternates name the workspace's objects, so nothing the agent wrote in
 * the workspace's `.git` is read.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeError } from '../../platform/errors.js';
import { gitBytes } from '../../platform/git.js';
import type { SecretRegistry } from '../../platform/mask.js';
import type { Env } from '../../platform/runner.js';
import type { GithubApi } from '../../github/api.js';
import { Refusal } from './refusal.js';

/** What the push gets at most, end to end. */
const PUSH_TIMEOUT_MS = 5 * 60_000;

/** The remote and the one protocol git may use for it, from the runner's variables. */
export function remoteOf(env: Env): { url: string; scheme: 'https' | 'http' } {
  const server = (env.GITHUB_SERVER_URL || 'https://github.com').replace(/\/+$/, '');
  const repository = env.GITHUB_REPOSITORY ?? '';
  let parsed: URL | undefined;
  try {
    parsed = new URL(server);
  } catch {
    parsed = undefined;
  }
  const scheme = parsed?.protocol === 'https:' ? 'https' : parsed?.protocol === 'http:' ? 'http' : undefined;
  if (!parsed || !scheme || parsed.username || parsed.password || parsed.search || parsed.hash)
    throw new Refusal(
      `GITHUB_SERVER_URL "${server.slice(0, 80)}" is not an http(s) URL of a server`,
      'publish pushes to the server the runner names, over https (or http), with no user or query in the URL',
      "run publish on a GitHub Actions runner (it sets GITHUB_SERVER_URL); on GHES, fix the runner's configuration",
    );
  if (!/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/.test(repository) || repository.includes('..'))
    throw new Refusal(
      `GITHUB_REPOSITORY "${repository.slice(0, 80)}" is not owner/name`,
      'publish pushes to the repository the workflow runs in',
      'run publish in a GitHub Actions job',
    );
  return { url: `${server}/${repository}.git`, scheme };
}

/**
 * Pushes `commit` to `branch` of `remote` from a bare repository of publish's own (alternates:
 * the workspace's objects). Neither the workspace's configuration nor any global or system
 * one is read; the token reaches git through GIT_CONFIG_* variables only.
 */
export function pushCommit(opts: {
  objects: string;
  commit: string;
  branch: string;
  remote: { url: string; scheme: 'https' | 'http' };
  token: string;
  registry: SecretRegistry;
  tempRoot: string;
}): void {
  const dir = mkdtempSync(join(opts.tempRoot, 'cordon-publish-'));
  try {
    const repo = join(dir, 'repo.git');
    const run = (args: string[], extraEnv?: Record<string, string>, timeoutMs?: number): string =>
      gitBytes(
        [
          // The workspace's commit-graph, bitmaps and multi-pack index are files the agent
          // wrote (read through the alternates): git takes parents and object lists from them
          // without reading the objects. No gc of this repository either.
          '-c',
          'core.commitGraph=false',
          '-c',
          'pack.useBitmaps=false',
          '-c',
          'core.multiPackIndex=false',
          '-c',
          'gc.auto=0',
          ...args,
        ],
        { cwd: repo, extraEnv, timeoutMs },
      ).toString('utf8');
    gitBytes(['init', '-q', '--bare', '--template=', repo], { cwd: dir });
    mkdirSync(join(repo, 'objects', 'info'), { recursive: true });
    if (/[\n\r]/.test(opts.objects) || !opts.objects.startsWith('/'))
      throw new Error(`the workspace's objects directory is not an absolute path git can name`);
    writeFileSync(join(repo, 'objects', 'info', 'alternates'), `${opts.objects}\n`);
    run(['update-ref', 'refs/heads/publish', opts.commit]);
    const header = `AUTHORIZATION: basic ${Buffer.from(`x-access-token:${opts.token}`).toString('base64')}`;
    opts.registry.register(header.slice('AUTHORIZATION: basic '.length), {
      name: 'GitHub App installation token (basic auth)',
    });
    try {
      run(
        [
          '-c',
          `protocol.${opts.remote.scheme}.allow=always`,
          '-c',
          'http.followRedirects=false',
          'push',
          '--porcelain',
          '--no-verify',
          '--no-recurse-submodules',
          opts.remote.url,
          // No `+`: a push that is not a fast-forward is refused by git and by the server.
          `refs/heads/publish:refs/heads/${opts.branch}`,
        ],
        {
          GIT_CONFIG_COUNT: '1',
          GIT_CONFIG_KEY_0: 'http.extraHeader',
          GIT_CONFIG_VALUE_0: header,
        },
        PUSH_TIMEOUT_MS,
      );
    } catch (e) {
      throw new Error(gitSaid(e));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * What git said when the push failed: the refs it rejected (`--porcelain`'s `!` lines) and
 * its last lines of stderr, not the command line (the settings, long and of no use).
 */
function gitSaid(e: unknown): string {
  const out = (b: unknown): string =>
    Buffer.isBuffer(b) ? b.toString('utf8') : typeof b === 'string' ? b : '';
  const { stdout, stderr, code } = (e ?? {}) as { stdout?: unknown; stderr?: unknown; code?: unknown };
  const rejected = out(stdout)
    .split('\n')
    .filter((l) => l.startsWith('!'))
    .map((l) => l.replace(/^!\s+\S+\s+/, '').trim());
  const said = out(stderr)
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('To ') && l !== 'Done');
  const parts = [...rejected, ...said.slice(-3)];
  if (code === 'ETIMEDOUT') parts.push(`no answer within ${PUSH_TIMEOUT_MS / 1000} s`);
  return parts.join('; ') || describeError(e);
}

/** The repository's default branch, as GitHub says, with the step's token. */
export async function defaultBranch(api: GithubApi, repository: string, token: string): Promise<string> {
  const r = await api.request<{ default_branch?: unknown }>(
    'GET',
    `/repos/${repository}`,
    () => `token ${token}`,
  );
  const name = r.body?.default_branch;
  if (typeof name !== 'string' || !name) throw new Error('GitHub named no default branch');
  return name;
}
