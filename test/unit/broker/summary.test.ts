import { describe, expect, test } from '@jest/globals';
import { join } from 'node:path';
import { Ledger } from '../../../src/ledger/ledger.js';
import { SecretRegistry } from '../../../src/platform/mask.js';
import { renderSummaryMarkdown } from '../../../src/summary/render.js';
import { verdictFor } from '../../../src/ledger/verify.js';
import { judgeLedger } from '../../../src/actions/attribution.js';
import { appendAny } from '../../harness/ledger.js';
import { sampleEvents } from '../../harness/sample-events.js';
import { tempDir } from '../../harness/tmp.js';

describe('summary of broker events', () => {
  test('broker issuances, the requester and the stop counts are rendered, not left as other events', () => {
    const ledger = new Ledger(join(tempDir('cordon-broker-sum-'), 'ledger.jsonl'), {
      action: 'run',
      registry: new SecretRegistry(() => {}),
    });
    const nonce = ledger.open();
    for (const type of [
      'broker.started',
      'credentials.refreshed',
      'token.refreshed',
      'broker.stopped',
    ] as const)
      ledger.append(type, sampleEvents[type], nonce);
    const lines = ledger.read();
    const md = renderSummaryMarkdown({ lines, verdict: verdictFor(lines) });
    expect(md).toContain('AWS role session (broker)');
    expect(md).toContain('Broker issued');
    expect(md).toContain('python3 (pid 4321)');
    expect(md).toContain('Credential broker stopped (stop): 12 request(s), 1 refused (401)');
    expect(md).not.toContain('### Other events');
  });

  test("a requester known only by its socket's uid is shown by it; one with a process by both", () => {
    const ledger = new Ledger(join(tempDir('cordon-broker-uid-'), 'ledger.jsonl'), {
      action: 'run',
      registry: new SecretRegistry(() => {}),
    });
    const nonce = ledger.open();
    ledger.append(
      'credentials.refreshed',
      { ...sampleEvents['credentials.refreshed'], requester: { uid: 1001 } },
      nonce,
    );
    ledger.append(
      'token.refreshed',
      { ...sampleEvents['token.refreshed'], requester: { pid: 77, comm: 'git', uid: 1000 } },
      nonce,
    );
    const lines = ledger.read();
    const md = renderSummaryMarkdown({ lines, verdict: verdictFor(lines) });
    expect(md).toContain('| uid 1001 |');
    expect(md).toContain('git (pid 77, uid 1000)');
    expect(md).not.toContain('pid undefined');
  });

  test("written while the agent ran, the broker's own lines are shown, not tampering; one that cannot be rendered is", async () => {
    const path = join(tempDir('cordon-broker-judge-'), 'ledger.jsonl');
    const ledger = new Ledger(path, { action: 'run', registry: new SecretRegistry(() => {}) });
    const nonce = ledger.open();
    ledger.append('run.started', sampleEvents['run.started'], nonce);
    for (const type of [
      'broker.started',
      'credentials.refreshed',
      'token.refreshed',
      'broker.stopped',
    ] as const)
      ledger.append(type, sampleEvents[type], nonce);
    ledger.append('ledger.verified', sampleEvents['ledger.verified'], nonce);
    const good = await judgeLedger(path, { nonce });
    expect(good.input.verdict.status).toBe('intact');
    expect(good.input.lines).toHaveLength(6);

    // The same, with a token.refreshed of the command's own whose repositories are no list.
    const path2 = join(tempDir('cordon-broker-judge-'), 'ledger.jsonl');
    const forged = new Ledger(path2, { action: 'run', registry: new SecretRegistry(() => {}) });
    const nonce2 = forged.open();
    forged.append('run.started', sampleEvents['run.started'], nonce2);
    forged.append('broker.started', sampleEvents['broker.started'], nonce2);
    appendAny(forged, 'token.refreshed', { ...sampleEvents['token.refreshed'], repositories: {} }, nonce2);
    forged.append('ledger.verified', sampleEvents['ledger.verified'], nonce2);
    const bad = await judgeLedger(path2, { nonce: nonce2 });
    expect(bad.input.verdict.status).toBe('altered');
    expect(bad.input.verdict.details.join('\n')).toContain('line 3 was written while the agent ran');
    expect(bad.input.lines.map((l) => l.line)).toEqual([1, 2, 4]);
  });
  test("hostile: a broker line that renders alone but breaks the summary beside start's lines is left out, the rest rendered", async () => {
    const path = join(tempDir('cordon-broker-judge-'), 'ledger.jsonl');
    const ledger = new Ledger(path, { action: 'run', registry: new SecretRegistry(() => {}) });
    const nonce = ledger.open();
    ledger.append('credentials.issued', sampleEvents['credentials.issued'], nonce);
    ledger.append('run.started', sampleEvents['run.started'], nonce);
    ledger.append('broker.started', sampleEvents['broker.started'], nonce);
    appendAny(
      ledger,
      'credentials.refreshed',
      { ...sampleEvents['credentials.refreshed'], assumedRoleArn: null },
      nonce,
    );
    ledger.append('ledger.verified', sampleEvents['ledger.verified'], nonce);
    const judged = await judgeLedger(path, { nonce });
    expect(judged.input.verdict.status).toBe('altered');
    expect(judged.input.verdict.details.join('\n')).toContain('line 4, written while the agent ran');
    expect(judged.input.lines.map((l) => l.line)).toEqual([1, 2, 3, 5]);
    // The whole summary renders (not the verdict alone), with start's credentials in it.
    const md = renderSummaryMarkdown(judged.input);
    expect(md).toContain('RECORD ALTERED');
    expect(md).toContain(sampleEvents['credentials.issued'].assumedRoleArn);
  });

  test('hostile: a run.started the command forges inside its window, shaped to break the summary, is left out', async () => {
    const path = join(tempDir('cordon-broker-judge-'), 'ledger.jsonl');
    const ledger = new Ledger(path, { action: 'run', registry: new SecretRegistry(() => {}) });
    const nonce = ledger.open();
    ledger.append('credentials.issued', sampleEvents['credentials.issued'], nonce);
    ledger.append('run.started', sampleEvents['run.started'], nonce);
    appendAny(ledger, 'run.started', { ...sampleEvents['run.started'], secrets: null }, nonce);
    ledger.append('ledger.verified', sampleEvents['ledger.verified'], nonce);
    const judged = await judgeLedger(path, { nonce });
    expect(judged.input.verdict.status).toBe('altered');
    expect(judged.input.verdict.details.join('\n')).toContain('line 3, written while the agent ran');
    expect(judged.input.lines.map((l) => l.line)).not.toContain(3);
    expect(() => renderSummaryMarkdown(judged.input)).not.toThrow();
  });

  test("hostile: a chained line outside every window that breaks the summary is not Cordon's; the command's run.started stays", async () => {
    const path = join(tempDir('cordon-broker-judge-'), 'ledger.jsonl');
    const ledger = new Ledger(path, { action: 'run', registry: new SecretRegistry(() => {}) });
    const nonce = ledger.open();
    ledger.append('run.started', sampleEvents['run.started'], nonce);
    ledger.append('broker.started', sampleEvents['broker.started'], nonce);
    ledger.append('ledger.verified', sampleEvents['ledger.verified'], nonce);
    // A later step of the same user (T32): trusted for rendering, and it breaks the renderer.
    appendAny(ledger, 'commits.observed', { ...sampleEvents['commits.observed'], commits: {} }, nonce);
    const judged = await judgeLedger(path, { nonce });
    // Before: the verdict stayed "intact" and the summary was the verdict alone, every alert gone.
    expect(judged.input.verdict.status).toBe('altered');
    expect(judged.input.verdict.details.join('\n')).toContain(
      "line 4, outside the agent's windows, cannot be read as the event it names: not Cordon's",
    );
    expect(judged.input.verdict.details.join('\n')).not.toContain('line 1');
    expect(judged.input.lines.map((l) => l.line)).toEqual([1, 2, 3]);
    expect(renderSummaryMarkdown(judged.input)).toContain('RECORD ALTERED');
  });

  test("hostile: an empty token.issued appended by a later step leaves start's lines rendered and the record altered", async () => {
    const path = join(tempDir('cordon-broker-judge-'), 'ledger.jsonl');
    const ledger = new Ledger(path, { action: 'run', registry: new SecretRegistry(() => {}) });
    const nonce = ledger.open();
    ledger.append('credentials.issued', sampleEvents['credentials.issued'], nonce);
    appendAny(ledger, 'token.issued', {}, nonce);
    const judged = await judgeLedger(path, { nonce });
    expect(judged.input.verdict.status).toBe('altered');
    expect(judged.input.lines.map((l) => l.line)).toEqual([1]);
    const md = renderSummaryMarkdown(judged.input);
    expect(md).not.toContain('could not be rendered');
    expect(md).toContain(sampleEvents['credentials.issued'].assumedRoleArn);
  });
});
