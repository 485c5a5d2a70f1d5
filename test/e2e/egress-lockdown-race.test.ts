/**
 * After `disable-sudo` root runs nothing the runner user can write. On a real runner the
 * action's bundle lies in the runner user's `_actions` folder and the node that runs it in
 * the runner's `externals`: both the runner user's. A process of that user started before
 * the step (as the runner's worker is) waits for the lockdown, then swaps daemon.js,
 * agent.js and its node for versions that mark a file when root runs them; root must never
 * have run one (the root helper, run's launcher). Needs root, nft, ip, dig, sudo and useradd.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { Job, REPO_ROOT, type StepResult } from '../../src/devkit/run-action.js';
import { canUseNetns, run, stop } from '../../src/devkit/netns.js';
import { fenceId, launchCommandPath, stateDir, type LaunchCommand } from '../../src/rootd/protocol.js';
import { makeTestUser, type TestUser } from '../harness/users.js';
import { tempDir } from '../harness/tmp.js';
import { OTHER4, WEB4, World, connect, dig } from './egress-topology.js';

const usable =
  canUseNetns() &&
  ['/usr/sbin/nft', '/usr/bin/dig', '/usr/bin/sudo', '/usr/sbin/useradd'].every((f) => existsSync(f)) &&
  spawnSync('getent', ['group', 'sudo']).status === 0;
if (!usable && process.env.CI === 'true')
  throw new Error(
    'egress lockdown race e2e: needs root, nft, ip, dig, sudo, useradd and a sudo group (CI=true)',
  );
if (!usable) console.warn('egress lockdown race e2e skipped: needs root, nft, ip, dig, sudo and useradd');
const suite = usable ? describe : describe.skip;

/** JavaScript put first in a bundle: when root runs it and `when` holds, a line in `marker`. */
function markFirst(bundle: string, marker: string, what: string, when: string): string {
  return (
    `import{appendFileSync as __markA,readFileSync as __markR}from"node:fs";` +
    `if(process.getuid()===0&&(${when}))__markA(${JSON.stringify(marker)},${JSON.stringify(what)}+" "+process.argv.slice(2).join(" ")+"\\n");\n` +
    readFileSync(bundle, 'utf8')
  );
}

/**
 * The runner user's process started before the step: it watches what the lockdown changes
 * that the user can see (`/etc/sudoers`, which only the lockdown writes, loses its `%sudo`
 * rule; `/etc/group` no longer lists the user in `sudo`; other edits of `/etc/group`, such as
 * the fence's own `cordon-dns` group on a fresh machine, are not the lockdown), every 2 ms
 * for 20 s at most, and the moment it sees it renames each `<file>.evil` over `<file>`.
 */
const SWAPPER = `
const fs = require('fs');
const files = JSON.parse(process.argv[1]);
const user = process.argv[2];
const inSudo = () => fs.readFileSync('/etc/group', 'utf8').split('\\n')
  .some((l) => l.startsWith('sudo:') && (l.split(':')[3] || '').split(',').includes(user));
const sudoers = () => { const s = fs.statSync('/etc/sudoers'); return s.ino + ':' + s.mtimeMs; };
const first = sudoers();
if (!inSudo()) { console.log('not in the sudo group to begin with'); process.exit(1); }
const sig = () => sudoers() !== first || !inSudo();
const started = Date.now();
const pause = new Int32Array(new SharedArrayBuffer(4));
console.log('watching');
for (let i = 0; i < 10000 && Date.now() - started < 20000; i++) {
  if (sig()) {
    for (const f of files) fs.renameSync(f + '.evil', f);
    console.log('swapped');
    process.exit(0);
  }
  Atomics.wait(pause, 0, 0, 2);
}
console.log('no lockdown seen');
`;

/**
 * With the runner's own node the daemon copies it for the launcher (a slow copy); with
 * root's (`/usr/bin/node`) nothing but the launcher is copied, and the helper's wait for
 * `ready` is all that keeps its start ahead of the lockdown.
 */
