import { describe, expect, test } from '@jest/globals';
import { join } from 'node:path';
import { Ledger } from '../../../src/ledger/ledger.js';
import { SecretRegistry } from '../../../src/platform/mask.js';
import { renderSummaryMarkdown } from '../../../src/summary/render.js';
import { verdictFor } from '../../../src/ledger/verify.js';
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
});
