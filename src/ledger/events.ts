/**
 * The ledger's event types and their data: the contract between the actions that write
 * events and the summary that renders them. Data carries names, ARNs, scopes, counts and
 * times, never a secret value. Fields may be added; the summary renders unknown ones.
 */
import type { LedgerEvent } from './ledger.js';
import type { EgressReport, EgressStarted, EgressTampered } from './events-egress.js';

export type { EgressReport, EgressStarted, EgressTampered } from './events-egress.js';
import type { CommitsObserved } from './events-commits.js';
export type { CommitObserved, CommitsObserved } from './events-commits.js';
export { commitsListed, unclassifiedCommits } from './events-commits.js';

export interface RunRecorded {
  repository?: string;
  sha?: string;
  ref?: string;
  event?: string;
  actor?: string;
  triggeringActor?: string;
  workflow?: string;
  workflowRef?: string;
  job?: string;
  runId?: string;
  runAttempt?: string;
  runnerOs?: string;
  serverUrl?: string;
  /** OIDC claims when `id-token: write` was granted. */
  oidc?: Record<string, unknown>;
  /** The workspace repository as start's main saw it (commits.ts, workspaceAtStart). */
  workspace?: WorkspaceAtStart;
}

/** Whether `sha` was a commit in the workspace repository at start, and its git directory's `dev:ino`. */
export interface WorkspaceAtStart {
  shaPresent: boolean;
  gitDirId?: string;
  /** The tags that existed (github/tags.ts): post counts a tag as the run's only if new or moved since. */
  tags?: TagsAtStart;
}

/**
 * The tags of the workspace repository at start, each a salted digest of its name, object and
 * peeled object (16 characters, concatenated in git's order); `cut`: there were more than the
 * first `count` recorded.
 */
export interface TagsAtStart {
  salt: string;
  count: number;
  digests: string;
  cut?: boolean;
}

/** An AWS role session: what `credentials.issued` and `credentials.refreshed` share. */
export interface AwsSession {
  provider: 'aws';
  role: string;
  assumedRoleArn: string;
  sessionName: string;
  expiration: string;
  durationSeconds: number;
}

/**
 * No session policy narrowed the role: the credentials carry every permission it has.
 * `default`: none was given (`actions/aws`, as configure-aws-credentials allows);
 * `chosen`: `allow: '*'` said so (the only way `actions/run` hands the agent such credentials).
 */
export type Unscoped = 'default' | 'chosen';

/** What narrows an AWS session: the session policy's statements and managed ARNs, or that nothing does. */
export interface SessionScope {
  statements?: { effect: string; actions: string[]; resources: string[] }[];
  managedPolicies?: string[];
  unscoped?: Unscoped;
}

export interface CredentialsIssued extends AwsSession, SessionScope {
  account?: string;
  region?: string;
  export: string;
}

export interface CredentialsEnded {
  provider: 'aws';
  role: string;
  filesRemoved: string[];
  secondsLeft: number;
}

export interface TokenIssued {
  app: string;
  bot: string;
  botId?: number;
  installationId: number;
  repositories: string[];
  permissions: Record<string, string>;
  expiresAt: string;
  /** The git identity set for the bot; commit attribution matches commits against it. */
  gitUserName?: string;
  gitUserEmail?: string;
}

export interface TokenRevoked {
  installationId?: number;
  status: 'revoked' | 'failed' | 'skipped';
  /** HTTP status of the follow-up call that confirms the token no longer works. */
  confirmStatus?: number;
  detail?: string;
}

export interface SecretsFetched {
  secrets: { name: string; source: string; forms?: number }[];
  export?: string;
}

export interface RunStarted {
  commandSha256: string;
  /**
   * The command on one line (at most 200 characters), scrubbed of every registered secret
   * and of what looks like a credential (platform/redact.ts); absent from older ledgers.
   */
  command?: string;
  shell: string;
  secrets: { name: string; source: string }[];
  envRemoved: string[];
  credentials?: string[];
  /** `fresh` (a new HOME for the command) or `keep`. */
  home?: 'fresh' | 'keep';
  /**
   * What earlier steps left that the command does not get, by name: `~/.aws` and the like
   * (left out of its HOME), `env:AWS_CONFIG_FILE` (variables dropped), `.git/config:<key>`
   * (the checkout token, taken out of the file while the command runs).
   */
  withheld?: string[];
  /** `cgroup` (every process the command starts is killed at its end) or `process-group` (weaker). */
  containment?: 'cgroup' | 'process-group';
  /** Why containment is the weaker process group. */
  containmentReason?: string;
  /** Who made the cgroup when run is not root: `egress daemon`. */
  containmentBy?: string;
  /** Who the command ran as. */
  user?: RunUser;
}

/**
 * `agent`: a Unix user made for this step (name, uid), through root or sudo, lent the
 * workspace by an idmapped mount or chown; `runner`: the runner user, asked for or (with
 * `fallback`) because no other user could be had, for `reason`.
 */
