/**
 * The egress action's other modes, run for real in namespaces: audit, a ruleset the
 * kernel refuses, a bad input, and the lockdown started through sudo by an
 * unprivileged runner user. Needs root, nft, ip, dig and sudo.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import {
  chmodSync,
  chownSync,
  existsSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { Job, REPO_ROOT, type StepResult } from '../../src/devkit/run-action.js';
import type { ChildProcess } from 'node:child_process';
import { canUseNetns, run, stop } from '../../src/devkit/netns.js';
import { fenceId, stateDir } from '../../src/rootd/protocol.js';
import { DNS4, DNS6, EVIL4, OTHER4, WEB4, World, connect, dig } from './egress-topology.js';

const usable = canUseNetns() && existsSync('/usr/sbin/nft') && existsSync('/usr/bin/dig');
if (!usable && process.env.CI === 'true') {
  throw new Error(
    'egress e2e: needs root, /usr/sbin/nft, ip and dig (CI=true, so not skipping); run .ci/run to install them',
  );
}
if (!usable) console.warn('egress e2e skipped: needs root, nft, ip and dig');
const suite = usable ? describe : describe.skip;

function ledger(job: Job): { type: string; data: Record<string, unknown> }[] {
  const path = join(job.runnerTemp, 'cordon', 'ledger.jsonl');
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { type: string; data: Record<string, unknown> });
}

function errors(r: StepResult): string[] {
  return r.commands.filter((c) => c.command === 'error').map((c) => c.message);
}

suite('egress in audit mode', () => {
  let w: World;
  let job: Job;
  let main: StepResult;
  const inputs = {
    'egress-policy': 'audit',
    'allowed-domains': 'www.a.test\n*.w.a.test',
    preset: 'none',
    teardown: 'true',
  };

  beforeAll(async () => {
    w = new World('a');
    await w.serve();
    job = new Job();
    main = await job.run('egress', 'main', { inputs, wrap: w.runner.wrap, timeoutMs: 30000 });
  }, 60000);

  afterAll(async () => {
    await w?.destroy([fenceId(job.runnerTemp)]);
  });

  test('lets everything through, forwards every name, and records it', async () => {
    expect(errors(main)).toEqual([]);
    expect(dig(w.runner, 'secret.evil.test').answers).toEqual([EVIL4]);
    expect(await w.asked('secret.evil.test')).toHaveLength(1);
    expect(connect(w.runner, OTHER4, 80).result).toBe('open');
    expect(dig(w.runner, 'www.a.test').answers).toEqual([WEB4]);
    expect(connect(w.runner, WEB4, 80).result).toBe('open');
    // Straight to the upstream is let through too, and recorded as a would-be block.
    expect(dig(w.runner, 'direct.a.test', { server: DNS4 }).answers).toEqual([WEB4]);
    // Hostile: under a listed wildcard a name is allowed whatever its labels hold (the proxy
    // reads bytes): line breaks, a wildcard of its own, markdown. It is no suggestion.
    dig(w.runner, 'x\\010*.s3.amazonaws.com\\010```\\010<img\\032src=x>.w.a.test');

    // report, a main step before every post: the suggestion as an output a later step can read.
    const fromReport = await job.run('report', 'main', { wrap: w.runner.wrap });
    expect(errors(fromReport)).toEqual([]);
    expect(fromReport.outputs['suggested-allowed-domains']).toBe('secret.evil.test\nwww.a.test');
    const pending = JSON.parse(readFileSync(fromReport.outputs['attribution-path'], 'utf8')).pending;
    expect(pending).toEqual([expect.objectContaining({ action: 'report', type: 'egress.report' })]);
    expect(fromReport.summary).toContain('www.a.test');
    expect(ledger(job).filter((e) => e.type === 'egress.report')).toEqual([]);

    const post = await job.run('egress', 'post', { inputs, state: main.state, wrap: w.runner.wrap });
    expect(errors(post)).toEqual([]);
    const report = ledger(job).find((e) => e.type === 'egress.report')?.data as {
      policy: string;
      blockedNames: { name: string }[];
      blockedDestinations: { address: string; protocol: string; port?: number }[];
      suggestedAllowlist: string[];
    };
    expect(report.policy).toBe('audit');
    expect(report.blockedNames.map((n) => n.name)).toEqual(['secret.evil.test']);
    expect(report.blockedDestinations).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ address: OTHER4, protocol: 'tcp', port: 80 }),
        expect.objectContaining({ address: DNS4, protocol: 'udp', port: 53 }),
      ]),
    );
    expect(report.blockedDestinations.find((d) => d.address === WEB4)).toBeUndefined();
    expect(report.suggestedAllowlist).toEqual(['secret.evil.test', 'www.a.test']);
    expect(post.outputs['suggested-allowed-domains']).toBe('secret.evil.test\nwww.a.test');
    expect(post.summary).toContain('allowed-domains: |\n  secret.evil.test\n  www.a.test\n```');
    expect(post.summary).not.toMatch(/s3\.amazonaws|<img/);
    const notice = post.commands.find((c) => c.command === 'notice');
    expect(notice?.message).toContain('allowed-domains: |');

    // teardown: true removed the table and put the resolver back.
    expect(w.runner.exec(['nft', 'list', 'tables'])).not.toContain('cordon');
    expect(w.resolvConf()).toBe(`nameserver ${DNS4}\n`);
    expect(existsSync(stateDir(fenceId(job.runnerTemp)))).toBe(false);
  });
});

suite('egress when the kernel refuses the ruleset', () => {
  let w: World;
  let job: Job;

  beforeAll(() => {
    w = new World('r');
    job = new Job();
  });

  afterAll(async () => {
    await w?.destroy([fenceId(job.runnerTemp)]);
  });

  test('the step fails with nft’s message and the host is left exactly as it was', async () => {
    const before = w.runner.exec(['nft', 'list', 'ruleset']);
    const resolv = w.resolvConf();
    // Overlapping networks pass input checks but nft refuses them in an interval set.
    const main = await job.run('egress', 'main', {
      inputs: { 'allowed-ips': '10.0.0.0/8\n10.1.0.0/16', preset: 'none' },
      wrap: w.runner.wrap,
      timeoutMs: 30000,
    });
    expect(main.code).toBe(1);
    const msg = errors(main).join('\n');
    expect(msg).toContain('the firewall ruleset did not load');
    expect(msg).toContain('conflicting intervals');
    expect(w.runner.exec(['nft', 'list', 'ruleset'])).toBe(before);
    expect(w.resolvConf()).toBe(resolv);
    expect(w.runner.exec(['ss', '-lnup'])).not.toMatch(/:53\b/);
    expect(existsSync(stateDir(fenceId(job.runnerTemp)))).toBe(false);
    expect(main.state['egress-id']).toBeUndefined();
    expect(ledger(job).filter((e) => e.type === 'egress.started')).toEqual([]);
  });

  test('a bad input fails before anything is touched, naming the input', async () => {
    const main = await job.run('egress', 'main', {
      inputs: { 'allowed-domains': '*.com' },
      wrap: w.runner.wrap,
    });
    expect(main.code).toBe(1);
    expect(errors(main)[0]).toContain('allowed-domains entry "*.com" is not valid');
    expect(w.runner.exec(['nft', 'list', 'tables'])).toBe('');
  });
});

/** Root's teardown of the job's fence (what `teardown: true` runs through sudo when it is allowed); its output. */
function teardown(w: World, job: Job): string {
  return w.runner.try([
    process.execPath,
    join(REPO_ROOT, 'dist/egress/daemon.js'),
    'teardown',
    fenceId(job.runnerTemp),
  ]).stdout;
}

