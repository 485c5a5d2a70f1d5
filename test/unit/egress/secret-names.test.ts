/** The daemon's side of names that carried one of run's secrets: what it takes and what it shows. */
import { describe, expect, test } from '@jest/globals';
import { parseMarks, SecretNames, shownAs } from '../../../src/rootd/secret-names.js';
import type { DaemonReport } from '../../../src/rootd/protocol.js';
import { daemonReport } from '../../harness/sample-events.js';

const report = (): DaemonReport =>
  daemonReport({
    names: [
      { name: 'zq8xwplmktrv.evil.test', queries: 2, allowed: false, addresses: [], identity: 'agent' },
      { name: 'innocent.evil.test', queries: 1, allowed: false, addresses: [] },
    ],
    rebinding: [{ name: 'zq8xwplmktrv.evil.test', answers: 1, addresses: [], identity: 'agent' }],
  });

describe('secret names in the daemon', () => {
  test('a marked name is shown as its length and the secret, in names and rebinding; others as asked', () => {
    const s = new SecretNames();
    expect(s.apply(report())).toEqual(report());
    s.add(parseMarks(JSON.stringify([{ name: 'zq8xwplmktrv.evil.test', secret: 'TOKEN' }])));
    const r = s.apply(report());
    expect(r.names[0]).toMatchObject({
      name: '[22 chars carrying TOKEN]',
      carriesSecret: 'TOKEN',
      queries: 2,
    });
    expect(r.names[1]).toEqual(report().names[1]);
    expect(r.rebinding?.[0]).toMatchObject({ name: shownAs('zq8xwplmktrv.evil.test', 'TOKEN') });
    expect(JSON.stringify(r)).not.toContain('zq8xwplmktrv');
  });

  test('hostile: a marked process text is shown as its length wherever a process is named; others as they are', () => {
    const proc = "Zq8xWpLmKtRv (pid 4242, under run's command)";
    const withProcesses = (): DaemonReport =>
      daemonReport({
        names: [{ name: 'innocent.evil.test', queries: 1, allowed: false, addresses: [], process: proc }],
        blocked: [
          { address: '203.0.113.50', protocol: 'udp', port: 9999, packets: 6, process: proc },
          { address: '203.0.113.51', protocol: 'udp', port: 53, packets: 1, process: 'curl (pid 7)' },
        ],
        refusals: {
          total: 1,
          peakPerSecond: 1,
          unanswered: 0,
          kernelDropped: 0,
          sources: [
            {
              proto: 'udp',
              address: '10.0.0.2',
              port: 5353,
              refused: 1,
              peakPerSecond: 1,
              process: proc,
              identity: 'agent',
            },
          ],
        },
      });
    const s = new SecretNames();
    s.add(parseMarks(JSON.stringify([{ name: proc, secret: 'TOKEN' }])));
    const r = s.apply(withProcesses());
    const shown = shownAs(proc, 'TOKEN');
    expect(r.names[0]).toMatchObject({ name: 'innocent.evil.test', process: shown });
    expect(r.names[0].carriesSecret).toBeUndefined();
    expect(r.blocked.map((b) => b.process)).toEqual([shown, 'curl (pid 7)']);
    expect(r.refusals?.sources[0].process).toBe(shown);
    expect(JSON.stringify(r)).not.toContain('Zq8xWpLmKtRv');
  });

  test('hostile: a request that is not a list of names and secret names is refused whole', () => {
    expect(() => parseMarks('nope')).toThrow('not JSON');
    expect(() => parseMarks('{}')).toThrow('not a list');
    expect(() => parseMarks(JSON.stringify([{ name: 'a.test', secret: 'x]\n[!CAUTION] fake' }]))).toThrow(
      'a secret name is not one',
    );
    expect(() => parseMarks(JSON.stringify([{ name: 'x'.repeat(256), secret: 'T' }]))).toThrow('too long');
    expect(() => parseMarks(JSON.stringify([{ secret: 'T' }]))).toThrow('missing');
    const many = Array.from({ length: 1001 }, (_, i) => ({ name: `n${i}.test`, secret: 'T' }));
    expect(() => parseMarks(JSON.stringify(many))).toThrow('more than 1000');
  });
});
