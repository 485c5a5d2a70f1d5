import { describe, expect, test } from '@jest/globals';
import { DEMO_NEEDS, planInstall, TEST_NEEDS, type Probe } from '../../../src/devkit/machine.js';

/** A machine that has exactly these commands on PATH. */
const machine = (commands: string[], root: boolean): Probe => ({
  has: (c) => commands.includes(c),
  root,
});

const ALL = TEST_NEEDS.map((n) => n.command);

describe('what the test set-up and the demo install (src/devkit/machine.ts)', () => {
  test('a fresh Debian machine as root (Node, git, apt-get): every other test package is installed', () => {
    expect(planInstall(TEST_NEEDS, machine(['git', 'apt-get'], true))).toEqual({
      kind: 'install',
      packages: [
        'nftables',
        'iproute2',
        'dnsutils',
        'dnsmasq',
        'sudo',
        'iperf3',
        'curl',
        'jq',
        'chromium',
        'cron',
        'at',
        'strace',
      ],
    });
  });

  test('only what `command -v` does not find is installed; with everything there, nothing', () => {
    const some = ALL.filter((c) => c !== 'dig' && c !== 'iperf3');
    expect(planInstall(TEST_NEEDS, machine([...some, 'apt-get'], true))).toEqual({
      kind: 'install',
      packages: ['dnsutils', 'iperf3'],
    });
    expect(planInstall(TEST_NEEDS, machine(ALL, false))).toEqual({ kind: 'ready' });
  });

  test('not root, or no apt-get: nothing is installed, and the plan names what to install and why', () => {
    expect(planInstall(TEST_NEEDS, machine([...ALL.filter((c) => c !== 'nft'), 'apt-get'], false))).toEqual({
      kind: 'cannot',
      packages: ['nftables'],
      why: 'not running as root',
    });
    expect(planInstall(DEMO_NEEDS, machine([], true))).toEqual({
      kind: 'cannot',
      packages: ['nftables', 'iproute2'],
      why: 'apt-get is not here (not Debian or Ubuntu)',
    });
  });

  test("the demo's fence needs nftables and iproute2 only", () => {
    expect(planInstall(DEMO_NEEDS, machine(['apt-get', 'git'], true))).toEqual({
      kind: 'install',
      packages: ['nftables', 'iproute2'],
    });
  });
});