const hasSudo = existsSync('/usr/bin/sudo') && existsSync('/usr/sbin/useradd');
if (usable && !hasSudo && process.env.CI === 'true')
  throw new Error('egress e2e: sudo and useradd are needed (CI=true)');
const sudoSuite = usable && hasSudo ? describe : describe.skip;

sudoSuite('egress started through sudo by an unprivileged runner user, with disable-sudo', () => {
  const user = `cegr${process.pid % 100000}`;
  const grant = `/etc/sudoers.d/${user}`;
  let w: World;
  let job: Job;
  let main: StepResult;
  // The harness writes this step's file-command files as root just before it starts the
  // step; hand them to the runner user, then drop to it. Node, not sh, runs this: dash
  // drops variables such as INPUT_ALLOWED-DOMAINS whose names are not identifiers.
  const asUser = (): string[] => [
    ...w.runner.wrap,
    process.execPath,
    '-e',
    `const cp = require('child_process');
     cp.execFileSync('chown', ['-R', ${JSON.stringify(user)}, ${JSON.stringify(job.root)}]);
     const r = cp.spawnSync('runuser', ['-u', ${JSON.stringify(user)}, '--', ...process.argv.slice(1)], { stdio: 'inherit' });
     process.exit(r.status ?? 1);`,
  ];

  beforeAll(async () => {
    run(['useradd', '--no-create-home', '--shell', '/bin/sh', user]);
    writeFileSync(grant, `${user} ALL=(ALL) NOPASSWD:ALL\n`, { mode: 0o440 });
    w = new World('s');
    await w.serve();
    job = new Job();
    // The runner user owns its job directories, as on a hosted runner.
    const own = (p: string): void => {
      chownSync(p, Number(run(['id', '-u', user]).trim()), Number(run(['id', '-g', user]).trim()));
      if (statSync(p).isDirectory()) for (const f of readdirSync(p)) own(join(p, f));
    };
    own(job.root);
    chmodSync(job.root, 0o755);
    main = await job.run('egress', 'main', {
      inputs: { 'allowed-domains': '*.a.test', preset: 'none', 'disable-sudo': 'true' },
      wrap: asUser(),
      timeoutMs: 30000,
    });
  }, 60000);

  afterAll(async () => {
    await w?.destroy([fenceId(job.runnerTemp)]);
    rmSync(grant, { force: true });
    run(['userdel', user], { allowFail: true });
  });

  test('main starts the root daemon through sudo, then sudo no longer works for the user', () => {
    expect(errors(main)).toEqual([]);
    expect(main.code).toBe(0);
    expect(readFileSync(grant, 'utf8')).not.toContain(user);
    expect(w.runner.try(['runuser', '-u', user, '--', 'sudo', '-n', 'true']).code).not.toBe(0);
    // The daemon runs as its own user, not root and not the runner user.
    const { pid } = JSON.parse(
      readFileSync(join(stateDir(fenceId(job.runnerTemp)), 'state.json'), 'utf8'),
    ) as { pid: number };
    const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    expect(uid).toBe(run(['id', '-u', 'cordon-dns']).trim());
    expect(dig(w.runner, 'secret.evil.test').status).toBe('NXDOMAIN');
    expect(connect(w.runner, OTHER4, 80).result).toBe('ECONNREFUSED');
  });

  test('the runner user cannot read the daemon’s records or memory', () => {
    const dir = stateDir(fenceId(job.runnerTemp));
    const { pid } = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as { pid: number };
    expect(w.runner.try(['runuser', '-u', user, '--', 'cat', join(dir, 'state.json')]).code).not.toBe(0);
    expect(w.runner.try(['runuser', '-u', user, '--', 'cat', `/proc/${pid}/environ`]).code).not.toBe(0);
    expect(
      w.runner.try(['runuser', '-u', user, '--', 'sh', '-c', `echo x >> ${join(dir, 'daemon.log')}`]).code,
    ).not.toBe(0);
    expect(w.runner.try(['runuser', '-u', user, '--', 'kill', '-0', String(pid)]).code).not.toBe(0);
  });

  test('the runner user cannot flush the table or rewrite the resolver', () => {
    const flush = w.runner.try(['runuser', '-u', user, '--', 'nft', 'flush', 'ruleset']);
    expect(flush.code).not.toBe(0);
    const edit = w.runner.try([
      'runuser',
      '-u',
      user,
      '--',
      'sh',
      '-c',
      `echo nameserver ${DNS4} > /etc/resolv.conf`,
    ]);
    expect(edit.code).not.toBe(0);
    expect(w.runner.exec(['nft', 'list', 'chain', 'inet', 'cordon', 'output'])).toContain('policy drop');
  });

  test('post, as the unprivileged user, reads the report from the daemon', async () => {
    const post = await job.run('egress', 'post', {
      inputs: { 'allowed-domains': '*.a.test', preset: 'none' },
      state: main.state,
      wrap: asUser(),
    });
    expect(errors(post)).toEqual([]);
    const report = ledger(job).find((e) => e.type === 'egress.report')?.data as {
      blockedNames: { name: string }[];
    };
    expect(report.blockedNames.map((n) => n.name)).toContain('secret.evil.test');
    // Root can still undo it all (what `teardown: true` runs through sudo when it is allowed).
    expect(teardown(w, job)).toContain('DONE');
    expect(readFileSync(grant, 'utf8')).toContain(`${user} ALL=(ALL) NOPASSWD:ALL`);
  });
});

