/**
 * The runner reads workflow commands from every line a step prints, the agent's command's
 * output included: `::add-mask::` hides a word in every later log line and in the job
 * summary (Cordon's alerts with it), `::stop-commands::` silences every command after it,
 * for the rest of the job, and `::error::` can pass for Cordon's. `run` defangs them.
 */
import { afterAll, describe, expect, test } from '@jest/globals';
import { rmSync } from 'node:fs';
import { Job } from '../../src/devkit/run-action.js';

const jobs: Job[] = [];
afterAll(() => {
  for (const j of jobs) rmSync(j.root, { recursive: true, force: true });
});

/** Lines as the runner reads them (CR, LF or CR LF end one), as its parser trims them. */
const runnerLines = (out: string): string[] => out.split(/\r\n|\r|\n/).map((l) => l.trimStart());

describe("run: workflow commands in the command's output", () => {
  test("hostile: the command's ::add-mask::, ::stop-commands::, ::error:: and ##[...] lines reach the runner as text, not commands", async () => {
    const job = new Job();
    jobs.push(job);
    expect((await job.run('start', 'main')).code).toBe(0);
    const script = [
      "echo '::add-mask::IMPERSONATION'",
      "echo '  ::add-mask::ALTERED'",
      "printf 'x\\r::add-mask::CAUTION\\n'",
      "echo '::error title=Cordon ledger::Record intact'",
      "echo 'text ##[add-mask]findings'",
      "echo '::stop-commands::agenttoken' >&2",
      "printf '\\u00a0::warning::nbsp\\n'",
      // Legitimate text that only looks like it stays readable.
      "echo 'a::b ## [x] ok'",
    ].join('\n');
    const r = await job.run('run', 'main', { inputs: { run: script, user: 'runner' } });
    expect(r.code).toBe(0);
    const lines = [...runnerLines(r.stdout), ...runnerLines(r.stderr)];
    // run's own commands still go through; none of the command's does.
    for (const word of ['IMPERSONATION', 'ALTERED', 'CAUTION', 'Record intact', 'agenttoken', 'nbsp'])
      expect(lines.filter((l) => l.startsWith('::') && l.includes(word))).toEqual([]);
    expect(`${r.stdout}${r.stderr}`).not.toContain('##[');
    expect(r.masks).not.toContain('IMPERSONATION');
    // What the command printed is still there to read, with the marker that defangs it.
    expect(r.stdout).toMatch(/:\u200b:add-mask::IMPERSONATION/);
    expect(r.stdout).toContain('a::b ## [x] ok');
  }, 60000);
});
