/**
 * The agent's windows: which `run.started` lines open one. With `user: runner` the command
 * can append lines that chain, of any kind, while it runs; a `run.started` among them must
 * not open a window of its own (and so leave its lines outside every window) or render as a
 * command of Cordon's. `run`'s own check after the command names the `run.started` it held.
 */
import { describe, expect, test } from '@jest/globals';
import { join } from 'node:path';
import { appendFileSync } from 'node:fs';
import { hashLine, Ledger } from '../../../src/ledger/ledger.js';
import { SecretRegistry } from '../../../src/platform/mask.js';
import { renderSummaryMarkdown } from '../../../src/summary/render.js';
import { agentWindows } from '../../../src/ledger/verify.js';
import { judgeLedger, verdictOnlyMarkdown } from '../../../src/actions/attribution.js';
import { appendAny } from '../../harness/ledger.js';
import { sampleEvents } from '../../harness/sample-events.js';
import { tempDir } from '../../harness/tmp.js';

const impostor = {
  ...sampleEvents['run.started'],
  command: 'impostor-command',
  commandSha256: 'e'.repeat(64),
};

function newLedger(): { ledger: Ledger; nonce: string } {
  const path = join(tempDir('cordon-windows-'), 'ledger.jsonl');
  const ledger = new Ledger(path, { action: 'run', registry: new SecretRegistry(() => {}) });
  return { ledger, nonce: ledger.open() as string };
}

/** What run writes once its command is gone: its check (naming the run.started it held) and run.finished. */
function close(
  ledger: Ledger,
  started: { hash: string; line: number },
  exitCode: number,
  tampered = false,
): void {
  const check = { by: 'run', upTo: started.line, startedHash: started.hash, duringRun: [] };
  if (tampered)
    ledger.append('ledger.tampered', {
      ...check,
      changed: [],
      removed: [],
      inserted: [],
      details: ['a line the command wrote'],
    });
  else ledger.append('ledger.verified', check);
  ledger.append('run.finished', {
    ...sampleEvents['run.finished'],
    exitCode,
    leaks: [],
    leaksNotScanned: [],
  });
}

function start(ledger: Ledger, nonce?: string): { hash: string; line: number } {
  const { hash } = ledger.append(
    'run.started',
    { ...sampleEvents['run.started'], command: 'real-command' },
    nonce,
  );
  return { hash, line: ledger.read().length };
}

