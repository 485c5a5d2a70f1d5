/**
 * `npm test`'s first half (the `pretest` script): makes a fresh Debian or Ubuntu machine
 * able to run the tests, or says what it lacks and stops. It installs the missing Debian
 * packages (as root, with apt-get; the list is TEST_NEEDS in src/devkit/machine.ts), checks
 * the moto server and boto3, and fetches what scripts/fetch-*.sh fetch (Node 24, the
 * systemd-resolved binary). A second run finds everything and does nothing.
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  aptInstall,
  cannotInstallError,
  machineProbe,
  planInstall,
  TEST_NEEDS,
} from '../src/devkit/machine.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const log = (line: string): void => console.log(`setup: ${line}`);

function fail(message: string): never {
  console.error(`setup: ${message}`);
  process.exit(1);
}

const probe = machineProbe();
const plan = planInstall(TEST_NEEDS, probe);
if (plan.kind === 'cannot') fail(cannotInstallError('the tests', plan).message);
if (plan.kind === 'install') {
  log(`installing ${plan.packages.join(', ')} (Debian packages the tests need)`);
  try {
    aptInstall(plan.packages, log);
  } catch (e) {
    fail((e as Error).message);
  }
}

if (!probe.has('moto_server'))
  fail(
    "moto_server is not on PATH. These machines come with moto 5.2.1 under Python 3.11; install it (pip install 'moto[server]==5.2.1' boto3) where a Python index is reachable.",
  );
if (spawnSync('python3', ['-c', 'import boto3'], { stdio: 'ignore', timeout: 30000 }).status !== 0)
  fail('python3 cannot import boto3 (the credential tests call AWS with it): pip install boto3');

// A real systemd-resolved for test/e2e/resolved-live.test.ts: unpacked, never installed
// (its package would take over this machine's /etc/resolv.conf). The Node 24 that GitHub's
// runners run the actions with: the demo test runs the whole job under it too.
for (const script of ['fetch-resolved.sh', 'fetch-node24.sh']) {
  const r = spawnSync(join(ROOT, 'scripts', script), { cwd: ROOT, encoding: 'utf8', timeout: 600000 });
  if (r.status !== 0)
    fail(`scripts/${script} failed: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim()}`);
}
log('this machine has what the tests need');
