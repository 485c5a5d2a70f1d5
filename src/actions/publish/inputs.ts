/**
 * `publish`'s inputs: the App that mints the step's own `contents: write` token, the branch
 * to push, and the public seal key start wrote. Every check that needs no network is made
 * here, so `cordon check` makes it offline too.
 */
import { CordonError } from '../../platform/errors.js';
import { Inputs } from '../../platform/inputs.js';
import type { Env } from '../../platform/runner.js';
import { parseGithubApp, type GithubAppNaming, type GithubTokenInputs } from '../../github/inputs.js';

export interface PublishInputs {
  /** The App, its key and API URL; the token asked is `contents: write` on this repository only. */
  app: GithubTokenInputs;
  /** The branch to push (a name, never `refs/...`). */
  branch: string;
  /** Push to the repository's default branch too (refused otherwise). */
  allowDefaultBranch: boolean;
  /** start's public seal key, to check run's window seals as report does. */
  sealKey: string | undefined;
}

/** The token publish asks for, whatever the inputs: write to the repository's contents, nothing else. */
const PUBLISH_NAMING: GithubAppNaming = {
  input: {
    'app-id': 'app-id',
    'client-id': 'client-id',
    'private-key': 'private-key',
    // publish declares neither: the token is for the current repository only, and the entry
    // refuses an input the action does not declare.
    owner: 'owner',
    repositories: 'repositories',
  },
  permissions: () => [{ name: 'contents', level: 'write', text: 'write' }],
  permissionInput: () => 'app-id',
  writePermission: (name, level) => `${name}: ${level}`,
  writePermissions: (p) => p.map(([n, l]) => `${n}: ${l}`).join(' and '),
  unknownFix: 'publish asks for contents: write only',
  apiUrlInput: 'github-api-url',
};

// An Ed25519 public key as start writes it (report's own check).
const SEAL_KEY = /^[A-Za-z0-9+/]{40,120}={0,2}$/;

/** The longest branch name taken: GitHub refuses refs past 255 bytes. */
const MAX_BRANCH = 200;

/**
 * Why `name` is not a branch git and GitHub take (git check-ref-format's rules for
 * `refs/heads/<name>`, and no leading `-`, which git reads as an option), or undefined.
 */
export function badBranchName(name: string): string | undefined {
  if (name.length > MAX_BRANCH) return `it is ${name.length} characters long, past ${MAX_BRANCH}`;
  if (/^refs\//.test(name)) return 'it is a full ref, not a branch name';
  // Controls, DEL, space and the characters git reserves.
  const control = [...name].some((c) => c.charCodeAt(0) <= 0x20 || c.charCodeAt(0) === 0x7f);
  if (control || /[~^:?*[\\]/.test(name))
    return 'it holds a space, a control character or one of ~ ^ : ? * [ \\';
  if (/[^\x21-\x7e]/.test(name)) return 'it holds a character outside printable ASCII';
  if (name === '@' || name.includes('@{')) return 'it is "@" or holds "@{"';
  if (name.startsWith('-')) return 'it starts with "-"';
  if (name === 'HEAD') return '"HEAD" is not a branch';
  if (name.startsWith('/') || name.endsWith('/') || name.includes('//'))
    return 'it starts or ends with "/" or holds "//"';
  if (name.endsWith('.')) return 'it ends with "."';
  if (name.includes('..')) return 'it holds ".."';
  for (const part of name.split('/')) {
    if (part.startsWith('.')) return `its part "${part}" starts with "."`;
    if (part.endsWith('.lock')) return `its part "${part}" ends with ".lock"`;
  }
  return undefined;
}

export function parsePublishInputs(env: Env): PublishInputs {
  const i = new Inputs('publish', env);
  const app = parseGithubApp(i, PUBLISH_NAMING);
  const [owner, repo] = (env.GITHUB_REPOSITORY ?? '').split('/');
  if (!owner || !repo)
    throw new CordonError({
      what: 'publish: GITHUB_REPOSITORY is not set',
      why: 'publish pushes to the repository the workflow runs in, which the runner names in GITHUB_REPOSITORY',
      fix: 'run publish in a GitHub Actions job',
    });
  const branch = i.string('branch');
  if (!branch)
    throw new CordonError({
      what: 'publish: input branch is required',
      why: "publish pushes to the branch you name, never to one it guesses; the agent's commits go to a branch a human reviews",
      fix: 'add `branch: agent/issue-${{ github.event.issue.number }}` (or another name) under `with:`',
      input: 'branch',
    });
  const bad = badBranchName(branch);
  if (bad)
    i.fail(
      'branch',
      branch,
      `not a branch name git and GitHub take: ${bad}`,
      /^refs\/heads\//.test(branch)
        ? `write the name alone: \`branch: ${branch.slice('refs/heads/'.length)}\``
        : 'use letters, digits and - _ . / only, such as `agent/issue-42`',
    );
  const sealKey = i.string('seal-key').trim() || undefined;
  if (sealKey && !SEAL_KEY.test(sealKey))
    i.fail(
      'seal-key',
      sealKey,
      'expected the public key start wrote (base64)',
      "pass start's output: `seal-key: ${{ steps.<start id>.outputs.seal-key }}`",
    );
  return {
    // Whatever parseGithubApp read: the token reaches this one repository, contents: write.
    app: { ...app, owner, repositories: [repo], skipTokenRevoke: false, configureGit: false },
    branch,
    allowDefaultBranch: i.boolean('allow-default-branch', false),
    sealKey,
  };
}