export interface RunUser {
  mode: 'agent' | 'runner';
  name?: string;
  uid?: number;
  via?: 'root' | 'sudo' | 'launcher';
  workspace?: 'idmap' | 'chown';
  fallback?: boolean;
  reason?: string;
}

/** What the command wrote into the step's file-command files (put back after it): names only. */
export interface FileCommandsTampered {
  env: string[];
  output: string[];
  state: string[];
  path: string[];
  summary: boolean;
  rewritten: string[];
}

export interface RunFinished {
  exitCode: number | null;
  /** Set when the command was never started (its cgroup could not be made): why. Nothing ran. */
  notStarted?: string;
  signal?: string;
  durationMs: number;
  bytesScrubbed: number;
  timedOut?: boolean;
  leaks: { secret: string; path: string; line: number }[];
  /** What the leak scan could not (fully) read, with the reason (first 100). */
  leaksNotScanned?: string[];
  /** Commit objects created in the workspace's repository while the command ran, reachable or not. */
  commitsCreated?: string[];
  processesKilled?: number;
  /** Processes the command left running when it ended (all killed with its cgroup or group). */
  processesAlive?: number;
  /** Processes that did not die in time (0 unless one was stuck in the kernel). */
  processesLeft?: number;
  containment?: 'cgroup' | 'process-group';
  containmentReason?: string;
  /** False when the ledger lines before `run.started` changed while the command ran. */
  ledgerIntact?: boolean;
  /** The checkout token taken out of .git/config was put back after the command. */
  checkoutTokenRestored?: boolean;
  /** With `user: agent`: its user removed, the workspace lent and given back (ms), what went wrong. */
  agentUser?: {
    name: string;
    removed: boolean;
    lendMs: number;
    handBackMs: number;
    /** Files, links, FIFOs, directories and SysV IPC objects the agent left where everyone writes, removed. */
    leftoversRemoved?: number;
    /** cron and at, where installed: the agent's user was denied them while it existed. */
    schedulersDenied?: ('cron' | 'at')[];
    /** Spool files of the agent's (its crontab, at jobs) removed before its user was deleted. */
    scheduledRemoved?: string[];
    problems?: string[];
  };
  /** Set when the command wrote to the step's file commands (all put back). */
  fileCommandsTampered?: FileCommandsTampered;
  /** What the command changed under the workspace's `.git/` that makes git run programs (config, hooks, info), put back. */
  gitRestored?: string[];
  /** Of those, what could not be put back. */
  gitNotRestored?: string[];
  /** Names of the outputs the command handed back through `$CORDON_OUTPUT`. */
  outputs?: string[];
  /** Secrets the command put into DNS names (run/dns-names.ts): never the names themselves. */
  secretsInNames?: {
    secret: string;
    names: number;
    queries: number;
    identity?: 'agent' | 'runner';
    /** The names were sent on (audit mode or allowed): the value left the runner. */
    forwarded: boolean;
  }[];
  /** DNS names run could not check for its secrets (a full name table, no answer), and why. */
  dnsNamesNotChecked?: { names: number; why: string };
  /**
   * Secrets in the name of a process the fence reported (who asked a refused name, who sent
   * to a blocked destination): the process's name is the command's to choose. Counts only.
   */
  secretsInProcessNames?: { secret: string; processes: number }[];
  /**
   * Secrets the command printed with terminal escapes or invisible characters between their
   * characters (platform/hidden-forms.ts): in the job log unmasked. Names only.
   */
  secretsHiddenInOutput?: string[];
}

/** A line written while the agent's command ran: never trusted as Cordon's own. */
export interface LedgerLineRef {
  line: number;
  action?: string;
  type?: string;
  time?: string;
  /** The line chains to the one before it. */
  chained: boolean;
}

/** `run` checked the chain up to its `run.started` line after the command's processes were gone. */
export interface LedgerVerified {
  /** The step that checked. */
  by: string;
  /** Line of `run.started` (the last line held in memory). */
  upTo: number;
  /**
   * Hash of that `run.started` line: names the window this check closes, so a `run.started`
   * the command wrote inside it opens no window of its own.
   */
  startedHash?: string;
  /** Lines written while the command ran (e.g. by the credential broker): shown apart. */
  duringRun: LedgerLineRef[];
}

/** Lines changed, removed or inserted (line numbers; removed as they were). */
export interface LedgerTampered extends LedgerVerified {
  changed: number[];
  removed: number[];
  inserted: number[];
  /** Human-readable, one per finding. */
  details: string[];
}

/** The process that asked the broker, found from its socket (best effort). */
export interface BrokerRequester {
  /** Absent when the requesting process is another user's (its /proc/<pid>/fd is not readable). */
  pid?: number;
  /** `/proc/<pid>/comm`. */
  comm?: string;
  /** The uid owning the connection's socket, from /proc/net/tcp (the kernel's, not the process's say). */
  uid?: number;
}

export interface BrokerStarted {
  port: number;
  serves: ('aws' | 'github')[];
  refreshBeforeSeconds: number;
  /** When the broker stops on its own if nobody stops it (ISO 8601). */
  stopsBy: string;
}

