/**
 * The leak scan against a command that hides a registered value where a push or an upload
 * still sends it: off HEAD in git (a side branch, a tag, the stash, a dangling object, a
 * repository it makes), and inside compressed files and archives. Whole-program runs of
 * dist/run/main.js (and start's post for the attribution); the command runs as its own user
 * where root is reachable. Every test greps every output for the value.
 */
import { describe, expect, test } from '@jest/globals';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseLedgerText } from '../../src/ledger/ledger.js';
import { Job, type StepResult } from '../../src/devkit/run-action.js';

const VALUE = 'leak-e2e-value-9f3b1c7a55';
const AS = '-c user.name=agent -c user.email=agent@example.com';

function ledgerText(job: Job): string {
  const p = join(job.runnerTemp, 'cordon', 'ledger.jsonl');
  return existsSync(p) ? readFileSync(p, 'utf8') : '';
}

function finished(job: Job): {
  leaks: { path: string }[];
  leaksNotScanned?: string[];
  commitsCreated?: string[];
} {
  const e = parseLedgerText(ledgerText(job))
    .flatMap((l) => (l.event ? [l.event] : []))
    .find((x) => x.type === 'run.finished');
  return e?.data as { leaks: { path: string }[]; leaksNotScanned?: string[]; commitsCreated?: string[] };
}

function expectNoValue(job: Job, r: StepResult): void {
  const all = [
    // The runner consumes mask commands; they never reach the log.
    r.stdout
      .split('\n')
      .filter((l) => !l.startsWith('::add-mask::'))
      .join('\n'),
    r.stderr,
    JSON.stringify(r.outputs),
    JSON.stringify(r.state),
    r.summary,
    ledgerText(job),
  ];
  for (const text of all) {
    expect(text.includes(VALUE)).toBe(false);
    expect(text.includes(Buffer.from(VALUE).toString('base64'))).toBe(false);
  }
}

