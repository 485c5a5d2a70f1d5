import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LockdownBackup } from '../../../src/fence/lockdown.js';
import { notRootOnly, offerLauncher, tryOfferLauncher } from '../../../src/rootd/launcher.js';
import { tempDir } from '../../harness/tmp.js';

const backup = (): LockdownBackup => ({ sudoers: [], groupsLeft: [] });

test('root-only means root-owned and not group/other-writable all the way up, never a link', () => {
  expect(notRootOnly('/usr/bin')).toBeUndefined();
  expect(notRootOnly('/tmp')).toMatch(/\/tmp is writable by group or others/);
});

test('a state directory under a world-writable one is refused, and nothing is left', () => {
  const state = tempDir('cordon-launch-');
  const sudoers = tempDir('cordon-sudoers-');
  const agentJs = join(state, 'agent.js');
  writeFileSync(agentJs, '');
  const lines: string[] = [];
  const b = backup();
  const o = { user: 'runner', dir: state, id: 'x', agentJs, node: process.execPath, sudoersDir: sudoers };
  expect(() => offerLauncher(o, backup())).toThrow(/not root's alone: .*writable by group or others/);
  mkdirSync(join(state, 'again'));
  tryOfferLauncher({ ...o, dir: join(state, 'again') }, b, (l) => lines.push(l));
  expect(lines[0]).toMatch(/run's launcher is not offered/);
  expect(b.launcher).toBeUndefined();
  expect(readdirSync(sudoers)).toEqual([]);
  expect(existsSync(join(state, 'again', 'launch'))).toBe(false);
});

test('a user name that could not stand in a sudoers rule is refused', () => {
  const o = { user: 'a ALL=(ALL) ALL', dir: '/nonexistent', id: 'x', agentJs: '', node: process.execPath };
  expect(() => offerLauncher(o, backup())).toThrow(/cannot stand in a sudoers rule/);
});