sudoSuite('disable-sudo against a grant it does not remove: a group’s, an alias’s, one command', () => {
  const user = `cegg${process.pid % 100000}`;
  const group = `${user}g`;
  const alias = `CORDON_T${process.pid % 100000}`;
  const grant = `/etc/sudoers.d/${user}`;
  const extra = `/etc/sudoers.d/${user}-extra`;
  const tee = `/etc/${user}-tee`;
  let w: World;
  const jobs: Job[] = [];
  const heldKids: ChildProcess[] = [];
  const asUser = (job: Job): string[] => [
    ...w.runner.wrap,
    process.execPath,
    '-e',
    `const cp = require('child_process');
     cp.execFileSync('chown', ['-R', ${JSON.stringify(user)}, ${JSON.stringify(job.root)}]);
     const r = cp.spawnSync('runuser', ['-u', ${JSON.stringify(user)}, '--', ...process.argv.slice(1)], { stdio: 'inherit' });
     process.exit(r.status ?? 1);`,
  ];
  /** The attack: write a root-owned file through `sudo tee`, as the runner user. */
  const teeAsUser = (): number | null =>
    w.runner.try(['runuser', '-u', user, '--', 'sh', '-c', `echo owned | sudo -n tee ${tee} >/dev/null`])
      .code;
  const start = async (rule: string): Promise<{ main: StepResult; job: Job }> => {
    writeFileSync(extra, rule, { mode: 0o440 });
    const job = new Job();
    jobs.push(job);
    run(['chown', '-R', user, job.root]);
    chmodSync(job.root, 0o755);
    const main = await job.run('egress', 'main', {
      inputs: { 'allowed-domains': '*.a.test', preset: 'none', 'disable-sudo': 'true' },
      wrap: asUser(job),
      timeoutMs: 30000,
    });
    return { main, job };
  };

  beforeAll(async () => {
    run(['groupadd', group]);
    run(['useradd', '--no-create-home', '--shell', '/bin/sh', '-G', `${group},sudo`, user]);
    // What lets the runner user start the daemon through sudo, as on a hosted runner.
    writeFileSync(grant, `${user} ALL=(ALL) NOPASSWD:ALL\n`, { mode: 0o440 });
    w = new World('g');
    await w.serve();
  }, 60000);

  afterAll(async () => {
    for (const c of heldKids) await stop(c);
    await w?.destroy(jobs.map((j) => fenceId(j.runnerTemp)));
    for (const f of [grant, extra, tee, join(tmpdir(), `${user}-go`)]) rmSync(f, { force: true });
    run(['pkill', '-KILL', '-u', user], { allowFail: true });
    run(['userdel', user], { allowFail: true });
    run(['groupdel', group], { allowFail: true });
  });

  test.each([
    ['a group the user is in', `%${group} ALL=(ALL) NOPASSWD: /usr/bin/tee\n`],
    ['a User_Alias', `User_Alias ${alias} = ${user}\n${alias} ALL=(ALL) NOPASSWD: /usr/bin/tee\n`],
  ])(
    'one command through %s: the step fails naming it, with no fence and the runner as it was',
    async (_, rule) => {
      const { main, job } = await start(rule);
      expect(main.code).toBe(1);
      const [error] = errors(main);
      expect(error).toContain(`disable-sudo did not take effect: sudo still lets ${user} run`);
      expect(error).toContain('/usr/bin/tee');
      expect(error).toContain(`sudo -l -U ${user}`);
      // Nothing half applied: no ruleset, no fence state, the grants and groups back as they were.
      expect(w.runner.exec(['nft', 'list', 'tables'])).toBe('');
      expect(existsSync(stateDir(fenceId(job.runnerTemp)))).toBe(false);
      expect(readFileSync(grant, 'utf8')).toBe(`${user} ALL=(ALL) NOPASSWD:ALL\n`);
      expect(readFileSync(extra, 'utf8')).toBe(rule);
      expect(run(['id', '-nG', user]).trim().split(/\s+/)).toEqual(expect.arrayContaining([group, 'sudo']));
    },
    60000,
  );

  /**
   * A process of the runner user started before the step, as the runner's worker is: it
   * keeps the groups it started with. Once `go` exists (or after 30 s) it tries the attack
   * and prints sudo's exit code.
   */
  const held = (go: string): { done: Promise<string>; child: ChildProcess } => {
    const child = w.runner.spawn([
      'runuser',
      '-u',
      user,
      '--',
      'sh',
      '-c',
      `i=0; while [ ! -e ${go} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; echo owned | sudo -n tee ${tee} >/dev/null 2>&1; echo "rc=$?"`,
    ]);
    heldKids.push(child);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    return { child, done: new Promise((resolve) => child.once('exit', () => resolve(out.trim()))) };
  };

  test('a rule for the sudo group, used by a process that still holds the group: removed for the job, the attack fails', async () => {
    const rule = `%sudo ALL=(ALL) NOPASSWD: ALL\n`;
    const go = join(tmpdir(), `${user}-go`);
    rmSync(go, { force: true });
    writeFileSync(extra, rule, { mode: 0o440 });
    const before = held(go);
    const sudoers = readFileSync('/etc/sudoers', 'utf8');
    const { main, job } = await start(rule);
    expect(errors(main)).toEqual([]);
    expect(main.code).toBe(0);
    // The process started before the step still holds the group: sudo must refuse it all the same.
    const sudoGid = run(['getent', 'group', 'sudo']).split(':')[2];
    const shell = run(['pgrep', '-n', '-u', user, '-f', go]).trim();
    const groupsLine = /^Groups:(.*)$/m.exec(readFileSync(`/proc/${shell}/status`, 'utf8'))?.[1] ?? '';
    expect(groupsLine.trim().split(/\s+/)).toContain(sudoGid);
    writeFileSync(go, '');
    expect(await before.done).toMatch(/^rc=[1-9]/);
    expect(existsSync(tee)).toBe(false);
    expect(readFileSync(extra, 'utf8')).not.toContain('%sudo');
    expect(teardown(w, job)).toContain('DONE');
    expect(readFileSync(extra, 'utf8')).toBe(rule);
    expect(readFileSync('/etc/sudoers', 'utf8')).toBe(sudoers);
    expect(run(['id', '-nG', user]).trim().split(/\s+/)).toContain('sudo');
    rmSync(go, { force: true });
  }, 60000);

  test.each([
    ['the group name in capitals', () => `%SUDO ALL=(ALL) NOPASSWD: /usr/bin/tee\n`],
    [
      'the gid with a leading zero',
      () => `%#0${run(['getent', 'group', 'sudo']).split(':')[2]} ALL=(ALL) NOPASSWD: /usr/bin/tee\n`,
    ],
    ['the user by uid', () => `#${run(['id', '-u', user]).trim()} ALL=(ALL) NOPASSWD: /usr/bin/tee\n`],
  ])(
    'a rule spelled as sudo matches it, %s: removed for the job, given back after',
    async (_, spell) => {
      const rule = spell();
      const { main, job } = await start(rule);
      expect(errors(main)).toEqual([]);
      expect(main.code).toBe(0);
      expect(readFileSync(extra, 'utf8')).not.toContain('/usr/bin/tee');
      expect(teeAsUser()).not.toBe(0);
      expect(existsSync(tee)).toBe(false);
      expect(teardown(w, job)).toContain('DONE');
      expect(readFileSync(extra, 'utf8')).toBe(rule);
    },
    60000,
  );

  test('an alias naming the sudo group: the step fails, since running processes keep the group', async () => {
    const rule = `User_Alias ${alias} = %sudo\n${alias} ALL=(ALL) NOPASSWD: /usr/bin/tee\n`;
    const sudoers = readFileSync('/etc/sudoers', 'utf8');
    const { main, job } = await start(rule);
    expect(main.code).toBe(1);
    const [error] = errors(main);
    expect(error).toContain(`processes ${user} already runs keep the sudo group`);
    expect(error).toContain('/usr/bin/tee');
    expect(w.runner.exec(['nft', 'list', 'tables'])).toBe('');
    expect(existsSync(stateDir(fenceId(job.runnerTemp)))).toBe(false);
    expect(readFileSync(extra, 'utf8')).toBe(rule);
    expect(readFileSync('/etc/sudoers', 'utf8')).toBe(sudoers);
    expect(run(['id', '-nG', user]).trim().split(/\s+/)).toContain('sudo');
  }, 60000);

  test('a rule for the sudo group continued over two lines goes whole: sudoers stays valid for the job', async () => {
    // Removing the first line alone left `    /bin/cp` on its own, a syntax error for the job.
    const rule = `%sudo ALL=(ALL) NOPASSWD: /usr/bin/tee, \\\n    /bin/cp\n`;
    const { main, job } = await start(rule);
    expect(errors(main)).toEqual([]);
    expect(main.code).toBe(0);
    expect(readFileSync(extra, 'utf8')).not.toContain('/bin/cp');
    expect(w.runner.try(['visudo', '-c', '-f', extra]).code).toBe(0);
    expect(teardown(w, job)).toContain('DONE');
    expect(readFileSync(extra, 'utf8')).toBe(rule);
  }, 60000);

  test('a continued `%sudo` in an alias list is not taken for a rule: the alias stays whole and its grant fails the step', async () => {
    // Removing `    %sudo` alone joined the alias to the next statement, a syntax error.
    const rule = `User_Alias ${alias} = root, \\\n    %sudo\n${alias} ALL=(ALL) NOPASSWD: /usr/bin/tee\n`;
    const { main, job } = await start(rule);
    expect(main.code).toBe(1);
    const [error] = errors(main);
    expect(error).toContain(`processes ${user} already runs keep the sudo group`);
    expect(error).toContain('/usr/bin/tee');
    expect(existsSync(stateDir(fenceId(job.runnerTemp)))).toBe(false);
    expect(readFileSync(extra, 'utf8')).toBe(rule);
  }, 60000);

  test('an alias naming the sudo group under `listpw=always`: the step fails all the same', async () => {
    // `sudo -n -l` asked as the user answers only "a password is required" here, NOPASSWD
    // rule and all: a check that took that for no grant passed, and a process that kept the
    // sudo group was root through `sudo tee`.
    const rule = `Defaults:${user} listpw=always\nUser_Alias ${alias} = %sudo\n${alias} ALL=(ALL) NOPASSWD: /usr/bin/tee\n`;
    const sudoers = readFileSync('/etc/sudoers', 'utf8');
    const { main, job } = await start(rule);
    expect(main.code).toBe(1);
    const [error] = errors(main);
    expect(error).toContain(`processes ${user} already runs keep the sudo group`);
    expect(error).toContain('/usr/bin/tee');
    expect(existsSync(stateDir(fenceId(job.runnerTemp)))).toBe(false);
    expect(readFileSync(extra, 'utf8')).toBe(rule);
    expect(readFileSync('/etc/sudoers', 'utf8')).toBe(sudoers);
    expect(run(['id', '-nG', user]).trim().split(/\s+/)).toContain('sudo');
  }, 60000);

  test('one command granted by the user’s own name is removed: the attack through sudo tee fails', async () => {
    const { main, job } = await start(`${user} ALL=(ALL) NOPASSWD: /usr/bin/tee\n`);
    expect(errors(main)).toEqual([]);
    expect(main.code).toBe(0);
    expect(teeAsUser()).not.toBe(0);
    expect(existsSync(tee)).toBe(false);
    expect(w.runner.try(['runuser', '-u', user, '--', 'sudo', '-n', 'true']).code).not.toBe(0);
    // Root's teardown gives every line back.
    expect(teardown(w, job)).toContain('DONE');
    expect(readFileSync(extra, 'utf8')).toBe(`${user} ALL=(ALL) NOPASSWD: /usr/bin/tee\n`);
  }, 60000);
});