/** The scope's statements and managed ARNs come on the first issuance (the same every time), `unscoped` on every one. */
export interface CredentialsRefreshed extends AwsSession, SessionScope {
  /** 1 for the first issuance, then counting. */
  issuance: number;
  reason: 'start' | 'expiring';
  requester?: BrokerRequester;
}

export interface TokenRefreshed {
  app: string;
  installationId: number;
  repositories: string[];
  permissions: Record<string, string>;
  expiresAt: string;
  issuance: number;
  reason: 'start' | 'expiring';
  requester?: BrokerRequester;
}

export interface BrokerStopped {
  reason: 'stop' | 'signal' | 'lifetime' | 'parent-exited';
  /** The port it served on (tells brokers in one ledger apart). */
  port?: number;
  requests: number;
  unauthorized: number;
  awsRefreshes: number;
  tokenRefreshes: number;
  revocations: { revoked: number; failed: number; skipped: number };
  /** Latest expiry among credentials already handed out: they stay valid until then. */
  handedOutValidUntil?: string;
}

/**
 * `run`'s proof that it wrote the lines closing its command's window (see `seal.ts`): an
 * Ed25519 signature with the key `start` (or the run before) left for window `window`.
 */
export interface RunSealed {
  window: number;
  /** The public key (SPKI DER, base64) the next window's seal must verify with. */
  next: string;
  /** Over the window, the hash of the line before this one, and `next` (base64). */
  signature: string;
}

/** `report` judged the ledger and wrote the summary and attribution.json from it. */
export interface ReportWritten {
  /** How many lines were judged, and the hash of the last one. */
  upTo: number;
  head: string;
  verdict: 'intact' | 'altered' | 'unverified';
  /** How many findings the verdict listed. */
  details: number;
  /** SHA-256 (hex) of the attribution.json report wrote, and its size: start's post checks the file against both. */
  attribution: string;
  attributionBytes?: number;
  /** The job summary was written (`job-summary` on, and a summary file to write to). */
  summary: boolean;
}

/** `start`'s post, after `report`: what the ledger gained since, and its own verdict. */
export interface ReportFollowed {
  /** The line of the `report.written` it follows. */
  reportLine: number;
  after: LedgerLineRef[];
  verdict: 'intact' | 'altered' | 'unverified';
  /** The verdict at post is not the one report wrote (its details differ). */
  changed: boolean;
  /** attribution.json at post: the file report wrote, another one (or a link, a FIFO...), or none. */
  attribution?: 'same' | 'changed' | 'gone';
}

/** Every event type Cordon writes, with its data shape. */
/** `publish` pushed the run's commits (src/actions/publish): never the token. */
export interface PublishPushed {
  branch: string;
  commit: string;
  /** Commits between the recorded start and the commit pushed. */
  commits: number;
  /** The remote pushed to (`<server>/<owner>/<repo>.git`). */
  remote: string;
  /** What became of the step's own token: `revoked` (confirmed dead) or why not. */
  token: string;
}

/** `publish` pushed nothing, and why. */
export interface PublishRefused {
  branch: string;
  /** The workspace's HEAD when it could be read. */
  commit?: string;
  reason: string;
  /** Set when a token had been minted: `revoked` (confirmed dead) or why not. */
  token?: string;
}

export interface EventTypes {
  'run.recorded': RunRecorded;
  'credentials.issued': CredentialsIssued;
  'credentials.ended': CredentialsEnded;
  'token.issued': TokenIssued;
  'token.revoked': TokenRevoked;
  'egress.started': EgressStarted;
  'egress.report': EgressReport;
  'egress.tampered': EgressTampered;
  'secrets.fetched': SecretsFetched;
  'run.started': RunStarted;
  'run.finished': RunFinished;
  'run.sealed': RunSealed;
  'commits.observed': CommitsObserved;
  'broker.started': BrokerStarted;
  'credentials.refreshed': CredentialsRefreshed;
  'token.refreshed': TokenRefreshed;
  'broker.stopped': BrokerStopped;
  'ledger.verified': LedgerVerified;
  'ledger.tampered': LedgerTampered;
  'report.written': ReportWritten;
  'report.followed': ReportFollowed;
  'publish.pushed': PublishPushed;
  'publish.refused': PublishRefused;
}

/**
 * The event's data when it is of that type. A line is parsed JSON, so its data is only as
 * well-formed as whoever wrote it: readers treat a missing field as absent.
 */
export function dataOf<K extends keyof EventTypes>(
  event: LedgerEvent | undefined,
  type: K,
): EventTypes[K] | undefined {
  return event?.type === type ? (event.data as object as EventTypes[K]) : undefined;
}

/** The data of every event of one type, in ledger order (see `dataOf`). */
export function eventsOf<K extends keyof EventTypes>(events: LedgerEvent[], type: K): EventTypes[K][] {
  return events.flatMap((e) => {
    const data = dataOf(e, type);
    return data ? [data] : [];
  });
}
