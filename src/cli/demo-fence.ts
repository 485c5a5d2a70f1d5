/**
 * The network the demo's fence is shown on: as root, a "runner" namespace (where the whole
 * demo job runs, its loopback servers included) joined by a veth pair to an "internet"
 * namespace holding a DNS server and web servers. Everything is removed afterwards, the
 * fence's daemon stopped by the pid it recorded.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { aptInstall, cannotInstallError, DEMO_NEEDS, machineProbe, planInstall } from '../devkit/machine.js';
import { canUseNetns, Netns, stop, veth } from '../devkit/netns.js';
import { REPO_ROOT } from '../devkit/run-action.js';
import { fenceId, removeState, stateDir } from '../rootd/protocol.js';

export const DEMO_DNS = '203.0.113.53';
export const DEMO_WEB = '203.0.113.10';
export const DEMO_EVIL = '203.0.113.50';
export const ALLOWED_HOST = 'api.demo.test';
export const FORBIDDEN_HOST = 'exfil.evil.test';

/**
 * Why the fence cannot be shown here, or undefined when it can. As root on Debian or
 * Ubuntu it first installs what the fence runs (nftables, iproute2), saying so; as root
 * without apt-get it throws, naming the packages to install.
 */
export function fenceUnavailable(log: (line: string) => void): string | undefined {
  const probe = machineProbe();
  const plan = planInstall(DEMO_NEEDS, probe);
  if (!probe.root)
    return plan.kind === 'ready'
      ? 'not running as root'
      : `not running as root; as root it also needs ${plan.packages.join(', ')} (sudo apt-get install -y ${plan.packages.join(' ')})`;
  if (plan.kind === 'cannot') throw cannotInstallError("the demo's egress fence", plan);
  if (plan.kind === 'install') {
    log(`[0] installing ${plan.packages.join(', ')} for the egress fence (apt-get, as root)`);
    aptInstall(plan.packages, log);
  }
  if (!canUseNetns()) return 'cannot create network namespaces (ip netns)';
  return undefined;
}

/** Runs `cordon demo --inside` within a fenced-off namespace pair; returns its exit code. */
export async function runInsideNamespaces(out: string, log: (l: string) => void): Promise<number> {
  const tag = String(process.pid % 100000);
  const made: Netns[] = [];
  let servers: ReturnType<Netns['spawn']> | undefined;
  try {
    const runner = Netns.create(`cdr${tag}`, { resolvConf: `nameserver ${DEMO_DNS}\n` });
    made.push(runner);
    const internet = Netns.create(`cdi${tag}`);
    made.push(internet);
    veth(
      { ns: runner, dev: 'eth0', addresses: ['198.51.100.2/24', '2001:db8:1::2/64'] },
      { ns: internet, dev: 'up0', addresses: ['198.51.100.1/24', '2001:db8:1::1/64'] },
    );
    runner.route(['default', 'via', '198.51.100.1']);
    for (const a of [DEMO_DNS, DEMO_WEB, DEMO_EVIL]) internet.addAddress('lo', `${a}/32`);
    const zone = {
      [ALLOWED_HOST]: [{ type: 'A', value: DEMO_WEB, ttl: 300 }],
      [FORBIDDEN_HOST]: [{ type: 'A', value: DEMO_EVIL, ttl: 300 }],
    };
    servers = internet.spawn([
      process.execPath,
      join(REPO_ROOT, 'test/e2e/egress-internet.mjs'),
      JSON.stringify({ dns: [DEMO_DNS], zone, http: [DEMO_WEB, DEMO_EVIL] }),
    ]);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the demo internet did not start within 10 s')), 10000);
      servers?.stdout?.on('data', (d: Buffer) => {
        if (d.toString().includes('"ready"')) {
          clearTimeout(timer);
          resolve();
        }
      });
      servers?.on('exit', (code) => reject(new Error(`the demo internet exited with ${code}`)));
    });
    log(
      `    runner namespace ${runner.name} -> internet namespace ${internet.name} (DNS ${DEMO_DNS}, web ${DEMO_WEB}, ${DEMO_EVIL})`,
    );
    const child = spawn(
      '/usr/sbin/ip',
      [
        'netns',
        'exec',
        runner.name,
        process.execPath,
        join(REPO_ROOT, 'bin/cordon.js'),
        'demo',
        '--out',
        out,
        '--inside',
      ],
      { stdio: ['ignore', 'inherit', 'inherit'] },
    );
    return await new Promise<number>((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 300000);
      child.on('exit', (code) => {
        clearTimeout(timer);
        resolve(code ?? 1);
      });
    });
  } finally {
    stopFenceDaemon(join(out, 'job', 'runner-temp'));
    await stop(servers);
    for (const ns of made.reverse()) ns.delete();
  }
}

/** The egress daemon outlives its step by design; the demo stops it by the pid it recorded. */
function stopFenceDaemon(runnerTemp: string): void {
  const id = fenceId(runnerTemp);
  const file = join(stateDir(id), 'state.json');
  if (existsSync(file)) {
    try {
      const { pid } = JSON.parse(readFileSync(file, 'utf8')) as { pid: number };
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('daemon')) process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  removeState(id);
}
