/**
 * Hostile, as whole programs: lines shaped to break the judging itself, not the renderer.
 * The renderer falls back to the verdict alone; the verdict and the commit list had no
 * fallback, so one forged line left no verdict, no summary and no attribution.json (found
 * by this test: report and start's post died of a TypeError).
 */
import { describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { lstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Job } from '../../src/devkit/run-action.js';
import { parseLedgerText } from '../../src/ledger/ledger.js';

/** A `node -e` program appending one line chained to the ledger's last, as anyone who can hash can. */
function forge(action: string, type: string, data: unknown): string {
  const event = JSON.stringify({ action, type, data });
  return `
    const fs = require("fs"), c = require("crypto");
    const f = process.env.RUNNER_TEMP + "/cordon/ledger.jsonl";
    const last = fs.readFileSync(f, "utf8").trim().split("\\n").pop();
    const prev = c.createHash("sha256").update(last).digest("hex");
    const e = ${event};
    fs.appendFileSync(f, JSON.stringify({ v: 1, time: new Date().toISOString(), ...e, prev }) + "\\n");`;
}

describe('the verdict survives lines shaped to break it', () => {
  test('hostile: an egress.report with a null cgroup (in the window) and a commits.observed with an object (after it): report and post still judge, write the verdict and attribution.json', async () => {
    const job = new Job();
    const start = await job.run('start', 'main');
    expect(start.code).toBe(0);
    // In the agent's window, as the runner user (user: runner, the worst case). A line of
    // egress's kind can also reach the daemon's copy from any user, through its socket.
    const run = await job.run('run', 'main', {
      inputs: {
        run: `node -e '${forge('egress', 'egress.report', { runCgroups: [null] })}'`,
        user: 'runner',
      },
    });
    expect(run.code).toBe(1);
    // After run verified: a later step of the same user (T32's open part), outside every window,
    // so the line is trusted for rendering and its commits were read without a check.
    const later = spawnSync('node', ['-e', forge('start', 'commits.observed', { commits: {} })], {
      env: { PATH: process.env.PATH, RUNNER_TEMP: job.runnerTemp },
      encoding: 'utf8',
    });
    expect(later.status).toBe(0);

    const report = await job.run('report', 'main');
    // fail-on-tamper fails the step, after it has written everything.
    expect(report.code).toBe(1);
    // No unexpected error: the commits line breaks only the renderer, which falls back to the verdict.
    expect(report.stdout).not.toContain('unexpected error');
    expect(report.outputs.verdict).toBe('altered');
    const path = report.outputs['attribution-path'];
    expect(lstatSync(path).isFile()).toBe(true);
    expect(JSON.parse(readFileSync(path, 'utf8')).verdict.status).toBe('altered');
    expect(report.summary).toContain('RECORD ALTERED');
    expect(report.summary).toContain('egress.report');

    const post = await job.run('start', 'post', { state: start.state });
    expect(post.code).toBe(1);
    expect(post.stdout).not.toContain('unexpected error');
    const last = parseLedgerText(readFileSync(join(job.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8')).at(-1);
    expect(last?.event).toMatchObject({
      action: 'start',
      type: 'report.followed',
      data: { verdict: 'altered' },
    });
    expect(post.commands.some((c) => c.command === 'error' && /ledger|record/i.test(c.message))).toBe(true);
  }, 90000);

  test("hostile: past the 500 lines a verdict lists, a token.issued forged in the window is still not rendered as Cordon's", async () => {
    const job = new Job();
    const start = await job.run('start', 'main');
    // 520 chained lines of the broker's kinds (not tampering by themselves), then the forgery.
    const filler = forge('run', 'credentials.refreshed', { issuance: 1, reason: 'filler' });
    const token = forge('github-token', 'token.issued', {
      app: 'impostor-app',
      bot: 'impostor-app[bot]',
      installationId: 1,
      repositories: ['octo-org/octo-repo'],
      permissions: { contents: 'read' },
      expiresAt: '2030-01-01T00:00:00Z',
    });
    const script = `node -e 'for (let i = 0; i < 520; i++) { ${filler} }' && node -e '${token}'`;
    const run = await job.run('run', 'main', { inputs: { run: script, user: 'runner' } });
    expect(run.code).toBe(1);
    const report = await job.run('report', 'main', { inputs: { 'fail-on-tamper': 'false' } });
    expect(report.outputs.verdict).toBe('altered');
    expect(report.summary).not.toContain('impostor');
    const attribution = readFileSync(report.outputs['attribution-path'], 'utf8');
    expect(attribution).not.toContain('impostor');
    const post = await job.run('start', 'post', {
      state: start.state,
      inputs: { 'fail-on-tamper': 'false' },
    });
    expect(post.code).toBe(0);
    expect(post.summary).not.toContain('impostor');
  }, 90000);

  test("hostile: a token.refreshed shaped to break the renderer (chained, in the window) is not Cordon's: the record is altered and the rest rendered", async () => {
    const job = new Job();
    const start = await job.run('start', 'main');
    // Of a kind the broker writes while the agent runs, so not tampering by its kind alone.
    const script = `node -e '${forge('run', 'token.refreshed', { app: 'a', repositories: {}, permissions: 5 })}'`;
    const run = await job.run('run', 'main', { inputs: { run: script, user: 'runner' } });
    // run itself does not tell it apart from the broker's (T32).
    expect(run.code).toBe(0);
    const report = await job.run('report', 'main', { inputs: { 'fail-on-tamper': 'false' } });
    expect(report.outputs.verdict).toBe('altered');
    expect(report.summary).not.toContain('could not be rendered');
    expect(report.summary).toContain(
      "in the shape of the credential broker's events, but cannot be read as one",
    );
    expect(report.summary).toContain('Full ledger');
    const post = await job.run('start', 'post', { state: start.state });
    expect(post.code).toBe(1);
    expect(post.stdout).not.toContain('where report found it');
  }, 90000);
});
