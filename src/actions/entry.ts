/**
 * Runs an action's main or post: every failure ends as one `::error::` with what, why and
 * fix, scrubbed of every registered secret form, and never a stack trace. Around the step:
 * a main keeps the hash of the last ledger line it wrote in its saved state (no later step
 * can read it); the post of the same step checks that line is still in the ledger and the
 * chain unbroken, and records what it found. Lines sent to the egress daemon's copy of the
 * ledger are flushed before the process ends.
 *
 * A main or post gets one `EntryContext` and reaches no process global itself: the runner,
 * this process's secret registry and the ledger come from here, so a test hands in its own.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { declaredInputNames, rejectUnknownInputs } from '../platform/declared-inputs.js';
import { describeError, isCordonError } from '../platform/errors.js';
import { flushLedgerCopy } from '../ledger/copy.js';
import { firstPrev, Ledger, ownHead } from '../ledger/ledger.js';
import { checkOwnHead } from '../ledger/head.js';
import { secrets, type SecretRegistry } from '../platform/mask.js';
import { Runner, type Env } from '../platform/runner.js';

/**
 * What a main or post works with. `env`, `runner` and `registry` are named as the domain
 * functions' deps name them, so the context itself can be passed as those deps.
 */
export interface EntryContext {
  runner: Runner;
  /** The step's environment (`runner.env`). */
  env: Env;
  /** The process's secret registry: whatever is registered is masked and scrubbed from errors. */
  registry: SecretRegistry;
  /** The run ledger, written by `action`. */
  ledger(action: string): Ledger;
  /** A file shipped next to the running bundle (`daemon.js`). */
  bundled(file: string): string;
}

export interface EntryOptions {
  /** Set in a post step: the step's name, for the check of the head its main saved. */
  post?: string;
  /** The step's runner (tests); the process's own by default. */
  runner?: Runner;
  /**
   * The action.yml whose inputs a main accepts; by default the one beside the bundle
   * (`dist/<name>/main.js` -> `actions/<name>/action.yml`), when there is one.
   */
  actionYml?: string;
}

/** `actions/<name>/action.yml` for the running `dist/<name>/main.js`, if the layout is that. */
function actionYmlBeside(script: string | undefined): string | undefined {
  if (!script || basename(script) !== 'main.js') return undefined;
  const name = basename(dirname(script));
  const file = join(dirname(script), '..', '..', 'actions', name, 'action.yml');
  return existsSync(file) ? file : undefined;
}

export const HEAD_STATE = 'ledger-head';
export const FIRST_STATE = 'ledger-first';

export async function runEntry(
  fn: (ctx: EntryContext) => Promise<unknown> | void,
  opts: EntryOptions = {},
): Promise<void> {
  const runner = opts.runner ?? new Runner();
  const ctx: EntryContext = {
    runner,
    env: runner.env,
    registry: secrets,
    ledger: (action) => Ledger.forEnv(runner.env, { action }),
    bundled: (file) => join(dirname(process.argv[1]), file),
  };
  try {
    if (opts.post) verifyHead(opts.post, runner);
    const actionYml = opts.post ? undefined : (opts.actionYml ?? actionYmlBeside(process.argv[1]));
    if (actionYml) {
      const action = basename(dirname(actionYml));
      rejectUnknownInputs(action, runner.env, declaredInputNames(readFileSync(actionYml, 'utf8')));
    }
    await fn(ctx);
  } catch (e) {
    const text = isCordonError(e) ? e.message : `unexpected error: ${describeError(e)}`;
    runner.setFailed(secrets.scrub(text));
  } finally {
    const head = ownHead();
    if (!opts.post && head) {
      runner.saveState(HEAD_STATE, head.hash);
      // What line 1 chains to: deleting every line before this step's shows in post.
      // A link or a FIFO put in the ledger's place since this step wrote is refused here too.
      try {
        const first = firstPrev(head.path);
        if (first) runner.saveState(FIRST_STATE, first);
      } catch (e) {
        runner.setFailed(secrets.scrub(isCordonError(e) ? e.message : describeError(e)));
      }
    }
    await flushLedgerCopy();
  }
}

/** The post's check of its main's head; never fails the step (start's post judges the run). */
function verifyHead(step: string, runner: Runner): void {
  const head = runner.getState(HEAD_STATE);
  if (!head) return;
  try {
    const ledger = Ledger.forEnv(runner.env, { action: step });
    const check = checkOwnHead(
      ledger.read(),
      head,
      `${step} post`,
      runner.getState(FIRST_STATE) || undefined,
    );
    const { ok, ...data } = check;
    ledger.append(ok ? 'ledger.verified' : 'ledger.tampered', data);
    if (!ok)
      runner.warning(
        `${step}: the run ledger was altered after this step wrote to it: ${check.details.join('; ')}`,
        {
          title: 'Cordon ledger',
        },
      );
  } catch (e) {
    runner.warning(`${step}: could not check the run ledger: ${describeError(e)}`);
  }
}
