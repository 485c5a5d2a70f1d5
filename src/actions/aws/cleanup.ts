/** `aws`'s post: remove what main wrote and record `credentials.ended`. Loads no AWS SDK. */
import type { CredentialsEnded } from '../../ledger/events.js';
import { Ledger } from '../../ledger/ledger.js';
import type { Runner } from '../../platform/runner.js';
import type { AwsState } from './issue.js';
import { profilePaths, removeSection, sectionHeader } from '../../aws/profile-files.js';

/** Removes this step's profile sections (and the files when empty) and records how long the credentials had left. */
export function endCredentials(
  runner: Runner,
  opts: {
    /** export: broker: the latest expiry among credentials the broker handed out. */
    validUntil?: string;
    now?: () => Date;
  } = {},
): CredentialsEnded | undefined {
  const raw = runner.getState('aws');
  if (!raw) {
    runner.info('aws: no credentials were issued by this step; nothing to clean up');
    return undefined;
  }
  const state = JSON.parse(raw) as AwsState;
  const removed: string[] = [];
  if (state.export === 'profile' && state.profile) {
    const paths = profilePaths(runner.tempDir);
    for (const kind of ['config', 'credentials'] as const) {
      const path = paths[kind];
      if (removeSection(path, sectionHeader(kind, state.profile))) removed.push(path);
    }
  }
  const until = opts.validUntil ?? state.expiration;
  const now = opts.now?.() ?? new Date();
  const secondsLeft = Math.max(0, Math.round((Date.parse(until) - now.getTime()) / 1000));
  const event: CredentialsEnded = { provider: 'aws', role: state.role, filesRemoved: removed, secondsLeft };
  Ledger.forEnv(runner.env, { action: 'aws' }).append('credentials.ended', event);
  const note =
    state.export === 'env'
      ? '; AWS_* variables stay set for later steps of this job until they expire'
      : state.export === 'broker'
        ? '; the broker no longer answers, and credentials it handed out expire on their own'
        : '';
  runner.info(
    `aws: credentials for ${state.role} ended with ${secondsLeft} s left; removed ${removed.length ? removed.join(', ') : 'nothing'}${note}`,
  );
  return event;
}
