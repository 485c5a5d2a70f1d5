/** RUNNER_TEMP closed to other users while the agent's own user runs (runner-temp.ts). */
import { describe, expect, test } from '@jest/globals';
import { chmodSync, existsSync, mkdirSync, renameSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { closeRunnerTemp, recoverRunnerTemp } from '../../../src/actions/run/runner-temp.js';
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

describe('recoverRunnerTemp', () => {
  const closedAndKilled = (m: number): { root: string; temp: string } => {
    const root = tempDir('cordon-rt-');
    const temp = join(root, 'runner-temp');
    mkdirSync(temp);
    chmodSync(temp, m);
    // The step is killed after closing it: reopen() never runs.
    expect(closeRunnerTemp(temp, join(root, 'workspace'), say()).was).toBe(m.toString(8));
    expect(mode(temp)).toBe(m & ~0o007);
    return { root, temp };
  };
  const record = (temp: string): string => join(temp, 'cordon', 'runner-temp-mode');

  test('a run step killed with RUNNER_TEMP closed: the next step puts the exact mode back, says so, and the record goes', () => {
    const { temp } = closedAndKilled(0o2775);
    expect(mode(join(temp, 'cordon')) & 0o777).toBe(0o700);
    expect(mode(record(temp))).toBe(0o600);
    const s = say();
    expect(recoverRunnerTemp(temp, s, 'run')).toBe('2775');
    expect(mode(temp)).toBe(0o2775);
    expect(existsSync(record(temp))).toBe(false);
    expect(s.lines).toEqual([
      "info run: RUNNER_TEMP's mode put back to 2775 (a run step was ended before it could put it back)",
    ]);
    // Once only: nothing recorded is left.
    expect(recoverRunnerTemp(temp, s, 'start')).toBeUndefined();
    expect(s.lines).toHaveLength(1);
  });

  test('put back by the step itself: no record left, nothing for the next step to do', () => {
    const root = tempDir('cordon-rt-');
    const temp = join(root, 'runner-temp');
    mkdirSync(temp);
    chmodSync(temp, 0o755);
    closeRunnerTemp(temp, join(root, 'workspace'), say()).reopen();
    expect(existsSync(record(temp))).toBe(false);
    const s = say();
    expect(recoverRunnerTemp(temp, s, 'run')).toBeUndefined();
    expect(mode(temp)).toBe(0o755);
    expect(s.lines).toEqual([]);
  });

  test('a mode changed since, or another directory in its place: left as it is, said so, the record removed', () => {
    const changed = closedAndKilled(0o755);
    chmodSync(changed.temp, 0o711);
    const s = say();
    expect(recoverRunnerTemp(changed.temp, s, 'start')).toBeUndefined();
    expect(mode(changed.temp)).toBe(0o711);
    expect(existsSync(record(changed.temp))).toBe(false);
    expect(s.lines[0]).toMatch(/^info start: .*mode changed since \(711, run set 750\); left as it is$/);

    const swapped = closedAndKilled(0o755);
    renameSync(swapped.temp, join(swapped.root, 'old'));
    mkdirSync(swapped.temp);
    chmodSync(swapped.temp, 0o750);
    renameSync(join(swapped.root, 'old', 'cordon'), join(swapped.temp, 'cordon'));
    expect(recoverRunnerTemp(swapped.temp, s, 'run')).toBeUndefined();
    expect(mode(swapped.temp)).toBe(0o750);
    expect(existsSync(record(swapped.temp))).toBe(false);
    expect(s.lines[1]).toMatch(/another directory now/);
  });

  test('a record that is not one run wrote is removed and the mode left', () => {
    const { temp } = closedAndKilled(0o755);
    writeFileSync(record(temp), '{"dev":1,"ino":2,"was":"777","set":488}\n');
    const s = say();
    expect(recoverRunnerTemp(temp, s, 'run')).toBeUndefined();
    expect(mode(temp)).toBe(0o750);
    expect(existsSync(record(temp))).toBe(false);
    expect(s.lines[0]).toMatch(/^warning run: .* is not a record run wrote/);
  });
});