suite.each([
  ['the runner user’s node', 'crace', 'x', true],
  ['root’s node', 'cracf', 'y', false],
])(
  'disable-sudo with the action in the runner user’s _actions, run by %s',
  (_, prefix, world, runnerNode) => {
    let runner: TestUser;
    let w: World;
    let job: Job;
    let main: StepResult;
    let swapper: ChildProcess | undefined;
    let swapped: Promise<string>;
    let marker: string;
    let sudoersAtLockdown: number;
    const sudoersBefore = readFileSync('/etc/sudoers', 'utf8');
    const files: Record<'daemon' | 'agent' | 'node', string> = { daemon: '', agent: '', node: '' };
    const asRunner = (argv: string[], input?: string) =>
      spawnSync('runuser', ['-u', runner.name, '--', ...argv], { input, encoding: 'utf8', timeout: 30000 });
    const teardown = (): string =>
      w.runner.try([
        process.execPath,
        join(REPO_ROOT, 'dist/egress/daemon.js'),
        'teardown',
        fenceId(job.runnerTemp),
      ]).stdout;

    beforeAll(async () => {
      runner = makeTestUser(prefix, { sudo: true });
      // In the sudo group too: the lockdown then changes files the user can watch.
      run(['usermod', '-aG', 'sudo', runner.name]);
      const marks = tempDir('cordon-marks-');
      chmodSync(marks, 0o755);
      marker = join(marks, 'root-ran');
      // As a runner lays it out: _actions/<owner>/<repo>/<ref>/dist/..., externals/node24/bin/node.
      const home = tempDir('cordon-runner-');
      chmodSync(home, 0o755);
      const dist = join(home, '_actions', 'cordon', 'cordon', 'v1', 'dist');
      for (const d of ['egress', 'run']) mkdirSync(join(dist, d), { recursive: true });
      for (const f of ['egress/main.js', 'egress/post.js', 'run/agent.js'])
        copyFileSync(join(REPO_ROOT, 'dist', f), join(dist, f));
      files.daemon = join(dist, 'egress', 'daemon.js');
      files.agent = join(dist, 'run', 'agent.js');
      if (runnerNode) {
        files.node = join(home, 'externals', 'node24', 'bin', 'node');
        mkdirSync(join(home, 'externals', 'node24', 'bin'), { recursive: true });
        copyFileSync(realpathSync(process.execPath), files.node);
        writeFileSync(
          `${files.node}.evil`,
          `#!/bin/sh\n[ "$(id -u)" = 0 ] && echo "root ran the swapped node: $*" >> ${marker}\nexec ${realpathSync(process.execPath)} "$@"\n`,
          { mode: 0o755 },
        );
      }
      // The daemon.js in place before the step marks when root runs it once the lockdown has
      // begun (the `%sudo` rule gone, or the user out of the group): the helper is caught
      // whether or not the swap wins the race.
      const lockedDown =
        (/^%sudo\s/m.test(sudoersBefore) ? `!/^%sudo\\s/m.test(__markR("/etc/sudoers","utf8"))||` : '') +
        `!__markR("/etc/group","utf8").split("\\n").some((l)=>l.startsWith("sudo:")&&l.split(":")[3].split(",").includes(${JSON.stringify(runner.name)}))`;
      writeFileSync(
        files.daemon,
        markFirst(
          join(REPO_ROOT, 'dist/egress/daemon.js'),
          marker,
          'root ran the runner’s daemon.js after the lockdown:',
          lockedDown,
        ),
      );
      // What the swap puts in: code that marks whenever root runs it, then does its job.
      writeFileSync(
        `${files.daemon}.evil`,
        markFirst(
          join(REPO_ROOT, 'dist/egress/daemon.js'),
          marker,
          'root ran the swapped daemon.js:',
          'true',
        ),
      );
      writeFileSync(
        `${files.agent}.evil`,
        markFirst(join(REPO_ROOT, 'dist/run/agent.js'), marker, 'root ran the swapped agent.js:', 'true'),
      );
      run(['chown', '-R', `${runner.name}:`, home]);

      swapper = spawn(
        'runuser',
        [
          '-u',
          runner.name,
          '--',
          process.execPath,
          '-e',
          SWAPPER,
          JSON.stringify(Object.values(files).filter(Boolean)),
          runner.name,
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let out = '';
      swapped = new Promise((resolve) => swapper!.once('exit', () => resolve(out)));
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the swapper did not start')), 10000);
        swapper!.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('watching')) {
            clearTimeout(timer);
            resolve();
          }
        });
      });

      w = new World(world);
      await w.serve();
      job = new Job();
      chmodSync(job.root, 0o755);
      // The step is the runner user, with the bundle in _actions.
      const wrap = [
        ...w.runner.wrap,
        process.execPath,
        '-e',
        `const cp = require('child_process');
       cp.execFileSync('chown', ['-R', ${JSON.stringify(runner.name + ':')}, ${JSON.stringify(job.root)}]);
       const r = cp.spawnSync('runuser', ['-u', ${JSON.stringify(runner.name)}, '--', ${JSON.stringify(files.node || process.execPath)}, ...process.argv.slice(2)], { stdio: 'inherit' });
       process.exit(r.status ?? 1);`,
      ];
      main = await job.run('egress', 'main', {
        inputs: { 'allowed-domains': '*.a.test', preset: 'none', 'disable-sudo': 'true' },
        script: join(dist, 'egress', 'main.js'),
        wrap,
        timeoutMs: 30000,
      });
      sudoersAtLockdown = statSync('/etc/sudoers').mtimeMs;
    }, 90000);

    afterAll(async () => {
      await stop(swapper);
      if (job && existsSync(join(stateDir(fenceId(job.runnerTemp)), 'state.json'))) teardown();
      await w?.destroy(job ? [fenceId(job.runnerTemp)] : []);
      runner?.remove();
    });

    test('the swap came after the lockdown, and root ran none of the runner’s files; the fence holds', async () => {
      expect(main.code).toBe(0);
      expect(await swapped).toContain('swapped');
      expect(readFileSync('/etc/sudoers', 'utf8')).not.toBe(sudoersBefore);
      expect(asRunner(['sudo', '-n', 'true']).status).not.toBe(0);
      // run's launcher, as the runner user calls it (an empty config: nothing to do, but run as root).
      const launch = JSON.parse(readFileSync(launchCommandPath(job.runnerTemp), 'utf8')) as LaunchCommand;
      expect(launch.node).toBe(
        runnerNode
          ? join(stateDir(fenceId(job.runnerTemp)), 'launch', 'node')
          : realpathSync(process.execPath),
      );
      const launched = asRunner(['sudo', '-n', launch.node, launch.program], '');
      expect(launched.status).not.toBeNull();
      expect(launched.stderr).not.toContain('sudo:');
      expect(existsSync(marker) ? readFileSync(marker, 'utf8') : '').toBe('');
      // Root's copies were made before sudo went (nothing was copied from the swapped files).
      for (const f of runnerNode ? [launch.node, launch.program] : [launch.program]) {
        expect(statSync(f).uid).toBe(0);
        expect(statSync(f).mtimeMs).toBeLessThanOrEqual(sudoersAtLockdown);
      }
      expect(dig(w.runner, 'www.a.test').answers).toEqual([WEB4]);
      expect(dig(w.runner, 'secret.evil.test').status).toBe('NXDOMAIN');
      expect(connect(w.runner, OTHER4, 80).result).toBe('ECONNREFUSED');
      expect(teardown()).toContain('DONE');
      expect(readFileSync('/etc/sudoers', 'utf8')).toBe(sudoersBefore);
      expect(asRunner(['sudo', '-n', 'true']).status).toBe(0);
    });
  },
);

