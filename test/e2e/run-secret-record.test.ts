/**
 * Hostile whole-program runs of dist/run: the command puts a secret it was given into a
 * string of its own choosing that `run` records after it (an output's name in
 * $CORDON_OUTPUT, a file it leaves in `.git/hooks/`, a line it adds to GITHUB_PATH). The
 * ledger refuses any line holding a secret, so before the fix such a name made `run.finished`
 * unrecordable: the step ended on "ledger: refused to record event run.finished" with no
 * `run.finished` (its leaks, commits and findings) and no seal; and a line cut at 100
 * characters carried the first 100 characters of a longer value into the log and the ledger.
 * And every process `run` starts, traced (strace), has no secret on its command line: before
 * the fix, the checkout token went back into `.git/config` through git's argv. And a value
 * printed with colour codes or zero-width spaces between its characters, which passes the
 * scrubber, is named as leaked. Needs root for `user: agent`.
 */
import { afterAll, describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseLedgerText } from '../../src/ledger/ledger.js';
import { Job, type StepResult } from '../../src/devkit/run-action.js';
import { canMakeUsers } from '../harness/users.js';

const usable = canMakeUsers();
if (!usable && process.env.CI === 'true')
  throw new Error('run-secret-record e2e: needs root and useradd (CI=true)');
if (!usable) console.warn('run-secret-record e2e skipped: needs root and useradd');
const suite = usable ? describe : describe.skip;

const jobs: Job[] = [];
afterAll(() => {
  for (const j of jobs) rmSync(j.root, { recursive: true, force: true });
});

function newJob(env: Record<string, string> = {}): Job {
  const j = new Job({ env });
  jobs.push(j);
  chmodSync(j.root, 0o755);
  return j;
}

