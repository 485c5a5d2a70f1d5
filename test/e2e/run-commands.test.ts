/**
 * The agent's output is read by the runner, which takes every `::command::` line in it as a
 * workflow command of the step: `::add-mask::` (job-wide: every later step's log, and the
 * summary's words), `::add-matcher::` (job-wide problem matchers over every later step's
 * output), `::set-output::` (outputs past `$CORDON_OUTPUT`'s checks), `::set-env::` and
 * `::add-path::` (later steps' environment, where the workflow sets
 * ACTIONS_ALLOW_UNSECURE_COMMANDS), and annotations in run's name. Whole-program runs of
 * dist/run (the harness parses the output as the runner does);
 * the agent's own user needs root, useradd and setpriv.
 */
import { afterAll, describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { Job } from '../../src/devkit/run-action.js';
import { canMakeUsers } from '../harness/users.js';

const jobs: Job[] = [];
afterAll(() => {
  for (const j of jobs) rmSync(j.root, { recursive: true, force: true });
});

const agentUsable = canMakeUsers() && existsSync('/usr/bin/setpriv');
const users = agentUsable ? ['agent', 'runner'] : ['runner'];
if (!agentUsable) console.warn('run-commands e2e: user: agent skipped (needs root, useradd, setpriv)');

/** What the agent prints: each a workflow command the runner would act on. */
const HOSTILE = [
  `printf '::add-mask::CAUTION\\n'`,
  `printf '::add-matcher::%s/matcher.json\\n' "$PWD"`,
  `printf '::set-output name=forged::by-the-agent\\n'`,
  `printf '::set-env name=BASH_ENV::/tmp/forged-by-the-agent\\n'`,
  `printf '  ::warning title=run::forged by the agent, indented\\n'`,
  `printf '::error::forged by the agent on stderr\\n' >&2`,
  // A command planted in git's hooks, so that run warns after the command (its own
  // annotation must still reach the runner).
  `echo 'echo hook' > .git/hooks/pre-commit`,
  // Last, a line left open on each stream: run's next bytes would finish it.
  `printf '::warning::forged by the agent, unterminated'`,
  `printf '::error::forged by the agent, unterminated on stderr' >&2`,
].join('\n');

describe("the agent's output is not read as workflow commands", () => {
  test.each(users)(
    "user: %s: the agent's ::add-mask::, ::add-matcher::, ::set-output::, ::set-env:: and annotations are not commands; run's own after it are",
    async (user) => {
      const job = new Job({ env: {} });
      jobs.push(job);
      execFileSync('git', ['init', '-q', job.workspace]);
      const r = await job.run('run', 'main', { inputs: { run: HOSTILE, user }, timeoutMs: 60000 });
      expect(r.code).toBe(0);
      // The agent's lines are in the log as text (a zero-width space between the colons).
      expect(r.stdout).toContain(':\u200b:add-mask::CAUTION');
      expect(r.stdout).toContain(':\u200b:warning::forged by the agent, unterminated');
      const forged = r.commands.filter(
        (c) =>
          /forged|by-the-agent|CAUTION|matcher/.test(c.message) ||
          ['add-matcher', 'set-output', 'set-env'].includes(c.command),
      );
      expect(forged).toEqual([]);
      // run's own warning after the command is still a command.
      expect(
        r.commands.some(
          (c) => c.command === 'warning' && /put back as before it: \.git\/hooks\/pre-commit/.test(c.message),
        ),
      ).toBe(true);
      // Each stream's open line was ended before run wrote its own.
      expect(r.stderr).toContain('forged by the agent, unterminated on stderr\n');
      expect(r.stdout).toMatch(/forged by the agent, unterminated\n/);
    },
    90000,
  );
});
