/**
 * Hostile, as whole programs: the command (as the runner user, `user: runner`, the worst
 * case) writes run's own kinds of line into its window, chained, to pass what it does next
 * as Cordon's: a `run.started` (a second command of Cordon's, its lines outside every
 * window) or an early `run.finished` (its window closed before what it writes after).
 */
import { describe, expect, test } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Job } from '../../src/devkit/run-action.js';
import { parseLedgerText } from '../../src/ledger/ledger.js';

/**
 * A `node -e` program appending, chained to the ledger's last line: a copy of the last
 * line of type `copy` with `data` merged in, then a token.issued of an impostor App.
 */
function forge(copy: string, data: object): string {
  return `
    const fs = require("fs"), c = require("crypto");
    const f = process.env.RUNNER_TEMP + "/cordon/ledger.jsonl";
    const hash = (s) => c.createHash("sha256").update(s).digest("hex");
    const append = (e) => {
      const last = fs.readFileSync(f, "utf8").trim().split("\\n").pop();
      fs.appendFileSync(f, JSON.stringify({ v: 1, time: new Date().toISOString(), ...e, prev: hash(last) }) + "\\n");
    };
    const lines = fs.readFileSync(f, "utf8").trim().split("\\n").map((l) => JSON.parse(l));
    const model = lines.filter((l) => l.type === "run.started").pop();
    append({ action: "run", type: "${copy}", data: { ...(model.type === "${copy}" ? model.data : {}), ...${JSON.stringify(data)} } });
    append({ action: "github-token", type: "token.issued", data: { app: "impostor-app", bot: "impostor-app[bot]", installationId: 1, repositories: ["octo-org/octo-repo"], permissions: { contents: "write" }, expiresAt: "2030-01-01T00:00:00Z" } });`;
}

function ledgerTypes(job: Job): string[] {
  const text = readFileSync(join(job.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8');
  return parseLedgerText(text).map((l) => String(l.event?.type));
}

describe("run's own kinds of line, forged in the command's window", () => {
  test("hostile: a well-formed run.started the command forges in its window opens no window and is not rendered as a command of Cordon's", async () => {
    const job = new Job();
    const start = await job.run('start', 'main');
    expect(start.code).toBe(0);
    const script = `node -e '${forge('run.started', { command: 'impostor-command' })}'`;
    const run = await job.run('run', 'main', { inputs: { run: script, user: 'runner' } });
    // run sees a run.started written while its command ran: tampering.
    expect(run.code).toBe(1);
    expect(ledgerTypes(job).filter((t) => t === 'run.started')).toHaveLength(2);

    const report = await job.run('report', 'main', {
      inputs: { 'fail-on-tamper': 'false', 'seal-key': start.outputs['seal-key'] },
    });
    expect(report.outputs.verdict).toBe('altered');
    for (const text of [report.summary, readFileSync(report.outputs['attribution-path'], 'utf8')]) {
      expect(text).not.toContain('impostor');
      // run sealed its one window: the forged start does not split it into two unsealed ones.
      expect(text).not.toContain('run never sealed it');
      expect(text).not.toContain('has no verification after it');
    }
    // One command, run's own.
    expect(report.summary.match(/\| still running or lost \|/g)).toBeNull();
    // The forged lines are listed apart, as written while the agent ran.
    expect(report.summary).toMatch(/line \d+ \(run\.started, as run\) was written while the agent ran/);

    const post = await job.run('start', 'post', {
      state: start.state,
      inputs: { 'fail-on-tamper': 'false' },
    });
    expect(post.code).toBe(0);
    // report's verdict stands at the end of the job.
    expect(post.stdout).not.toContain('where report found it');
  }, 90000);

  test("hostile: a run.finished the command forges early does not close its window: what it writes after is not rendered as Cordon's", async () => {
    const job = new Job();
    const start = await job.run('start', 'main');
    const script = `node -e '${forge('run.finished', { exitCode: 0, durationMs: 1, bytesScrubbed: 0, leaks: [] })}'; exit 5`;
    const run = await job.run('run', 'main', { inputs: { run: script, user: 'runner' } });
    expect(run.code).toBe(1);
    // Without report: start's post renders the summary and attribution.json itself.
    const post = await job.run('start', 'post', {
      state: start.state,
      inputs: { 'fail-on-tamper': 'false' },
    });
    expect(post.code).toBe(0);
    const attribution = readFileSync(post.outputs['attribution-path'], 'utf8');
    for (const text of [post.summary, attribution]) expect(text).not.toContain('impostor');
    expect(post.summary).toMatch(/line \d+ \(run\.finished, as run\) was written while the agent ran/);
    // The command's row carries run's exit code, not the forged one.
    expect(post.summary).toMatch(/\| 5 \| [\d.]+s \|/);
    expect(post.summary).not.toMatch(/\| 0 \| 0\.0s \|/);
  }, 90000);
});
