/**
 * The runner's situation, made by a test: a non-root "runner" user with passwordless sudo
 * (a useradd and a sudoers drop-in, as GitHub-hosted runners have), or one without sudo.
 * Removed by the name made, however the test ends; `wrap` runs a bundled action as it.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
  /** A prefix for Job.run's `wrap`: hands `root` to the user, then runs node as it. */
  wrap(root: string): string[];
  remove(): void;
}

/**
 * A prefix for Job.run's `wrap`: the harness writes a step's files as root just before the
 * step, so hand the job's files to `name`, then drop to it (Node keeps every variable).
 */
export function wrapAsUser(name: string, root: string): string[] {
  return [
    process.execPath,
    '-e',
    `const cp = require('child_process');
     cp.execFileSync('chown', ['-R', ${JSON.stringify(name)} + ':', ${JSON.stringify(root)}]);
     const r = cp.spawnSync('runuser', ['-u', ${JSON.stringify(name)}, '--', ...process.argv.slice(1)], { stdio: 'inherit' });
     process.exit(r.status ?? 1);`,
  ];
}

export const canMakeUsers = (): boolean =>
  process.getuid?.() === 0 && existsSync('/usr/sbin/useradd') && existsSync('/usr/sbin/runuser');

export function makeTestUser(prefix: string, opts: { sudo: boolean }): TestUser {
  const name = `${prefix}${process.pid % 100000}`;
  const sudoers = `/etc/sudoers.d/cordon-test-${name}`;
  // A user left by a killed earlier run of the same pid: removed first.
  spawnSync('userdel', ['-r', name], { stdio: 'ignore' });
  execFileSync('useradd', ['--create-home', '--shell', '/bin/bash', name], { stdio: 'ignore' });
  if (opts.sudo) writeFileSync(sudoers, `${name} ALL=(ALL) NOPASSWD:ALL\n`, { mode: 0o440 });
  const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }).trim());
  return {
    name,
    uid,
    gid,
    wrap: (root) => wrapAsUser(name, root),
    remove() {
      rmSync(sudoers, { force: true });
      // userdel refuses while a process of the user is still exiting, or while another test
      // run holds the lock on /etc/passwd: tried again, bounded, and a user left is an error.
      let why = '';
      for (let i = 0; i < 20; i++) {
        spawnSync('pkill', ['-KILL', '-u', String(uid)], { stdio: 'ignore' });
        const r = spawnSync('userdel', ['-r', name], { encoding: 'utf8', timeout: 10000 });
        if (spawnSync('id', ['-u', name], { stdio: 'ignore' }).status !== 0) return;
        why = (r.stderr ?? '').trim();
        spawnSync('sleep', ['0.25']);
      }
      throw new Error(`test user ${name} could not be removed: ${why}`);
    },
  };
}