suite('egress when another server holds port 53 on 127.0.0.53, as systemd-resolved does', () => {
  let w: World;
  let job: Job;
  let stub: ChildProcess | undefined;

  beforeAll(async () => {
    w = new World('d');
    await w.serve();
    const script = `
      const d=require('dgram').createSocket('udp4');d.bind(53,'127.0.0.53');
      require('net').createServer(c=>c.end()).listen(53,'127.0.0.53',()=>console.log('up'));`;
    stub = w.runner.spawn([process.execPath, '-e', script]);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('stub did not start')), 5000);
      stub!.stdout!.once('data', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    job = new Job();
  });

  afterAll(async () => {
    await stop(stub);
    await w?.destroy([fenceId(job.runnerTemp)]);
  });

  test('the proxy falls back to loopback, says so, and the fence works (upstream over IPv6)', async () => {
    const main = await job.run('egress', 'main', {
      inputs: { 'allowed-domains': '*.a.test', preset: 'none', 'dns-upstream': DNS6 },
      wrap: w.runner.wrap,
      timeoutMs: 30000,
    });
    expect(errors(main)).toEqual([]);
    expect(main.commands.some((c) => c.command === 'warning' && c.message.includes('loopback only'))).toBe(
      true,
    );
    expect(dig(w.runner, 'www.a.test').answers).toEqual([WEB4]);
    expect(dig(w.runner, 'www.a.test', { tcp: true }).answers).toEqual([WEB4]);
    const asked = await w.asked('www.a.test');
    expect(asked.map((q) => `${q.proto} ${q.from}`).sort()).toEqual([
      'tcp 2001:db8:1::2',
      'udp 2001:db8:1::2',
    ]);
    expect(dig(w.runner, 'secret.evil.test').status).toBe('NXDOMAIN');
    expect(dig(w.runner, 'direct.a.test', { server: DNS6 }).status).toMatch(/^failed/);
    expect(connect(w.runner, OTHER4, 80).result).toBe('ECONNREFUSED');
  });
});
