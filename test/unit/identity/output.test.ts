import { rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { readAgentOutput } from '../../../src/identity/output.js';
import { tempDir } from '../../harness/tmp.js';

let dir: string;
beforeAll(() => {
  dir = tempDir('cordon-out-');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const write = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

test('name=value lines and name<<DELIM blocks become outputs; a missing file is none', () => {
  const p = write('ok', 'a=1\r\nb-2_x=has=equals\n\nnotes<<EOF\nline one\nline two\nEOF\nempty=\n');
  expect(Object.fromEntries(readAgentOutput(p))).toEqual({
    a: '1',
    'b-2_x': 'has=equals',
    notes: 'line one\nline two',
    empty: '',
  });
  expect(readAgentOutput(join(dir, 'absent')).size).toBe(0);
});

test('a bad name, a line with no form and an unterminated block are rejected by line, without the value', () => {
  expect(() => readAgentOutput(write('n1', 'ok=1\n9lives=secret-value\n'))).toThrow(
    /line 2 .*name starts with a letter/,
  );
  expect(() => readAgentOutput(write('n2', 'LD PRELOAD=x\n'))).toThrow(/line 1/);
  expect(() => readAgentOutput(write('n3', 'ok=1\njust words\n'))).toThrow(/line 2 .*neither/);
  expect(() => readAgentOutput(write('n4', 'a<<EOF\nsecret-value\n'))).toThrow(/line 1 .*delimiter/);
  try {
    readAgentOutput(write('n5', 'x.y=secret-value\n'));
  } catch (e) {
    expect(String(e)).not.toContain('secret-value');
  }
});

test('size and entry count are bounded', () => {
  expect(() =>
    readAgentOutput(write('big', 'a=' + 'x'.repeat(100) + '\n'), { maxBytes: 50, maxEntries: 10 }),
  ).toThrow(/bytes/);
  const many = Array.from({ length: 11 }, (_, i) => `k${i}=v`).join('\n');
  expect(() => readAgentOutput(write('many', many), { maxBytes: 1000, maxEntries: 10 })).toThrow(
    /line 11 .*more than 10/,
  );
});

test('a symbolic link or a FIFO is refused', () => {
  const target = write('target', 'a=1\n');
  const link = join(dir, 'link');
  symlinkSync(target, link);
  expect(() => readAgentOutput(link)).toThrow(/symbolic link/);
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  expect(() => readAgentOutput(fifo)).toThrow(/not a regular file/);
});

test("with an owner, a file of someone else's is refused (a directory on the way swapped for a link)", () => {
  const sub = join(dir, 'elsewhere');
  execFileSync('mkdir', [sub]);
  writeFileSync(join(sub, 'output'), 'secret=root-only\n');
  const home = join(dir, 'home');
  execFileSync('mkdir', [home]);
  symlinkSync(sub, join(home, '.cordon'));
  // root's file, read for an agent of uid 61001: refused, the value never shown.
  expect(() => readAgentOutput(join(home, '.cordon', 'output'), undefined, 61001)).toThrow(
    /belongs to uid 0, not to the agent/,
  );
  expect(readAgentOutput(join(home, '.cordon', 'output'), undefined, 0).get('secret')).toBe('root-only');
});