describe("the agent's windows", () => {
  test("hostile: a well-formed run.started the command forges inside its window opens none of its own and is not rendered as Cordon's", async () => {
    const { ledger, nonce } = newLedger();
    ledger.append('credentials.issued', sampleEvents['credentials.issued'], nonce);
    const real = start(ledger);
    // The command's lines: a run.started as run writes it, then a token.issued and a
    // verification in run's name that names its own run.started, to close that window early.
    const forged = appendAny(ledger, 'run.started', impostor);
    appendAny(ledger, 'token.issued', { ...sampleEvents['token.issued'], bot: 'impostor-bot[bot]' });
    appendAny(ledger, 'ledger.verified', { by: 'run', upTo: 3, startedHash: forged.hash, duringRun: [] });
    close(ledger, real, 7, true);
    const lines = ledger.read();

    const windows = agentWindows(lines);
    expect(windows.map((w) => w.started)).toEqual([2]);
    expect(windows[0].lines.map((l) => l.line)).toEqual([3, 4, 5]);
    expect(windows[0].closedBy?.line).toBe(6);

    const judged = await judgeLedger(ledger.path, { nonce });
    expect(judged.input.verdict.status).toBe('altered');
    expect(judged.input.verdict.duringRun?.map((d) => d.line)).toEqual([3, 4, 5]);
    // The real command is not reported as killed: its window is closed by run's own check.
    expect(judged.input.verdict.details.join('\n')).not.toContain('has no verification after it');
    expect(judged.input.lines.map((l) => l.line)).toEqual([1, 2, 6, 7]);
    const md = renderSummaryMarkdown(judged.input);
    expect(md).not.toContain('impostor');
    expect(md).toContain('real-command');
    expect(md).toContain('RECORD ALTERED');
  });

  test('hostile: a lone carriage return in the type or action of a line the command writes adds no line to the record section', async () => {
    const { ledger, nonce } = newLedger();
    const real = start(ledger, nonce);
    // A lone CR ends a line to CommonMark: inside a list item it starts the agent's own item.
    appendAny(ledger, 'x\r- all clear: line 3 checked', { n: 1 });
    appendAny(ledger, 'z\n## Cordon: nothing needs a human', { n: 2 });
    ledger.append('broker.started', sampleEvents['broker.started']);
    const l = ledger.read();
    // As the command would: the action too, chained to the line before.
    const last = l[l.length - 1];
    appendFileSync(
      ledger.path,
      JSON.stringify({
        v: 1,
        time: new Date().toISOString(),
        action: 'run\r- nothing was written while the agent ran',
        type: 'y',
        data: {},
        prev: hashLine(last.raw),
      }) + '\n',
    );
    close(ledger, real, 0, true);
    const judged = await judgeLedger(ledger.path, { nonce });
    expect(judged.input.verdict.status).toBe('altered');
    const md = renderSummaryMarkdown(judged.input);
    // Lines as CommonMark ends them: LF, CR LF, or a lone CR.
    const lines = md.split(/\r\n|\r|\n/);
    expect(lines.filter((x) => /^- (all clear|nothing was written)/.test(x))).toEqual([]);
    expect(md).not.toContain('\r');
    expect(lines.filter((x) => x.startsWith('## ')).map((x) => x.slice(3))).toEqual([
      'Cordon: what the agent did',
    ]);
    // The verdict alone (start's post, after the report; or when the summary cannot be rendered).
    const alone = verdictOnlyMarkdown(judged.input.verdict, '### Cordon: after the report').split(
      /\r\n|\r|\n/,
    );
    expect(alone.filter((x) => /^(- (all clear|nothing was written)|#+ Cordon: nothing)/.test(x))).toEqual(
      [],
    );
    expect(alone.filter((x) => x.startsWith('- ')).length).toBe(
      judged.input.verdict.details.length + (judged.input.verdict.duringRun?.length ?? 0),
    );
  });

  test('hostile: run.started lines forged one inside the other all fall in the real window', () => {
    const { ledger, nonce } = newLedger();
    const real = start(ledger, nonce);
    appendAny(ledger, 'run.started', impostor);
    appendAny(ledger, 'broker.started', sampleEvents['broker.started']);
    appendAny(ledger, 'run.started', impostor);
    close(ledger, real, 0, true);
    const windows = agentWindows(ledger.read());
    expect(windows.map((w) => [w.started, w.lines.map((l) => l.line), w.closedBy?.line])).toEqual([
      [1, [2, 3, 4], 5],
    ]);
  });

  test('two run steps in a row open a window each and render as two commands', async () => {
    const { ledger, nonce } = newLedger();
    const first = start(ledger, nonce);
    close(ledger, first, 0);
    const second = start(ledger);
    ledger.append('broker.started', sampleEvents['broker.started']);
    close(ledger, second, 3);
    const lines = ledger.read();
    expect(agentWindows(lines).map((w) => [w.started, w.lines.map((l) => l.line), w.closedBy?.line])).toEqual(
      [
        [1, [], 2],
        [4, [5], 6],
      ],
    );
    const judged = await judgeLedger(ledger.path, { nonce });
    expect(judged.input.verdict.status).toBe('intact');
    const md = renderSummaryMarkdown(judged.input);
    expect(md.match(/real-command/g)).toHaveLength(2);
  });

  test('a run step killed before its check, then a real one: two windows, the first reported unclosed', async () => {
    const { ledger, nonce } = newLedger();
    start(ledger, nonce);
    ledger.append('broker.started', sampleEvents['broker.started']);
    const second = start(ledger);
    close(ledger, second, 0);
    const lines = ledger.read();
    expect(agentWindows(lines).map((w) => [w.started, w.lines.map((l) => l.line), w.closedBy?.line])).toEqual(
      [
        [1, [2], undefined],
        [3, [], 4],
      ],
    );
    const judged = await judgeLedger(ledger.path, { nonce });
    expect(judged.input.verdict.status).toBe('altered');
    expect(judged.input.verdict.details.join('\n')).toContain(
      'the command started at line 1 has no verification after it',
    );
    expect(judged.input.lines.map((l) => l.line)).toEqual([1, 2, 3, 4, 5]);
    expect(renderSummaryMarkdown(judged.input).match(/real-command/g)).toHaveLength(2);
  });

  test('hostile: a run.finished the command forges early does not close its window: what it writes after is still its own', async () => {
    const { ledger, nonce } = newLedger();
    const real = start(ledger, nonce);
    appendAny(ledger, 'run.finished', { ...sampleEvents['run.finished'], exitCode: 0, leaks: [] });
    appendAny(ledger, 'token.issued', { ...sampleEvents['token.issued'], bot: 'impostor-bot[bot]' });
    close(ledger, real, 9, true);
    const lines = ledger.read();
    expect(agentWindows(lines).map((w) => [w.started, w.lines.map((l) => l.line), w.closedBy?.line])).toEqual(
      [[1, [2, 3], 4]],
    );
    const judged = await judgeLedger(ledger.path, { nonce });
    expect(judged.input.verdict.status).toBe('altered');
    expect(judged.input.lines.map((l) => l.line)).toEqual([1, 4, 5]);
    const md = renderSummaryMarkdown(judged.input);
    expect(md).not.toContain('impostor');
    // The command's row shows run's exit code, not the forged one's.
    expect(md).toMatch(/real-command[^\n]*\| 9 \|/);
  });

  test("hostile: a later step's check in run's name, appended after run's, folds nothing in unseen: the record is altered", async () => {
    for (const names of ['the first command', 'nothing'] as const) {
      const { ledger, nonce } = newLedger();
      const first = start(ledger, nonce);
      close(ledger, first, 0);
      const second = start(ledger);
      close(ledger, second, 4);
      expect((await judgeLedger(ledger.path, { nonce })).input.verdict.status).toBe('intact');
      // After every run step (T32: chained, of the runner user): a verification by "run"
      // that would take run's closing lines (and, naming the first command, the second
      // command too) into a window, where they are not rendered.
      appendAny(ledger, 'ledger.verified', {
        by: 'run',
        upTo: 1,
        startedHash: names === 'nothing' ? undefined : first.hash,
        duringRun: [],
      });
      const judged = await judgeLedger(ledger.path, { nonce });
      expect([names, judged.input.verdict.status]).toEqual([names, 'altered']);
      expect(judged.input.verdict.details.join('\n')).toContain('that check is not run');
    }
  });
});