function events(job: Job): { type: string; data: Record<string, unknown> }[] {
  const text = readFileSync(join(job.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8');
  return parseLedgerText(text).flatMap((l) => (l.event ? [l.event] : []));
}

/** The log as the runner shows it (mask commands are consumed), errors, outputs, ledger. */
function everything(job: Job, r: StepResult, post: StepResult): string {
  return [
    post.stdout,
    post.summary,
    r.stdout
      .split('\n')
      .filter((l) => !l.startsWith('::add-mask::'))
      .join('\n'),
    r.stderr,
    JSON.stringify(r.outputs),
    JSON.stringify(r.env),
    r.path.join('\n'),
    r.summary,
    readFileSync(join(job.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8'),
  ].join('\n');
}

/** A value that is a valid output name, as many API keys are: letters, digits, `_` and `-`. */
const SECRET = 'recordSecret_7f3e9a2c41d8b6e0';
/** Longer than the 100 characters a file-command name is cut to. */
const LONG = `long-secret-${'q8Zt3vX1mK9pR2wY'.repeat(9)}`;

suite('run: a secret in a name the command chooses is recorded by name, never by value', () => {
  test.each([
    [
      'an output name in CORDON_OUTPUT (its value)',
      'agent',
      'echo "$API_KEY=1" >> "$CORDON_OUTPUT"',
      /name of an output/,
    ],
    [
      'an output name in CORDON_OUTPUT (its hex)',
      'agent',
      'echo "x$(printf %s "$API_KEY" | xxd -p | tr -d "\\n")=1" >> "$CORDON_OUTPUT"',
      /name of an output/,
    ],
    ['a file it leaves in .git/hooks', 'agent', 'touch ".git/hooks/$API_KEY"', undefined],
    ['a line it adds to GITHUB_PATH', 'runner', 'echo "/opt/$API_KEY" >> "$GITHUB_PATH"', /file commands/],
    [
      'a variable name it adds to GITHUB_ENV',
      'runner',
      'echo "$API_KEY=1" >> "$GITHUB_ENV"',
      /file commands/,
    ],
  ])(
    'hostile: %s (user: %s): run.finished is written and sealed, the value in no record',
    async (_what, user, write, error) => {
      const job = newJob({ SOURCE_VALUE: SECRET });
      execFileSync('git', ['init', '-q', job.workspace]);
      const start = await job.run('start', 'main');
      expect(start.code).toBe(0);
      const r = await job.run('run', 'main', {
        inputs: { run: `${write}\necho written`, secrets: 'API_KEY=env:SOURCE_VALUE', user },
      });
      expect(r.stdout).toContain('written');
      const types = events(job).map((e) => e.type);
      expect(types).toEqual(expect.arrayContaining(['run.finished', 'run.sealed']));
      const errors = r.commands.filter((c) => c.command === 'error').map((c) => c.message);
      expect(errors.join('\n')).not.toContain('ledger: refused');
      // Refused or reported as such, by a message that names no value.
      if (error) expect(errors.join('\n')).toMatch(error);
      if (error?.source.includes('output')) expect(r.code).not.toBe(0);
      if (!error) expect(r.code).toBe(0);
      const post = await job.run('start', 'post', { state: start.state });
      expect(post.summary).not.toContain('RECORD ALTERED');
      const all = everything(job, r, post);
      expect(all).not.toContain(SECRET);
      expect(all).not.toContain(Buffer.from(SECRET).toString('hex'));
    },
    60000,
  );

  test('hostile: a value longer than a shown name (user: runner, GITHUB_PATH) leaves no part of it in the log or the ledger', async () => {
    const job = newJob({ SOURCE_VALUE: LONG });
    const start = await job.run('start', 'main');
    const r = await job.run('run', 'main', {
      inputs: {
        run: `echo "$API_KEY" >> "$GITHUB_PATH"\necho written`,
        secrets: 'API_KEY=env:SOURCE_VALUE',
        user: 'runner',
      },
    });
    expect(r.stdout).toContain('written');
    expect(events(job).map((e) => e.type)).toEqual(expect.arrayContaining(['run.finished', 'run.sealed']));
    const post = await job.run('start', 'post', { state: start.state });
    const all = everything(job, r, post);
    // Not the value, and not the 100 characters it was cut to.
    expect(all).not.toContain(LONG.slice(0, 40));
    expect(all).not.toContain(LONG.slice(60, 100));
    // What was added is still said, by the secret's name.
    const finished = events(job).find((e) => e.type === 'run.finished')?.data as {
      fileCommandsTampered?: { path: string[] };
    };
    expect(finished.fileCommandsTampered?.path).toEqual(['***']);
  }, 60000);
});

/** strace follows every process run starts and writes each execve's argv. */
const STRACE = ['/usr/bin/strace', '/bin/strace'].find((p) => existsSync(p));
if (!STRACE && usable && process.env.CI === 'true')
  throw new Error('run-secret-record e2e: needs strace (CI=true)');
if (!STRACE) console.warn('run-secret-record e2e: the command-line test is skipped: needs strace');
const traced = usable && STRACE ? describe : describe.skip;

traced('run: no process run starts has a secret on its command line', () => {
  test.each(['agent', 'runner'])(
    'hostile: user: %s: with a secret, the github-token and the checkout token, no execve run or its helpers make holds one',
    async (user) => {
      const TOKEN = 'ghs_cmdlinecheckouttoken00000000000000';
      const header = `AUTHORIZATION: basic ${Buffer.from(`x-access-token:${TOKEN}`).toString('base64')}`;
      const GH = 'ghs_cmdlinegithubtoken0000000000000000';
      const job = newJob({ SOURCE_VALUE: SECRET });
      execFileSync('git', ['init', '-q', job.workspace]);
      execFileSync('git', [
        '-C',
        job.workspace,
        'config',
        '--add',
        'http.https://github.com/.extraheader',
        header,
      ]);
      const trace = join(job.root, 'execve.trace');
      const r = await job.run('run', 'main', {
        inputs: {
          // The command itself puts no value in an argument: only what run and its helpers start is judged.
          run: 'git status --short >/dev/null; echo ran',
          secrets: 'API_KEY=env:SOURCE_VALUE',
          'github-token': GH,
          user,
        },
        // Each exec is written, then strace lets go of that process (-b execve): a traced
        // shell could not stop itself for the agent's launcher, which waits for that.
        wrap: [
          STRACE as string,
          '-f',
          '-b',
          'execve',
          '-qq',
          '-e',
          'trace=execve',
          '-s',
          '65535',
          '-o',
          trace,
        ],
      });
      expect(r.stdout).toContain('ran');
      expect(r.code).toBe(0);
      const execs = readFileSync(trace, 'utf8');
      // The trace saw run's own git calls (the checkout token withheld and put back).
      expect(execs).toMatch(/execve\("[^"]*git", \[[^\]]*"config", "--file"/);
      expect(
        execFileSync(
          'git',
          ['-C', job.workspace, 'config', '--get', 'http.https://github.com/.extraheader'],
          { encoding: 'utf8' },
        ).trim(),
      ).toBe(header);
      for (const [what, v] of [
        ['the secret', SECRET],
        ['the github-token', GH],
        ['the checkout token', TOKEN],
        ['its header', Buffer.from(`x-access-token:${TOKEN}`).toString('base64')],
      ])
        if (execs.includes(v)) {
          const line = execs.split('\n').find((l) => l.includes(v)) ?? '';
          // The program, never the value.
          throw new Error(`${what} is on the command line of ${line.slice(0, line.indexOf('['))}`);
        }
    },
    60000,
  );
});

suite('run: a secret printed behind what the log does not show', () => {
  test.each([
    ['colour codes', "sed 's/./&\\x1b[0m/g'"],
    ['zero-width spaces', "sed 's/./&\\xe2\\x80\\x8b/g'"],
  ])(
    'hostile: the value with %s between its characters reaches the log, and is named in run.finished, a warning and the summary',
    async (_what, interleave) => {
      const job = newJob({ SOURCE_VALUE: SECRET });
      const start = await job.run('start', 'main');
      const r = await job.run('run', 'main', {
        inputs: {
          run: `printf '%s\\n' "$API_KEY" | ${interleave}\necho done`,
          secrets: 'API_KEY=env:SOURCE_VALUE',
          user: 'runner',
        },
      });
      expect(r.code).toBe(0);
      // The attack: past the scrubber, and shown as the value by a viewer that hides escapes.
      // eslint-disable-next-line no-control-regex -- the escapes a log viewer hides
      const shown = r.stdout.replace(/\x1b\[[0-9;]*m/g, '').replace(/\u200b/g, '');
      expect(shown).toContain(SECRET);
      const finished = events(job).find((e) => e.type === 'run.finished')?.data;
      expect(finished?.secretsHiddenInOutput).toEqual(['API_KEY']);
      expect(
        r.commands.some(
          (c) => c.command === 'warning' && c.message.includes('printed secret API_KEY with terminal escape'),
        ),
      ).toBe(true);
      const post = await job.run('start', 'post', { state: start.state });
      // Markdown-escaped, as every name in the summary is.
      expect(post.summary).toContain(
        '> [!CAUTION]\n> The command printed secret API\\_KEY with terminal escape',
      );
    },
    60000,
  );
});
