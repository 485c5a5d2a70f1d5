/** RUNNER_TEMP closed to other users while the agent's own user runs (runner-temp.ts). */
import { describe, expect, test } from '@jest/globals';
import { chmodSync, mkdirSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { closeRunnerTemp } from '../../../src/actions/run/runner-temp.js';
import { tempDir } from '../../harness/tmp.js';

const say = () => {
  const lines: string[] = [];
  return {
    lines,
    info: (m: string) => lines.push(`info ${m}`),
    warning: (m: string) => lines.push(`warning ${m}`),
  };
};
const mode = (p: string): number => statSync(p).mode & 0o7777;

describe('closeRunnerTemp', () => {
  test("takes other users' bits off RUNNER_TEMP and puts the mode back once, saying nothing", () => {
    const root = tempDir('cordon-rt-');
    const temp = join(root, 'runner-temp');
    mkdirSync(temp);
    chmodSync(temp, 0o755);
    const s = say();
    const closed = closeRunnerTemp(temp, join(root, 'workspace'), s);
    expect(closed.was).toBe('755');
    expect(mode(temp)).toBe(0o750);
    closed.reopen();
    closed.reopen();
    expect(mode(temp)).toBe(0o755);
    expect(s.lines).toEqual([]);
  });

  test('left open, and said so, when the workspace is inside it, when it is shared (sticky) or a link', () => {
    const root = tempDir('cordon-rt-');
    const temp = join(root, 'runner-temp');
    mkdirSync(join(temp, 'ws'), { recursive: true });
    chmodSync(temp, 0o755);
    const shared = join(root, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o1777);
    symlinkSync(temp, join(root, 'link'));
    const s = say();
    expect(closeRunnerTemp(temp, join(temp, 'ws'), s).skipped).toBe('the workspace is inside RUNNER_TEMP');
    expect(closeRunnerTemp(shared, join(root, 'ws'), s).skipped).toMatch(/every user shares/);
    expect(closeRunnerTemp(join(root, 'link'), join(root, 'ws'), s).skipped).toMatch(/could not be opened/);
    expect(mode(temp)).toBe(0o755);
    expect(mode(shared)).toBe(0o1777);
    expect(s.lines).toHaveLength(3);
  });

  test('unset, or already closed to others: nothing changed, nothing said', () => {
    const root = tempDir('cordon-rt-');
    chmodSync(root, 0o700);
    const s = say();
    expect(closeRunnerTemp(undefined, '/w', s).was).toBeUndefined();
    expect(closeRunnerTemp(root, '/w', s).was).toBeUndefined();
    expect(mode(root)).toBe(0o700);
    expect(s.lines).toEqual(['info run: RUNNER_TEMP stays open to other users: RUNNER_TEMP is not set']);
  });

  test('the workspace reached through a link above RUNNER_TEMP (or RUNNER_TEMP through one) is inside it: left open', () => {
    const root = tempDir('cordon-rt-');
    const temp = join(root, 'real', 'runner-temp');
    mkdirSync(join(temp, 'ws'), { recursive: true });
    chmodSync(temp, 0o755);
    symlinkSync(join(root, 'real'), join(root, 'alias'));
    const s = say();
    const viaAlias = join(root, 'alias', 'runner-temp');
    expect(closeRunnerTemp(temp, join(viaAlias, 'ws'), s).skipped).toBe(
      'the workspace is inside RUNNER_TEMP',
    );
    expect(closeRunnerTemp(viaAlias, join(temp, 'ws/'), s).skipped).toBe(
      'the workspace is inside RUNNER_TEMP',
    );
    expect(closeRunnerTemp(temp, join(temp, 'ws', '..', '..', 'elsewhere'), s).skipped).toBeUndefined();
    expect(mode(temp)).toBe(0o750);
  });
});
