/**
 * disable-docker for real: a Unix socket the runner user can write through its group,
 * taken away and checked as that user, then given back. Needs root and useradd.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { existsSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { run } from '../../../src/devkit/netns.js';
import { disableDocker, restoreLockdown, type LockdownBackup } from '../../../src/fence/lockdown.js';
import { tempDir } from '../../harness/tmp.js';

const usable = process.getuid?.() === 0 && existsSync('/usr/sbin/useradd') && existsSync('/usr/sbin/runuser');
if (!usable && process.env.CI === 'true')
  throw new Error('lockdown test: needs root, useradd and runuser (CI=true)');
if (!usable) console.warn('lockdown test skipped: needs root, useradd and runuser');
const suite = usable ? describe : describe.skip;

suite('disable-docker', () => {
  const user = `cegd${process.pid % 100000}`;
  let dir: string;
  let server: net.Server;
  let socket: string;

  beforeAll(async () => {
    run(['useradd', '--no-create-home', '--shell', '/bin/sh', user]);
    dir = tempDir('cordon-docker-');
    run(['chmod', '755', dir]);
    socket = join(dir, 'docker.sock');
    server = net.createServer((c) => c.end());
    await new Promise<void>((r) => server.listen(socket, r));
    // As dockerd does: root-owned, writable by the group (here the user's own group).
    run(['chgrp', user, socket]);
    run(['chmod', '660', socket]);
  });

  afterAll(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
    run(['userdel', user], { allowFail: true });
  });

  test('the group loses the socket, the user cannot write it, and restore gives it back', () => {
    const canWrite = (): boolean => spawnOk(user, socket);
    expect(canWrite()).toBe(true);
    const backup: LockdownBackup = { sudoers: [], groupsLeft: [] };
    disableDocker(user, backup, { socket });
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    expect(statSync(socket).gid).toBe(0);
    expect(canWrite()).toBe(false);
    restoreLockdown(backup, user);
    expect(statSync(socket).mode & 0o777).toBe(0o660);
    expect(canWrite()).toBe(true);
  });
});

function spawnOk(user: string, socket: string): boolean {
  try {
    run(['runuser', '-u', user, '--', 'test', '-w', socket]);
    return true;
  } catch {
    return false;
  }
}
