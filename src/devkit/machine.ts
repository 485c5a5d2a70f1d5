/**
 * What this machine needs for the tests and `cordon demo`, and installing it on Debian or
 * Ubuntu. The one list of Debian packages: the test set-up (scripts/setup-test-machine.ts,
 * run by `npm test`) and the demo's fence both read it from here.
 */
import { spawnSync } from 'node:child_process';
import { CordonError } from '../platform/errors.js';

/** A command found on PATH, and the Debian package that provides it. */
export interface Need {
  command: string;
  pkg: string;
  /** What needs it, for the message. */
  why: string;
}

export const TEST_NEEDS: readonly Need[] = [
  { command: 'nft', pkg: 'nftables', why: 'the egress fence' },
  { command: 'ip', pkg: 'iproute2', why: 'the network namespaces' },
  { command: 'dig', pkg: 'dnsutils', why: 'the DNS tests' },
  { command: 'dnsmasq', pkg: 'dnsmasq', why: 'the DNS proxy comparison' },
  { command: 'git', pkg: 'git', why: 'commit attribution' },
  { command: 'sudo', pkg: 'sudo', why: 'the sudo lockdown tests' },
  { command: 'iperf3', pkg: 'iperf3', why: 'the throughput tests' },
  { command: 'curl', pkg: 'curl', why: 'the agent-side HTTP tests' },
  { command: 'jq', pkg: 'jq', why: 'the encoder corpus (jq @uri, @sh, @base64, @json)' },
  { command: 'chromium', pkg: 'chromium', why: 'the summary page rendered in a headless browser' },
  { command: 'crontab', pkg: 'cron', why: "the agent's user denied cron jobs" },
  { command: 'at', pkg: 'at', why: "the agent's user denied at jobs" },
  { command: 'strace', pkg: 'strace', why: 'no secret on any command line run starts (every execve traced)' },
];

/** What the egress benchmark runs besides the tests' tools: dnsperf for throughput. */
export const BENCH_NEEDS: readonly Need[] = [
  ...TEST_NEEDS.filter((n) => ['nft', 'ip', 'dig', 'dnsmasq', 'iperf3'].includes(n.command)),
  { command: 'dnsperf', pkg: 'dnsperf', why: 'the DNS throughput comparison' },
];

/** What the demo's fence runs: nftables in a pair of network namespaces. */
export const DEMO_NEEDS: readonly Need[] = TEST_NEEDS.filter((n) => ['nft', 'ip'].includes(n.command));

/** What the machine offers, as the decision sees it (passed in so a test can vary it). */
export interface Probe {
  has(command: string): boolean;
  root: boolean;
}

export type InstallPlan =
  | { kind: 'ready' }
  | { kind: 'install'; packages: string[] }
  /** Missing and not installable here: the message says what to install. */
  | { kind: 'cannot'; packages: string[]; why: string };

/** Which packages are missing, and whether this process can install them. */
export function planInstall(needs: readonly Need[], probe: Probe): InstallPlan {
  const packages = [...new Set(needs.filter((n) => !probe.has(n.command)).map((n) => n.pkg))];
  if (!packages.length) return { kind: 'ready' };
  if (!probe.root) return { kind: 'cannot', packages, why: 'not running as root' };
  if (!probe.has('apt-get'))
    return { kind: 'cannot', packages, why: 'apt-get is not here (not Debian or Ubuntu)' };
  return { kind: 'install', packages };
}

/** The machine as it is: `command -v` for each command, PATH plus the sbin directories. */
export function machineProbe(): Probe {
  const path = `${process.env.PATH ?? ''}:/usr/local/sbin:/usr/sbin:/sbin`;
  return {
    has: (command) =>
      spawnSync('sh', ['-c', 'command -v "$1"', 'sh', command], {
        stdio: 'ignore',
        env: { ...process.env, PATH: path },
        timeout: 5000,
      }).status === 0,
    root: process.getuid?.() === 0,
  };
}

/** The error for a `cannot` plan: which packages, why not here, the command to run. */
export function cannotInstallError(what: string, plan: { packages: string[]; why: string }): CordonError {
  return new CordonError({
    what: `${what} needs ${plan.packages.join(', ')}, which this machine does not have`,
    why: `they cannot be installed from here: ${plan.why}`,
    fix: `install them as root (sudo apt-get install -y ${plan.packages.join(' ')}), or run this as root on Debian or Ubuntu`,
  });
}

/** Installs Debian packages with apt-get, refreshing the package lists first; bounded in time. */
export function aptInstall(packages: string[], log: (line: string) => void): void {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const steps = [
    ['apt-get', 'update', '-qq'],
    ['apt-get', 'install', '-y', '-qq', '--no-install-recommends', ...packages],
  ];
  for (const argv of steps) {
    log(`    $ ${argv.join(' ')}`);
    const r = spawnSync(argv[0], argv.slice(1), { env, encoding: 'utf8', timeout: 600000 });
    if (r.status !== 0)
      throw new CordonError({
        what: `${argv.slice(0, 2).join(' ')} failed (${r.error?.message ?? `exit ${r.status}`})`,
        why: (r.stderr ?? '').trim().split('\n').slice(-3).join(' ') || 'apt-get printed nothing',
        fix: `install ${packages.join(' ')} yourself, then run this again`,
      });
  }
}

/** Installs what `needs` lists and the machine lacks (root, apt-get), or throws what to do. */
export function provide(needs: readonly Need[], what: string, log: (line: string) => void): void {
  const plan = planInstall(needs, machineProbe());
  if (plan.kind === 'cannot') throw cannotInstallError(what, plan);
  if (plan.kind === 'install') {
    log(`installing ${plan.packages.join(', ')} (Debian packages ${what} needs)`);
    aptInstall(plan.packages, log);
  }
}
