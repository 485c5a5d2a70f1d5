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
});