/** A job whose workspace is a git repository with one commit, the value in its environment. */
function repoJob(): Job {
  const job = new Job({ env: { SOURCE_VALUE: VALUE } });
  chmodSync(job.root, 0o1777);
  const git = (...args: string[]): void => {
    execFileSync(
      'git',
      ['-C', job.workspace, '-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args],
      {
        stdio: 'ignore',
      },
    );
  };
  git('init', '-q', '-b', 'main');
  writeFileSync(join(job.workspace, 'tracked.txt'), 'a\n');
  git('add', '.');
  git('commit', '-qm', 'init');
  return job;
}

async function runIn(job: Job, run: string, mode = 'fail'): Promise<StepResult> {
  return job.run('run', 'main', { inputs: { run, secrets: 'TOKEN=env:SOURCE_VALUE', 'leak-scan': mode } });
}

function errors(r: StepResult): string[] {
  return r.commands.filter((c) => c.command === 'error').map((c) => c.message);
}

const CASES: [string, string, RegExp][] = [
  [
    'a commit on a new branch, HEAD unchanged',
    `git checkout -q -b side && printf 'x\\n%s\\n' "$TOKEN" > f.txt && git add f.txt && git ${AS} commit -qm side && git checkout -q main`,
    /^run: secret TOKEN was written to f\.txt@[0-9a-f]{12}:2$/,
  ],
  [
    'an annotated tag',
    `git ${AS} tag -a -m "release $TOKEN" v1`,
    /^run: secret TOKEN was written to v1@[0-9a-f]{12}:/,
  ],
  [
    'a stash',
    `echo "$TOKEN" >> tracked.txt && git ${AS} stash -q`,
    /^run: secret TOKEN was written to tracked\.txt@[0-9a-f]{12}:2$/,
  ],
  [
    'a dangling object',
    'printf %s "$TOKEN" | git hash-object -w --stdin >/dev/null',
    /^run: secret TOKEN was written to blob@[0-9a-f]{12}:1$/,
  ],
  [
    'a repository it makes in a subfolder',
    `mkdir -p deep/sub && cd deep/sub && git init -q && echo "$TOKEN" > s && git add s && git ${AS} commit -qm s && rm s`,
    /^run: secret TOKEN was written to deep\/sub:s@[0-9a-f]{12}:1$/,
  ],
  ['a .gz', 'echo "$TOKEN" | gzip > v.gz', /^run: secret TOKEN was written to v\.gz!gunzip:1$/],
  [
    'a .zip',
    '(seq 1 2000; echo "$TOKEN") > v.txt && zip -q v.zip v.txt && rm v.txt',
    /^run: secret TOKEN was written to v\.zip!v\.txt:2001$/,
  ],
  [
    'a .tar.gz',
    'mkdir d && echo "$TOKEN" > d/v.txt && tar czf v.tar.gz d && rm -r d',
    /^run: secret TOKEN was written to v\.tar\.gz!gunzip:/,
  ],
  [
    'a gzip inside a tar',
    'echo "$TOKEN" | gzip > in.gz && tar cf v.tar in.gz && rm in.gz',
    /^run: secret TOKEN was written to v\.tar!in\.gz!gunzip:1$/,
  ],
  [
    'a git blob that is a gzip',
    'echo "$TOKEN" | gzip | git hash-object -w --stdin >/dev/null',
    /^run: secret TOKEN was written to blob@[0-9a-f]{12}!gunzip:1$/,
  ],
];

describe('run: the leak scan reads what can leave the runner', () => {
  test.each(CASES)(
    'a value hidden only in %s is found and fails the step',
    async (_what, command, message) => {
      const job = repoJob();
      const r = await runIn(job, command);
      expect(r.code).not.toBe(0);
      expect(errors(r)).toEqual(expect.arrayContaining([expect.stringMatching(message)]));
      expect(errors(r).some((m) => /wrote TOKEN into/.test(m))).toBe(true);
      expect(finished(job).leaks.length).toBeGreaterThan(0);
      expectNoValue(job, r);
    },
  );

  test('a gzip and a zip bomb past the bound are named as not scanned, not expanded, and fail the step', async () => {
    const job = repoJob();
    const r = await runIn(
      job,
      [
        'head -c 100000000 /dev/zero | gzip > bomb.gz',
        `python3 -c "import zipfile; z = zipfile.ZipFile('bomb.zip', 'w', zipfile.ZIP_DEFLATED); z.writestr('zeros', bytes(100000000)); z.close()"`,
      ].join('\n'),
    );
    expect(r.code).not.toBe(0);
    const notScanned = finished(job).leaksNotScanned ?? [];
    expect(notScanned).toEqual(
      expect.arrayContaining([
        'bomb.gz (over 67108864 decompressed bytes)',
        'bomb.zip!zeros (over 67108864 decompressed bytes)',
      ]),
    );
    expect(errors(r).some((m) => /leak scan could not read everything/.test(m))).toBe(true);
    expectNoValue(job, r);
  });

  test('with leak-scan: warn, content not scanned only warns; an encrypted zip entry is named', async () => {
    const job = repoJob();
    const r = await runIn(job, 'echo "$TOKEN" > v.txt && zip -q -P pw enc.zip v.txt && rm v.txt', 'warn');
    expect(r.code).toBe(0);
    const warnings = r.commands.filter((c) => c.command === 'warning').map((c) => c.message);
    expect(warnings).toContain('run: the leak scan did not read enc.zip!v.txt (encrypted)');
    expectNoValue(job, r);
  });

  test('a commit made with commit-tree and no ref is recorded as created, and start lists it', async () => {
    const job = repoJob();
    job.env.GITHUB_SHA = execFileSync('git', ['-C', job.workspace, 'rev-parse', 'HEAD'], {
      encoding: 'utf8',
    }).trim();
    const start = await job.run('start', 'main');
    expect(start.code).toBe(0);
    const r = await runIn(
      job,
      `git ${AS} commit-tree -m hidden "$(git rev-parse HEAD^{tree})" -p HEAD > "${join(job.root, 'hidden.sha')}"`,
    );
    expect(r.code).toBe(0);
    const hidden = readFileSync(join(job.root, 'hidden.sha'), 'utf8').trim();
    expect(finished(job).commitsCreated).toEqual([hidden]);
    const end = await job.run('start', 'post', { state: start.state });
    const observed = parseLedgerText(ledgerText(job))
      .flatMap((l) => (l.event ? [l.event] : []))
      .find((x) => x.type === 'commits.observed')?.data as { commits: { sha: string; subject: string }[] };
    expect(end.code).toBe(0);
    expect(observed.commits.map((c) => [c.sha, c.subject])).toEqual([[hidden, 'hidden']]);
  });

  // "leak-scan: off": nothing is read for values, so git lists only what the attribution needs
  // (the workspace repository's commits), never a repository under it. A FIFO where git reads
  // the nested one's alternates tells whether any git opened it: its writer opens only once a
  // reader does, then closes (git reads an empty file and goes on).
  test('with leak-scan: off, git never reads a repository under the workspace; commits created are still recorded', async () => {
    const job = repoJob();
    const nested = join(job.workspace, 'vendor', 'lib');
    execFileSync('git', ['init', '-q', nested]);
    const fifo = join(nested, '.git', 'objects', 'info', 'alternates');
    execFileSync('mkfifo', [fifo]);
    const opened = join(job.root, 'fifo-opened');
    // git opens it again and again (about 1000 times for a listing): bounded, killed at the end.
    const writer = spawn(
      'sh',
      ['-c', 'for i in $(seq 100000); do exec 3>"$0"; exec 3>&-; echo opened >> "$1"; done', fifo, opened],
      { stdio: 'ignore' },
    );
    try {
      const r = await runIn(
        job,
        `git ${AS} commit-tree -m made "$(git rev-parse HEAD^{tree})" -p HEAD > "${join(job.root, 'made.sha')}"`,
        'off',
      );
      expect(r.code).toBe(0);
      expect(existsSync(opened)).toBe(false);
      const made = readFileSync(join(job.root, 'made.sha'), 'utf8').trim();
      expect(finished(job).commitsCreated).toEqual([made]);
      expect(finished(job).leaksNotScanned).toBeUndefined();
      // The control: with the scan on, the same workspace's nested repository is read.
      const on = await runIn(job, 'true', 'warn');
      expect(on.code).toBe(0);
      expect(existsSync(opened)).toBe(true);
    } finally {
      writer.kill('SIGKILL');
    }
  }, 120000);
});
