/**
 * The permissions an installation token can be asked for, as the REST API names them
 * (`POST /app/installations/{id}/access_tokens`), with the levels each accepts. Inputs are
 * `permission-<name>` with dashes; the API wants underscores.
 */
export type Level = 'read' | 'write' | 'admin';

const RW: Level[] = ['read', 'write'];

export const PERMISSIONS: Record<string, Level[]> = {
  actions: RW,
  administration: RW,
  'artifact-metadata': RW,
  attestations: RW,
  checks: RW,
  codespaces: RW,
  contents: RW,
  'custom-properties-for-organizations': RW,
  'dependabot-secrets': RW,
  deployments: RW,
  discussions: RW,
  'email-addresses': RW,
  'enterprise-custom-properties-for-organizations': ['read', 'write', 'admin'],
  environments: RW,
  followers: RW,
  'git-ssh-keys': RW,
  'gpg-keys': RW,
  'interaction-limits': RW,
  issues: RW,
  members: RW,
  'merge-queues': RW,
  metadata: RW,
  'organization-administration': RW,
  'organization-announcement-banners': RW,
  'organization-copilot-seat-management': ['write'],
  'organization-custom-org-roles': RW,
  'organization-custom-properties': ['read', 'write', 'admin'],
  'organization-custom-roles': RW,
  'organization-events': ['read'],
  'organization-hooks': RW,
  'organization-packages': RW,
  'organization-personal-access-token-requests': RW,
  'organization-personal-access-tokens': RW,
  'organization-plan': ['read'],
  'organization-projects': ['read', 'write', 'admin'],
  'organization-secrets': RW,
  'organization-self-hosted-runners': RW,
  'organization-user-blocking': RW,
  packages: RW,
  pages: RW,
  profile: ['write'],
  'pull-requests': RW,
  'repository-custom-properties': RW,
  'repository-hooks': RW,
  'repository-projects': ['read', 'write', 'admin'],
  'secret-scanning-alerts': RW,
  secrets: RW,
  'security-events': RW,
  'single-file': RW,
  starring: RW,
  statuses: RW,
  'team-discussions': RW,
  'vulnerability-alerts': RW,
  workflows: ['write'],
};

const RANK: Record<string, number> = { read: 1, write: 2, admin: 3 };

/** `pull-requests` -> `pull_requests`. */
export function apiName(input: string): string {
  return input.replace(/-/g, '_');
}

/**
 * What GitHub granted beyond what was asked: a permission not asked for, or a higher
 * level. `metadata: read` is not counted: GitHub adds it to every token that reaches a
 * repository, and it cannot be refused.
 */
export function excessGrants(asked: Record<string, string>, granted: Record<string, string>): string[] {
  const out: string[] = [];
  for (const [name, level] of Object.entries(granted)) {
    const want = asked[name];
    if (want === undefined) {
      if (name === 'metadata' && level === 'read') continue;
      out.push(`${name}: ${level} (not asked)`);
    } else if ((RANK[level] ?? 99) > (RANK[want] ?? 0)) {
      out.push(`${name}: ${level} (asked ${want})`);
    }
  }
  return out;
}

/** The asked permissions the installation does not hold at the asked level. */
export function missingGrants(asked: Record<string, string>, installation: Record<string, string>): string[] {
  return Object.entries(asked)
    .filter(([name, level]) => (RANK[installation[name]] ?? 0) < (RANK[level] ?? 99))
    .map(
      ([name, level]) =>
        `${name}: ${level}${installation[name] ? ` (installation has ${installation[name]})` : ' (installation has none)'}`,
    );
}
