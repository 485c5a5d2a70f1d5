/**
 * Runs an action's main or post: every failure ends as one `::error::` with what, why and
 * fix, scrubbed of every registered secret form, and never a stack trace.
 */
import { describeError, isCordonError } from './errors.js';
import { secrets } from './mask.js';
import { Runner } from './runner.js';

export async function runEntry(
  fn: (runner: Runner) => Promise<void> | void,
  runner = new Runner(),
): Promise<void> {
  try {
    await fn(runner);
  } catch (e) {
    const text = isCordonError(e) ? e.message : `unexpected error: ${describeError(e)}`;
    runner.setFailed(secrets.scrub(text));
  }
}
