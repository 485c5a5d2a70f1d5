/**
 * `disable-sudo` and the agent's own user together, as `actions/agent` and the examples run
 * them: a runner user with passwordless sudo starts the fence with `disable-sudo: true`,
 * and `run` after it still gives the agent a user of its own, through the one command sudo
 * keeps for the runner user: root's copy of run's launcher (rootd/launcher.ts). Then the
 * runner user, hostile, calls that command itself: every config that would make root touch
 * something of anyone else's is refused and nothing changes. Needs root, nft, ip, dig,
 * sudo, useradd and setpriv.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { Job, REPO_ROOT, type StepResult } from '../../src/devkit/run-action.js';
import { canUseNetns } from '../../src/devkit/netns.js';
import { parseLedgerText } from '../../src/ledger/ledger.js';
import { fenceId, launchCommandPath, stateDir, type LaunchCommand } from '../../src/rootd/protocol.js';
import { makeTestUser, type TestUser } from '../harness/users.js';
import { World } from './egress-topology.js';

const usable =
  canUseNetns() &&
  ['/usr/sbin/nft', '/usr/bin/dig', '/usr/bin/sudo', '/usr/sbin/useradd', '/usr/bin/setpriv'].every((f) =>
    existsSync(f),
  );
if (!usable && process.env.CI === 'true')
  throw new Error('agent-launcher e2e: needs root, nft, ip, dig, sudo, useradd and setpriv (CI=true)');
if (!usable) console.warn('agent-launcher e2e skipped: needs root, nft, ip, dig, sudo, useradd and setpriv');
const suite = usable ? describe : describe.skip;

const WHO =
  'echo "whoami $(id -un) $(id -u)"; sudo -n true 2>/dev/null && echo "agent sudo WON" || echo "agent sudo held"';

suite("disable-sudo, then run as the agent's own user through the daemon's launcher", () => {
  let runner: TestUser;
  let w: World;
  let job: Job;
  let main: StepResult;
  let launch: LaunchCommand;
  let dropIn: string;
  const etcBefore = lstatSync('/etc');
  const asRunner = (argv: string[], input?: string) =>
    spawnSync('runuser', ['-u', runner.name, '--', ...argv], { input, encoding: 'utf8', timeout: 60000 });
  const agentUsers = () =>
    readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('cordon-agent-')).length;

  beforeAll(async () => {
    runner = makeTestUser('claun', { sudo: true });
    w = new World('l');
    await w.serve();
    job = new Job();
    chmodSync(job.root, 0o755);
    main = await job.run('egress', 'main', {
      inputs: { 'allowed-domains': '*.a.test', preset: 'none', 'disable-sudo': 'true' },
      wrap: [...w.runner.wrap, ...runner.wrap(job.root)],
      timeoutMs: 30000,
    });
    dropIn = `/etc/sudoers.d/cordon-launch-${fenceId(job.runnerTemp)}`;
    if (existsSync(launchCommandPath(job.runnerTemp)))
      launch = JSON.parse(readFileSync(launchCommandPath(job.runnerTemp), 'utf8')) as LaunchCommand;
  }, 90000);

  afterAll(async () => {
    await w?.destroy(job ? [fenceId(job.runnerTemp)] : []);
    if (dropIn) rmSync(dropIn, { force: true });
    runner?.remove();
  });

  test("egress took sudo away and left one rule: root's copy of the launcher, no argument", () => {
    expect(main.code).toBe(0);
    expect(asRunner(['sudo', '-n', 'true']).status).not.toBe(0);
    expect(launch.program).toBe(join(stateDir(fenceId(job.runnerTemp)), 'launch', 'agent.mjs'));
    expect(asRunner(['sudo', '-n', '-l', launch.node, launch.program]).status).toBe(0);
    expect(readFileSync(dropIn, 'utf8')).toContain(
      `${runner.name} ALL=(root) NOPASSWD:NOSETENV: ${launch.node} ${launch.program}\n`,
    );
    expect(readFileSync(dropIn, 'utf8')).toContain(`Defaults!${launch.node} env_reset, !env_keep\n`);
    // Another argument, another program, another environment: not the rule.
    expect(asRunner(['sudo', '-n', launch.node, launch.program, '/etc']).status).not.toBe(0);
    expect(asRunner(['sudo', '-n', launch.node, '-e', 'process.exit(0)']).status).not.toBe(0);
    expect(asRunner(['sudo', '-n', '-E', launch.node, launch.program], '').status).not.toBe(0);
  });

  // The rule's Defaults, attacked: an image whose sudoers keeps NODE_OPTIONS for everyone
  // (and resets nothing for the runner user), and the runner user handing root's node a
  // --require of its own every way sudo takes an environment. The payload is shown to work
  // as the runner user first, so "no marker" means held.
  test("the runner user hands root's node NODE_OPTIONS, also where the image's sudoers keeps it: the launcher never runs its code as root", () => {
    const dir = join(job.root, 'node-options');
    mkdirSync(dir, { mode: 0o777 });
    chmodSync(dir, 0o777);
    const evil = join(dir, 'evil.cjs');
    writeFileSync(
      evil,
      `require('fs').writeFileSync(${JSON.stringify(dir)} + '/marker-' + process.getuid(), 'ran');\n`,
      { mode: 0o644 },
    );
    const opts = `--require=${evil}`;
    const control = asRunner(['env', `NODE_OPTIONS=${opts}`, launch.node, '-e', '0']);
    expect(control.status).toBe(0);
    expect(existsSync(join(dir, `marker-${runner.uid}`))).toBe(true);
    const image = `/etc/sudoers.d/zz-cordon-test-image-${process.pid}`;
    writeFileSync(image, `Defaults env_keep += "NODE_OPTIONS"\nDefaults:${runner.name} !env_reset\n`, {
      mode: 0o440,
    });
    try {
      expect(spawnSync('visudo', ['-c', '-q']).status).toBe(0);
      const attempts = [
        ['env', `NODE_OPTIONS=${opts}`, 'sudo', '-n', launch.node, launch.program],
        ['env', `NODE_OPTIONS=${opts}`, 'sudo', '-n', '-E', launch.node, launch.program],
        [
          'env',
          `NODE_OPTIONS=${opts}`,
          'sudo',
          '-n',
          '--preserve-env=NODE_OPTIONS',
          launch.node,
          launch.program,
        ],
        ['sudo', '-n', `NODE_OPTIONS=${opts}`, launch.node, launch.program],
      ];
      for (const argv of attempts) asRunner(argv, '');
      expect(readdirSync(dir).sort()).toEqual(['evil.cjs', `marker-${runner.uid}`]);
      // Held by the rule, not by sudo refusing every attempt: the first one ran the launcher.
      expect(asRunner(attempts[0], '').status).toBe(0);
    } finally {
      rmSync(image, { force: true });
    }
    expect(existsSync(join(dir, 'marker-0'))).toBe(false);
  });

  test.each(['agent', 'auto'])(
    'user: %s runs the command as a cordon-agent uid, not the runner',
    async (user) => {
      const r = await job.run('run', 'main', {
        inputs: { run: WHO, user },
        wrap: [...w.runner.wrap, ...runner.wrap(job.root)],
        timeoutMs: 60000,
      });
      expect(r.code).toBe(0);
      const who = /whoami (\S+) (\d+)/.exec(r.stdout);
      expect(who?.[1]).toMatch(/^cordon-agent-[0-9a-f]{6}$/);
      expect(Number(who?.[2])).not.toBe(runner.uid);
      expect(r.stdout).toContain('agent sudo held');
      const started = parseLedgerText(readFileSync(join(job.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8'))
        .flatMap((l) =>
          l.event?.type === 'run.started' ? [l.event.data as { user?: { via?: string } }] : [],
        )
        .pop();
      expect(started?.user?.via).toBe('launcher');
      expect(agentUsers()).toBe(0);
      // The workspace is the runner's again.
      expect(lstatSync(job.workspace).uid).toBe(runner.uid);
    },
    90000,
  );

  test.each<[string, (ws: string) => Record<string, unknown>, RegExp]>([
    ['/etc as the workspace', () => ({ workspace: '/etc' }), /belongs to uid 0, not to the caller/],
    [
      'a link to /etc as the workspace',
      (ws) => ({ workspace: join(ws, 'etc-link') }),
      /etc-link on the way is a symbolic link/,
    ],
    [
      'a workspace below a link to /',
      (ws) => ({ workspace: join(ws, 'root-link', 'etc') }),
      /root-link on the way is a symbolic link/,
    ],
    ['a uid to run as (0)', () => ({ uid: 0 }), /does not take: uid/],
    ['a uid and a user to run as', () => ({ uid: 4242, user: 'root' }), /does not take: uid, user/],
    [
      'a file outside the agent home',
      () => ({ files: [{ path: '../../etc/sudoers.d/x', content: 'x', mode: 0o600 }] }),
      /plain relative name/,
    ],
  ])('the runner user calls the launcher itself with %s: refused, nothing changed', (_name, change, why) => {
    const ws = job.workspace;
    if (!existsSync(join(ws, 'etc-link'))) {
      symlinkSync('/etc', join(ws, 'etc-link'));
      symlinkSync('/', join(ws, 'root-link'));
    }
    const config = { argv: ['sh', '-c', 'id'], env: {}, cwd: ws, workspace: ws, files: [], ...change(ws) };
    const r = asRunner(
      ['sudo', '-n', launch.node, launch.program],
      JSON.stringify({ op: 'config', config }) + '\n',
    );
    const lines = r.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { op: string; why?: string });
    expect(lines.find((l) => l.op === 'error')?.why).toMatch(why);
    expect(lines.map((l) => l.op)).not.toContain('ready');
    const etc = lstatSync('/etc');
    expect([etc.uid, etc.gid, etc.mode]).toEqual([etcBefore.uid, etcBefore.gid, etcBefore.mode]);
    expect(lstatSync('/etc/shadow').uid).toBe(0);
    expect(agentUsers()).toBe(0);
    expect(spawnSync('findmnt', ['-n', '/etc']).status).not.toBe(0);
  });

  test("the agent's own user reaches none of the fence's sockets, files or processes; none of them listens on an abstract socket", async () => {
    const dir = stateDir(fenceId(job.runnerTemp));
    // The fence's processes: the daemon and its root helper name this fence on their command line.
    const pids = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .filter((d) => {
        try {
          const argv = readFileSync(`/proc/${d}/cmdline`, 'utf8');
          return argv.includes('dist/egress/daemon.js') && argv.includes(fenceId(job.runnerTemp));
        } catch {
          return false;
        }
      });
    expect(pids.length).toBeGreaterThanOrEqual(2);
    const targets = [
      'control.sock',
      'ledger.sock',
      'cgroup.sock',
      'ledger.jsonl',
      'daemon.log',
      'state.json',
    ];
    for (const t of targets) expect(existsSync(join(dir, t))).toBe(true);
    const connect = `${process.execPath} -e "require('net').connect(process.argv[1]).on('connect', () => process.exit(0)).on('error', () => process.exit(1))"`;
    const script = [
      `try() { name=$1; shift; if ( "$@" ) >/dev/null 2>&1; then echo "$name WON"; else echo "$name held"; fi; }`,
      ...['control', 'ledger', 'cgroup'].map((s) => `try ${s}-sock ${connect} ${dir}/${s}.sock`),
      `try ledger-copy cat ${dir}/ledger.jsonl`,
      `try daemon-log cat ${dir}/daemon.log`,
      `try state cat ${dir}/state.json`,
      `try plant-launch touch ${dir}/launch/planted`,
      ...pids.flatMap((p) => [`try signal-${p} kill -CONT ${p}`, `try environ-${p} cat /proc/${p}/environ`]),
      `echo "abstract $(grep -c ' @' /proc/net/unix)"`,
    ].join('\n');
    const r = await job.run('run', 'main', {
      inputs: { run: script, user: 'agent' },
      wrap: [...w.runner.wrap, ...runner.wrap(job.root)],
      timeoutMs: 60000,
    });
    expect(r.code).toBe(0);
    const names = [
      'control-sock',
      'ledger-sock',
      'cgroup-sock',
      'ledger-copy',
      'daemon-log',
      'state',
      'plant-launch',
      ...pids.flatMap((p) => [`signal-${p}`, `environ-${p}`]),
    ];
    for (const n of names) expect(r.stdout).toContain(`${n} held`);
    // The control: the same connect as the runner user gets through, so "held" means held.
    expect(asRunner(['sh', '-c', `${connect} ${dir}/ledger.sock`]).status).toBe(0);
    expect(r.stdout).not.toContain('WON');
    expect(r.stdout).toMatch(/^abstract \d+$/m);
    // No socket of the fence's processes is abstract (no file mode would keep anyone out of one).
    const inodes = new Set(
      pids.flatMap((p) =>
        readdirSync(`/proc/${p}/fd`).flatMap((fd) => {
          try {
            return [/^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${p}/fd/${fd}`))?.[1] ?? ''];
          } catch {
            return [];
          }
        }),
      ),
    );
    expect(inodes.size).toBeGreaterThan(0);
    const abstract = readFileSync('/proc/net/unix', 'utf8')
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f[7]?.startsWith('@') && inodes.has(f[6]));
    expect(abstract).toEqual([]);
  }, 90000);

  test("the runner user cannot change root's copy of the launcher", () => {
    for (const script of [
      `echo 'process.exit(0)' > ${launch.program}`,
      `mv ${launch.program} ${launch.program}.old`,
      `rm -rf ${join(stateDir(fenceId(job.runnerTemp)), 'launch')}`,
    ])
      expect(asRunner(['sh', '-c', script]).status).not.toBe(0);
    expect(lstatSync(launch.program).uid).toBe(0);
    expect(lstatSync(launch.program).mode & 0o022).toBe(0);
  });

  test("the runner user swaps a directory for a link during root's set-uid sweep: nothing outside the workspace is touched", () => {
    // A workspace and a folder of the runner's own, each file set-uid: the sweep must clear
    // the bits in the workspace (e/ is never swapped) and never reach `outside`.
    const ws = join(job.root, 'swap-ws');
    const outside = join(job.root, 'swap-outside');
    const files = Array.from({ length: 20 }, (_, j) => `x${j}`);
    expect(
      asRunner([
        'sh',
        '-c',
        `mkdir ${ws} ${outside} && cd ${outside} && for f in ${files.join(' ')}; do : > $f; chmod 4755 $f; done`,
      ]).status,
    ).toBe(0);
    const script = readFileSync(join(REPO_ROOT, 'test/e2e/launcher-swap.py'), 'utf8');
    const r = asRunner(['python3', '-c', script, launch.node, launch.program, ws, outside]);
    const msgs = r.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { op: string; strategy?: string; problems?: string[] });
    const ended = msgs.find((m) => m.op === 'ended');
    expect(ended?.strategy).toBe('idmap');
    // The control: what the agent left set-uid in the workspace was found and cleared.
    for (const f of files) expect(lstatSync(join(ws, 'e', f)).mode & 0o7777).toBe(0o755);
    expect(ended?.problems?.join('\n')).toMatch(/set-uid\/set-gid bits cleared on \d+ file/);
    const touched = files.filter((f) => (lstatSync(join(outside, f)).mode & 0o7777) !== 0o4755);
    expect(touched).toEqual([]);
    expect(agentUsers()).toBe(0);
  }, 120000);

  test('teardown removes the rule and the copy', () => {
    const down = w.runner.try(
      [process.execPath, join(REPO_ROOT, 'dist/egress/daemon.js'), 'teardown', fenceId(job.runnerTemp)],
      30000,
    );
    expect(down.stdout).toContain('DONE');
    expect(existsSync(dropIn)).toBe(false);
    expect(existsSync(launch.program)).toBe(false);
  });
});
