import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LockdownBackup } from '../../../src/fence/lockdown.js';
import { allowLauncher, copyLauncher, notRootOnly, tryCopyLauncher } from '../../../src/rootd/launcher.js';
import { tempDir } from '../../harness/tmp.js';

const backup = (): LockdownBackup => ({ sudoers: [], groupsLeft: [] });

test('root-only means root-owned and not group/other-writable all the way up, never a link', () => {
  expect(notRootOnly('/usr/bin')).toBeUndefined();
  expect(notRootOnly('/tmp')).toMatch(/\/tmp is writable by group or others/);
});

test('a state directory under a world-writable one is refused, and nothing is left', () => {
  const state = tempDir('cordon-launch-');
  const agentJs = join(state, 'agent.js');
  writeFileSync(agentJs, '');
  const lines: string[] = [];
  const o = { dir: state, agentJs, node: process.execPath };
  expect(() => copyLauncher(o)).toThrow(/not root's alone: .*writable by group or others/);
  mkdirSync(join(state, 'again'));
  expect(tryCopyLauncher({ ...o, dir: join(state, 'again') }, (l) => lines.push(l))).toBeUndefined();
  expect(lines[0]).toMatch(/run's launcher is not offered/);
  expect(existsSync(join(state, 'again', 'launch'))).toBe(false);
});

test('a user name that could not stand in a sudoers rule is refused, and no rule is written', () => {
  const sudoers = tempDir('cordon-sudoers-');
  const b = backup();
  const o = { user: 'a ALL=(ALL) ALL', id: 'x', sudoersDir: sudoers };
  expect(() => allowLauncher(o, { node: process.execPath, program: '/nonexistent' }, b)).toThrow(
    /cannot stand in a sudoers rule/,
  );
  expect(readdirSync(sudoers)).toEqual([]);
  expect(b.launcher).toBeUndefined();
});