/**
 * sudo gives root its `secure_path`, which puts `/usr/local/sbin` and `/usr/local/bin` before
 * the system's own directories; on some images one of them is the runner user's to write
 * (T31). A program of the runner's there, named like one root calls by name (`nft`), must
 * never be run by the daemon or its helper once the lockdown has begun: the daemon looks
 * programs up only in the system's directories.
 */
suite('disable-sudo with a directory of sudo’s secure_path the runner user can write', () => {
  const dir = '/usr/local/sbin';
  let runner: TestUser;
  let w: World;
  let job: Job;
  let main: StepResult;
  let marker: string;
  let was: { uid: number; gid: number; mode: number } | undefined;
  const planted = join(dir, 'nft');
  const sudoersBefore = readFileSync('/etc/sudoers', 'utf8');
  const teardown = (): string =>
    w.runner.try([
      process.execPath,
      join(REPO_ROOT, 'dist/egress/daemon.js'),
      'teardown',
      fenceId(job.runnerTemp),
    ]).stdout;

  beforeAll(async () => {
    if (!/secure_path="?\/usr\/local\/sbin:/m.test(sudoersBefore) || existsSync(planted)) return;
    runner = makeTestUser('crpth', { sudo: true });
    const marks = tempDir('cordon-marks-');
    chmodSync(marks, 0o777);
    marker = join(marks, 'root-ran');
    const st = statSync(dir);
    was = { uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 };
    run(['chown', runner.name, dir]);
    // The runner user's `nft`: marks when root runs it, then does what nft does.
    writeFileSync(
      planted,
      `#!/bin/sh\n[ "$(id -u)" = 0 ] && echo "root ran the runner’s nft: $*" >> ${marker}\nexec /usr/sbin/nft "$@"\n`,
      { mode: 0o755 },
    );
    run(['chown', `${runner.name}:`, planted]);
    w = new World('z');
    await w.serve();
    job = new Job();
    chmodSync(job.root, 0o755);
    const wrap = [
      ...w.runner.wrap,
      process.execPath,
      '-e',
      `const cp = require('child_process');
       cp.execFileSync('chown', ['-R', ${JSON.stringify(runner.name + ':')}, ${JSON.stringify(job.root)}]);
       const r = cp.spawnSync('runuser', ['-u', ${JSON.stringify(runner.name)}, '--', ${JSON.stringify(process.execPath)}, ...process.argv.slice(2)], { stdio: 'inherit' });
       process.exit(r.status ?? 1);`,
    ];
    main = await job.run('egress', 'main', {
      inputs: { 'allowed-domains': '*.a.test', preset: 'none', 'disable-sudo': 'true' },
      wrap,
      timeoutMs: 30000,
    });
  }, 90000);

  afterAll(async () => {
    if (job && existsSync(join(stateDir(fenceId(job.runnerTemp)), 'state.json'))) teardown();
    await w?.destroy(job ? [fenceId(job.runnerTemp)] : []);
    rmSync(planted, { force: true });
    if (was) {
      run(['chown', `${was.uid}:${was.gid}`, dir]);
      chmodSync(dir, was.mode);
    }
    runner?.remove();
  });

  test('hostile: the runner user’s nft in /usr/local/sbin: root never runs it, the fence holds', () => {
    if (!was) {
      console.warn('secure_path test skipped: sudo’s secure_path does not start with /usr/local/sbin here');
      return;
    }
    expect(main.code).toBe(0);
    const asRunner = spawnSync('runuser', ['-u', runner.name, '--', 'sudo', '-n', 'true']);
    expect(asRunner.status).not.toBe(0);
    expect(existsSync(marker) ? readFileSync(marker, 'utf8') : '').toBe('');
    expect(dig(w.runner, 'www.a.test').answers).toEqual([WEB4]);
    expect(dig(w.runner, 'secret.evil.test').status).toBe('NXDOMAIN');
    expect(teardown()).toContain('DONE');
    expect(readFileSync('/etc/sudoers', 'utf8')).toBe(sudoersBefore);
  });
});
