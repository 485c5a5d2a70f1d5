/** One event of every type Cordon writes, for summary tests and the screenshot check. */
import type { EgressReport, EventTypes } from '../../src/ledger/events.js';
import type { LedgerEvent } from '../../src/ledger/ledger.js';
import type { DaemonReport } from '../../src/rootd/protocol.js';

export const sampleEvents: { [K in keyof EventTypes]: EventTypes[K] } = {
  'run.recorded': {
    repository: 'octo-org/octo-repo',
    sha: 'a'.repeat(40),
    ref: 'refs/heads/main',
    event: 'issue_comment',
    actor: 'octocat',
    triggeringActor: 'octocat',
    workflow: 'agent',
    job: 'agent',
    runId: '4242',
    runAttempt: '1',
    runnerOs: 'Linux',
    oidc: {
      sub: 'repo:octo-org/octo-repo:ref:refs/heads/main',
      iss: 'https://token.actions.githubusercontent.com',
    },
  },
  'credentials.issued': {
    provider: 'aws',
    role: 'arn:aws:iam::123456789012:role/agent',
    assumedRoleArn: 'arn:aws:sts::123456789012:assumed-role/agent/cordon-4242-1-agent',
    sessionName: 'cordon-4242-1-agent',
    expiration: '2026-11-25T10:15:00.000Z',
    durationSeconds: 900,
    export: 'env',
    statements: [{ effect: 'Allow', actions: ['s3:GetObject'], resources: ['arn:aws:s3:::bucket/*'] }],
    managedPolicies: ['arn:aws:iam::aws:policy/ReadOnlyAccess'],
  },
  'credentials.ended': {
    provider: 'aws',
    role: 'arn:aws:iam::123456789012:role/agent',
    filesRemoved: [],
    secondsLeft: 610,
  },
  'token.issued': {
    app: 'cordon-agent',
    bot: 'cordon-agent[bot]',
    botId: 41898282,
    installationId: 77,
    repositories: ['octo-org/octo-repo'],
    permissions: { contents: 'write', pull_requests: 'write' },
    expiresAt: '2026-11-25T11:00:00Z',
  },
  'token.revoked': { installationId: 77, status: 'revoked', confirmStatus: 401 },
  'egress.started': {
    policy: 'block',
    domains: ['registry.npmjs.org', '*.githubusercontent.com'],
    ips: [],
    preset: 'github-hosted',
    disableSudo: true,
    disableDocker: true,
    setupMs: 180,
  },
  'egress.report': {
    policy: 'block',
    allowed: [{ name: 'registry.npmjs.org', queries: 12, addresses: ['104.16.0.35', '2606:4700::6810:23'] }],
    blockedNames: [{ name: 'exfil.evil.test', queries: 3, process: 'curl (pid 4242)' }],
    blockedDestinations: [{ address: '203.0.113.9', protocol: 'tcp', port: 443, packets: 2 }],
    rebinding: [
      {
        name: 'imds.wild.test',
        answers: 2,
        addresses: [{ address: '169.254.169.254', kind: 'metadata' }],
        identity: 'agent',
      },
    ],
    dns: { answeredFromCache: 7, upstreamTimeouts: 0, malformed: 1, setFailures: 2 },
  },
  'egress.tampered': {
    changes: [
      { what: '/etc/resolv.conf was changed (put back to the proxy)', seen: '2026-01-01T00:00:00.000Z' },
    ],
  },
  'secrets.fetched': { secrets: [{ name: 'NPM_TOKEN', source: 'aws-sm:ci/npm' }] },
  'run.started': {
    commandSha256: 'f'.repeat(64),
    shell: 'bash',
    secrets: [{ name: 'NPM_TOKEN', source: 'aws-sm:ci/npm' }],
    envRemoved: ['ACTIONS_ID_TOKEN_REQUEST_TOKEN'],
  },
  'run.finished': {
    exitCode: 0,
    durationMs: 81234,
    bytesScrubbed: 40,
    leaks: [{ secret: 'NPM_TOKEN', path: 'notes.txt', line: 3 }],
    leaksNotScanned: ['bomb.gz (over 67108864 decompressed bytes)'],
  },
  'run.sealed': { window: 1, next: 'MCowBQYDK2VwAyEA' + 'A'.repeat(43) + '=', signature: 'c2ln' },
  'commits.observed': {
    base: 'a'.repeat(40),
    head: 'b'.repeat(40),
    commits: [
      {
        sha: 'b'.repeat(40),
        author: 'cordon-agent[bot]',
        authorEmail: '41898282+cordon-agent[bot]@users.noreply.github.com',
        committer: 'cordon-agent[bot]',
        committerEmail: '41898282+cordon-agent[bot]@users.noreply.github.com',
        coAuthors: [],
        signature: 'none',
        subject: 'Fix the flaky test',
        verdict: 'agent',
      },
      {
        sha: 'c'.repeat(40),
        author: 'Mona Lisa',
        authorEmail: 'mona@example.com',
        committer: 'Mona Lisa',
        committerEmail: 'mona@example.com',
        coAuthors: [],
        signature: 'none',
        subject: 'Pretend to be a human <script>alert(1)</script> | pipe',
        verdict: 'impersonation',
      },
    ],
  },
  'broker.started': {
    port: 41234,
    serves: ['aws', 'github'],
    refreshBeforeSeconds: 300,
    stopsBy: '2026-11-25T16:10:00.000Z',
  },
  'credentials.refreshed': {
    provider: 'aws',
    role: 'arn:aws:iam::123456789012:role/agent',
    assumedRoleArn: 'arn:aws:sts::123456789012:assumed-role/agent/cordon-4242-1-agent',
    sessionName: 'cordon-4242-1-agent',
    expiration: '2026-11-25T10:30:00.000Z',
    durationSeconds: 900,
    issuance: 2,
    reason: 'expiring',
    requester: { pid: 4321, comm: 'python3' },
  },
  'token.refreshed': {
    app: 'cordon-agent',
    installationId: 77,
    repositories: ['octo-org/octo-repo'],
    permissions: { contents: 'write' },
    expiresAt: '2026-11-25T12:00:00Z',
    issuance: 2,
    reason: 'expiring',
    requester: { pid: 4400, comm: 'git-remote-http' },
  },
  'broker.stopped': {
    reason: 'stop',
    requests: 12,
    unauthorized: 1,
    awsRefreshes: 2,
    tokenRefreshes: 2,
    revocations: { revoked: 2, failed: 0, skipped: 0 },
    handedOutValidUntil: '2026-11-25T10:30:00.000Z',
  },
  'ledger.verified': {
    by: 'run',
    upTo: 4,
    duringRun: [{ line: 5, action: 'run', type: 'credentials.refreshed', chained: true }],
  },
  'ledger.tampered': {
    by: 'run',
    upTo: 4,
    duringRun: [{ line: 5, chained: false }],
    changed: [2],
    removed: [],
    inserted: [5],
    details: ['line 2 was changed', 'line 5 was inserted while the agent ran'],
  },
  'report.written': {
    upTo: 17,
    head: 'c'.repeat(64),
    verdict: 'altered',
    details: 2,
    attribution: 'd'.repeat(64),
    summary: true,
  },
  'report.followed': {
    reportLine: 18,
    after: [{ line: 19, action: 'egress', type: 'egress.report', chained: true }],
    verdict: 'altered',
    changed: false,
  },
  'publish.pushed': {
    branch: 'agent/issue-42',
    commit: 'c'.repeat(40),
    commits: 2,
    remote: 'https://github.com/octo-org/octo-repo.git',
    token: 'revoked',
  },
  'publish.refused': {
    branch: 'agent/issue-42',
    commit: 'c'.repeat(40),
    reason: 'the run ledger is altered',
  },
};

/** A daemon report with nothing in it but what `over` sets (toEvent's input in unit tests). */
export function daemonReport(over: Partial<DaemonReport> = {}): DaemonReport {
  return {
    policy: 'block',
    names: [],
    namesDropped: 0,
    forgedAnswers: 0,
    malformed: 0,
    upstreamTimeouts: 0,
    setFailures: 0,
    setUpdates: 0,
    blocked: [],
    tamper: [],
    ...over,
  };
}

/** An `egress.report` as a ledger line's event (the fields the summary reads). */
export function egressReportLine(data: EgressReport): LedgerEvent {
  return {
    v: 1,
    time: '2026-01-01T00:00:00.000Z',
    action: 'egress',
    type: 'egress.report',
    data: { ...data },
    prev: '',
  };
}
