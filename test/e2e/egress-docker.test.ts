/**
 * `disable-docker: true` against the bundled daemon, whole program. No Docker engine runs
 * here, so a Unix socket listener stands at the path the daemon takes (/var/run/docker.sock,
 * src/fence/lockdown.ts), as dockerd leaves it: root:docker, mode 0660, with a runner user
 * made here in the docker group. As that user: it connects before the fence, and not once
 * the fence is up; the failure path: a step whose user still can (root) fails, naming the
 * input, and the socket is given back as it was. A socket already at the path is moved aside
 * and put back; the docker group is made only when missing, and removed only then. Needs
 * root, nft, ip, useradd, groupadd and setpriv.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, renameSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { canUseNetns, run } from '../../src/devkit/netns.js';
import { parseDomains } from '../../src/fence/policy.js';
import { World, startDaemon } from './egress-topology.js';
import { tempDir } from '../harness/tmp.js';

const SOCKET = '/var/run/docker.sock';
const usable =
  canUseNetns() &&
  ['/usr/sbin/nft', '/usr/sbin/useradd', '/usr/sbin/groupadd', '/usr/bin/setpriv'].every((f) =>
    existsSync(f),
  );
if (!usable && process.env.CI === 'true')
  throw new Error('egress-docker e2e: needs root, nft, ip, useradd, groupadd and setpriv (CI=true)');
if (!usable) console.warn('egress-docker e2e skipped: needs root, nft, ip, useradd, groupadd and setpriv');
const suite = usable ? describe : describe.skip;

suite('egress: disable-docker takes the docker socket from the runner user', () => {
  const user = `chdock${process.pid % 100000}`;
  const displaced = `${SOCKET}.cordon-test-${process.pid}`;
  let madeGroup = false;
  let moved = false;
  let server: net.Server | undefined;
  let w: World;
  /** The failure path's own world: the first one's daemon is gone with it. */
  let w2: World | undefined;
  let dir: string;
  const ids: string[] = [];

  /**
   * Connects to the socket as the runner user, with its groups: 'docker' (the listener's
   * word) or the error code. Asynchronous: the listener runs in this process.
   */
  function connectAs(): Promise<string> {
    const script = `const c=require('net').connect(process.argv[1]);let d='';c.on('data',x=>d+=x);
      c.on('end',()=>{console.log(d);process.exit(0)});c.on('error',e=>{console.log(e.code);process.exit(0)});
      setTimeout(()=>{console.log('timeout');process.exit(0)},3000);`;
    const child = spawn(
      'setpriv',
      ['--reuid', user, '--regid', user, '--init-groups', process.execPath, '-e', script, SOCKET],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    return new Promise((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
      child.on('exit', () => {
        clearTimeout(timer);
        resolve(out.trim());
      });
    });
  }

  /** As dockerd leaves it. */
  function dockerOwned(): void {
    run(['chown', 'root:docker', SOCKET]);
    run(['chmod', '660', SOCKET]);
  }

  beforeAll(async () => {
    if (spawnSync('getent', ['group', 'docker']).status !== 0) {
      run(['groupadd', 'docker']);
      madeGroup = true;
    }
    run(['useradd', '--user-group', '--groups', 'docker', '--no-create-home', '--shell', '/bin/sh', user]);
    if (existsSync(SOCKET)) {
      renameSync(SOCKET, displaced);
      moved = true;
    }
    server = net.createServer((c) => {
      c.on('error', () => undefined);
      c.end('docker');
    });
    await new Promise<void>((resolve) => server!.listen(SOCKET, resolve));
    dockerOwned();
    dir = tempDir('cordon-docker-');
    w = new World('d');
  }, 30000);

  afterAll(async () => {
    await w2?.destroy(ids);
    await w?.destroy(ids);
    if (server) await new Promise<void>((resolve) => server!.close(() => resolve()));
    rmSync(SOCKET, { force: true });
    if (moved) renameSync(displaced, SOCKET);
    spawnSync('userdel', [user], { timeout: 15000 });
    if (madeGroup) spawnSync('groupdel', ['docker'], { timeout: 15000 });
  });

  test('control: before the fence, the runner user reaches the socket through the docker group', async () => {
    expect(await connectAs()).toBe('docker');
  });

  test('with the fence up, it cannot: the socket is root’s alone, though the user is still in the group', async () => {
    const id = `docker${process.pid}`;
    ids.push(id);
    await startDaemon(w, join(dir, 'config.json'), {
      id,
      domains: parseDomains('www.a.test'),
      agentDomains: parseDomains('www.a.test'),
      disableDocker: true,
      user,
    });
    expect(await connectAs()).toBe('EACCES');
    const st = statSync(SOCKET);
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([0, 0, 0o600]);
    expect(run(['id', '-nG', user]).split(/\s+/)).toContain('docker');
  }, 40000);

  test('when the check finds the step’s user can still write it, the step fails naming the input and the socket is given back', async () => {
    dockerOwned();
    w2 = new World('e');
    const id = `dockerfail${process.pid}`;
    ids.push(id);
    // Root writes any socket: the one user the check cannot take it from.
    await expect(
      startDaemon(w2, join(dir, 'config-root.json'), {
        id,
        domains: parseDomains('www.a.test'),
        agentDomains: parseDomains('www.a.test'),
        disableDocker: true,
        user: 'root',
      }),
    ).rejects.toThrow(/disable-docker did not take effect: root can still write \/var\/run\/docker\.sock/);
    const st = statSync(SOCKET);
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([
      0,
      Number(run(['getent', 'group', 'docker']).split(':')[2]),
      0o660,
    ]);
    expect(await connectAs()).toBe('docker');
    // Nothing of the fence is left up: the table went with the failed start.
    expect(w2.runner.try(['nft', 'list', 'table', 'inet', 'cordon']).code).not.toBe(0);
  }, 40000);
});
