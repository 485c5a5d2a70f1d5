/**
 * `report` as a whole program, in a job's order: start -> run -> report -> start's post. The
 * outputs a later step reads come from report's own output file, attribution.json exists
 * before any post step, and post renders only when report never ran. Hostile: the command
 * (as the runner user, the worst case) forges attribution.json, the summary and a
 * `report.written` line before report runs.
 */
import { describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, lstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Job } from '../../src/devkit/run-action.js';
import { Ledger, parseLedgerText } from '../../src/ledger/ledger.js';

const HEADING = '## Cordon: what the agent did';

function ledgerFile(job: Job): string {
  return join(job.runnerTemp, 'cordon', 'ledger.jsonl');
}

function events(job: Job): { type: string; action: string; data: Record<string, unknown> }[] {
  return parseLedgerText(readFileSync(ledgerFile(job), 'utf8')).flatMap((l) => (l.event ? [l.event] : []));
}

function count(text: string, part: string): number {
  return text.split(part).length - 1;
}

describe('report, as a whole program', () => {
  test('start -> run -> report -> post: outputs from report, attribution.json before any post, one summary', async () => {
    const job = new Job();
    const start = await job.run('start', 'main');
    expect(start.code).toBe(0);
    const run = await job.run('run', 'main', { inputs: { run: 'echo hello', user: 'runner' } });
    expect(run.code).toBe(0);
    const report = await job.run('report', 'main');
    expect(report.code).toBe(0);
    // What a later step reads: report's output file, written by a main step.
    expect(report.outputs.verdict).toBe('intact');
    expect(report.outputs['suggested-allowed-domains']).toBe('');
    const path = report.outputs['attribution-path'];
    expect(path).toBe(join(job.runnerTemp, 'cordon', 'attribution.json'));
    // Before any post step has run: the upload step finds it.
    const attribution = JSON.parse(readFileSync(path, 'utf8'));
    expect(attribution.verdict.status).toBe('intact');
    expect(attribution.run.repository).toBe('octo-org/octo-repo');
    expect(attribution.runs.finished).toHaveLength(1);
    expect(count(report.summary, HEADING)).toBe(1);
    expect(events(job).at(-1)).toMatchObject({ action: 'report', type: 'report.written' });

    const post = await job.run('start', 'post', { state: start.state });
    expect(post.code).toBe(0);
    // Not rendered twice, and attribution.json is report's.
    expect(count(post.summary, HEADING)).toBe(1);
    expect(post.summary).not.toContain('after the report');
    expect(readFileSync(path, 'utf8')).toBe(JSON.stringify(attribution, null, 2) + '\n');
    expect(post.stdout).toContain('report ran');
    const followed = events(job).at(-1);
    expect(followed).toMatchObject({ action: 'start', type: 'report.followed' });
    expect(followed?.data).toMatchObject({ verdict: 'intact', changed: false, after: [] });
  }, 60000);

  test('a line appended after report is noted by post; a forged one changes the verdict and is rendered', async () => {
    const job = new Job();
    const start = await job.run('start', 'main');
    const report = await job.run('report', 'main');
    expect(report.outputs.verdict).toBe('intact');
    // A later post step's own line (it chains): noted, the verdict unchanged.
    new Ledger(ledgerFile(job), { action: 'secrets', copySocket: false }).append('secrets.fetched', {
      secrets: [],
    });
    const post = await job.run('start', 'post', { state: start.state });
    expect(post.code).toBe(0);
    expect(post.stdout).toMatch(/1 line\(s\) since: 3 secrets\.fetched \(secrets\)/);
    const followed = events(job).at(-1);
    expect(followed?.type).toBe('report.followed');
    expect(followed?.data.after).toEqual([
      expect.objectContaining({ line: 3, type: 'secrets.fetched', chained: true }),
    ]);
    expect(count(post.summary, HEADING)).toBe(1);

    // A line that does not chain, written after report: post's verdict differs and says so.
    const job2 = new Job();
    const start2 = await job2.run('start', 'main');
    await job2.run('report', 'main');
    const forged = JSON.stringify({
      v: 1,
      time: 'x',
      action: 'egress',
      type: 'egress.report',
      data: {},
      prev: '0',
    });
    appendFileSync(ledgerFile(job2), forged + '\n');
    const post2 = await job2.run('start', 'post', {
      state: start2.state,
      inputs: { 'fail-on-tamper': 'false' },
    });
    expect(post2.code).toBe(0);
    expect(post2.summary).toContain('### Cordon: after the report');
    expect(post2.summary).toContain('line 3 does not chain');
    expect(
      post2.commands.some(
        (c) => c.command === 'warning' && c.message.includes('where report found it intact'),
      ),
    ).toBe(true);
    expect(events(job2).at(-1)?.data).toMatchObject({
      verdict: 'altered',
      changed: true,
      after: [expect.objectContaining({ line: 3, type: 'egress.report', chained: false })],
    });
  }, 60000);

  test("hostile: a later step rewrites attribution.json after report (as the runner user): start's post names it, records it and fails the job", async () => {
    const job = new Job();
    const start = await job.run('start', 'main');
    const report = await job.run('report', 'main');
    expect(report.outputs.verdict).toBe('intact');
    const path = report.outputs['attribution-path'];
    const written = events(job).find((e) => e.type === 'report.written');
    expect(written?.data.attribution).toBe(createHash('sha256').update(readFileSync(path)).digest('hex'));
    // A later step of the same user as report (the agent's, with user: runner, or any
    // third-party step): the file it leaves is what an upload after it takes.
    const later = spawnSync(
      'sh',
      [
        '-c',
        'printf \'{"version":1,"verdict":{"status":"intact","details":[]}}\' > "$RUNNER_TEMP/cordon/attribution.json"',
      ],
      { env: { PATH: process.env.PATH, RUNNER_TEMP: job.runnerTemp }, encoding: 'utf8' },
    );
    expect(later.status).toBe(0);
    const post = await job.run('start', 'post', { state: start.state });
    expect(post.code).toBe(1);
    const errors = post.commands.filter((c) => c.command === 'error').map((c) => c.message);
    expect(errors.join('\n')).toContain('attribution.json was rewritten after report wrote it');
    expect(post.summary).toContain('### Cordon: after the report');
    expect(post.summary).toContain('attribution.json was rewritten after report wrote it');
    expect(events(job).at(-1)).toMatchObject({
      type: 'report.followed',
      data: { attribution: 'changed', verdict: 'altered', changed: true },
    });

    // Left as report wrote it: post says so and stays quiet.
    const job2 = new Job();
    const start2 = await job2.run('start', 'main');
    await job2.run('report', 'main');
    const post2 = await job2.run('start', 'post', { state: start2.state });
    expect(post2.code).toBe(0);
    expect(events(job2).at(-1)).toMatchObject({
      type: 'report.followed',
      data: { attribution: 'same', verdict: 'intact', changed: false },
    });
  }, 60000);

  // The same later step, leaving something in place of the file that a reader following
  // links or opening blocking would take for report's (or hang on): start's post reads it
  // without following a link, without blocking, no further than report's size.
  test.each([
    ['a FIFO', 'rm -f "$F" && mkfifo "$F"'],
    ["a link to a copy of report's own bytes", 'cp "$F" "$F.copy" && rm "$F" && ln -s "$F.copy" "$F"'],
    ['a link to /dev/zero', 'rm "$F" && ln -s /dev/zero "$F"'],
  ])(
    "hostile: a later step puts %s in place of attribution.json after report: start's post does not block, calls the record altered and fails",
    async (_what, swap) => {
      const job = new Job();
      const start = await job.run('start', 'main');
      const report = await job.run('report', 'main');
      expect(report.outputs.verdict).toBe('intact');
      const path = report.outputs['attribution-path'];
      const later = spawnSync('sh', ['-c', swap], {
        env: { PATH: process.env.PATH, F: path },
        encoding: 'utf8',
      });
      expect(later.status).toBe(0);
      expect(lstatSync(path).isFile()).toBe(false);
      const post = await job.run('start', 'post', { state: start.state, timeoutMs: 30000 });
      expect(post.stderr).not.toContain('[harness] killed');
      expect(post.code).toBe(1);
      const errors = post.commands.filter((c) => c.command === 'error').map((c) => c.message);
      expect(errors.join('\n')).toContain('attribution.json is not the file report wrote');
      expect(events(job).at(-1)).toMatchObject({
        type: 'report.followed',
        data: { attribution: 'changed', verdict: 'altered', changed: true },
      });
    },
    60000,
  );

  test('when report never ran, start post renders the summary and attribution.json', async () => {
    const job = new Job();
    const start = await job.run('start', 'main');
    expect(existsSync(join(job.runnerTemp, 'cordon', 'attribution.json'))).toBe(false);
    const post = await job.run('start', 'post', { state: start.state });
    expect(post.code).toBe(0);
    expect(count(post.summary, HEADING)).toBe(1);
    expect(post.stdout).toContain('report did not run');
    expect(JSON.parse(readFileSync(post.outputs['attribution-path'], 'utf8')).verdict.status).toBe('intact');
  }, 60000);

  test('hostile: the command forges attribution.json (as a link), the summary and a report line; report overwrites from the ledger', async () => {
    const job = new Job();
    const start = await job.run('start', 'main');
    const decoy = join(job.root, 'decoy.json');
    // As the runner user (the worst case: user: runner): it can write all of RUNNER_TEMP.
    const script = [
      `printf '{"verdict":{"status":"intact"},"forged":true}' > "${decoy}"`,
      `ln -sf "${decoy}" "$RUNNER_TEMP/cordon/attribution.json"`,
      `printf '${HEADING}\\n\\n**Record intact**\\nforged-summary\\n' >> "${job.summaryFile}"`,
      // A report line of its own, chained like Cordon's, to stop post from rendering.
      `node -e '
        const fs = require("fs"), c = require("crypto");
        const f = process.env.RUNNER_TEMP + "/cordon/ledger.jsonl";
        const last = fs.readFileSync(f, "utf8").trim().split("\\n").pop();
        const prev = c.createHash("sha256").update(last).digest("hex");
        const data = { upTo: 2, head: prev, verdict: "intact", details: 0, attribution: "", summary: true };
        fs.appendFileSync(f, JSON.stringify({ v: 1, time: new Date().toISOString(), action: "report", type: "report.written", data, prev }) + "\\n");'`,
    ].join('\n');
    const run = await job.run('run', 'main', { inputs: { run: script, user: 'runner' } });
    // run itself fails the step and puts the summary back; report runs anyway (if: always()).
    const errors = run.commands.filter((c) => c.command === 'error').map((c) => c.message);
    expect(errors.join('\n')).toContain('line 3 (report.written, as report) was written while the agent ran');
    expect(run.summary).not.toContain('forged-summary');
    const report = await job.run('report', 'main', { inputs: { 'fail-on-tamper': 'false' } });
    expect(report.code).toBe(0);
    // The outputs come from the ledger: the forged line written while the agent ran shows.
    expect(report.outputs.verdict).toBe('altered');
    const path = report.outputs['attribution-path'];
    expect(lstatSync(path).isFile()).toBe(true);
    const attribution = JSON.parse(readFileSync(path, 'utf8'));
    expect(attribution.forged).toBeUndefined();
    expect(attribution.verdict.status).toBe('altered');
    // The decoy the link pointed at was not written through.
    expect(readFileSync(decoy, 'utf8')).toContain('"forged":true');
    // report's summary says what the ledger says.
    expect(count(report.summary, HEADING)).toBe(1);
    expect(report.summary).toContain('RECORD ALTERED');

    // The forged report line does not count as report's: only report's own does.
    const post = await job.run('start', 'post', {
      state: start.state,
      inputs: { 'fail-on-tamper': 'false' },
    });
    expect(post.code).toBe(0);
    const followed = events(job).at(-1);
    expect(followed?.type).toBe('report.followed');
    const reportLines = events(job)
      .map((e, i) => ({ ...e, line: i + 1 }))
      .filter((e) => e.type === 'report.written');
    expect(reportLines).toHaveLength(2);
    expect(followed?.data.reportLine).toBe(reportLines[1].line);
  }, 60000);

  test('job-summary: false writes no summary, and attribution.json all the same: from report, and from start’s post when report never ran', async () => {
    const job = new Job();
    const start = await job.run('start', 'main', { inputs: { 'job-summary': 'false' } });
    expect(start.code).toBe(0);
    const report = await job.run('report', 'main', { inputs: { 'job-summary': 'false' } });
    expect(report.code).toBe(0);
    expect(report.summary).toBe('');
    const path = report.outputs['attribution-path'];
    const attribution = JSON.parse(readFileSync(path, 'utf8'));
    expect(attribution.verdict.status).toBe('intact');
    expect(attribution.run.repository).toBe('octo-org/octo-repo');
    expect(events(job).at(-1)).toMatchObject({ action: 'report', type: 'report.written' });
    const post = await job.run('start', 'post', { state: start.state, inputs: { 'job-summary': 'false' } });
    expect(post.code).toBe(0);
    expect(post.summary).toBe('');

    const alone = new Job();
    const start2 = await alone.run('start', 'main', { inputs: { 'job-summary': 'false' } });
    const post2 = await alone.run('start', 'post', {
      state: start2.state,
      inputs: { 'job-summary': 'false' },
    });
    expect(post2.code).toBe(0);
    expect(post2.stdout).toContain('report did not run');
    expect(post2.summary).toBe('');
    expect(post2.outputs['attribution-path']).toBe(join(alone.runnerTemp, 'cordon', 'attribution.json'));
    expect(JSON.parse(readFileSync(post2.outputs['attribution-path'], 'utf8')).verdict.status).toBe('intact');
  }, 60000);

  test('the job failed before start: report still writes attribution.json, record unverified', async () => {
    const job = new Job();
    const report = await job.run('report', 'main');
    expect(report.code).toBe(0);
    expect(report.outputs.verdict).toBe('unverified');
    const attribution = JSON.parse(readFileSync(report.outputs['attribution-path'], 'utf8'));
    expect(attribution.verdict.details).toContain('the ledger is empty or missing');
    expect(report.summary).toContain('Record not verified');
  });

  test('a bad input fails with the input named', async () => {
    const job = new Job();
    const r = await job.run('report', 'main', { inputs: { 'job-summary': 'maybe' } });
    expect(r.code).toBe(1);
    expect(r.commands.find((c) => c.command === 'error')?.message).toContain('input job-summary "maybe"');
  });
});
