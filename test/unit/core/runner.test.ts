import { describe, expect, test } from '@jest/globals';
import { fileCommandBlock } from '../../../src/platform/runner.js';
import { parseCommands, parseFileCommands } from '../../../src/devkit/run-action.js';

describe('runner file and workflow commands', () => {
  test('file-command blocks round-trip multi-line values, and refuse the delimiter', () => {
    const text = fileCommandBlock('a', 'line1\nline2') + fileCommandBlock('b', '') + 'c=plain\n';
    expect(parseFileCommands(text)).toEqual({ a: 'line1\nline2', b: '', c: 'plain' });
  });

  test('workflow commands are parsed with escaped properties and data', () => {
    const cmds = parseCommands('hello\n::error title=a%3Ab%2Cc,line=3::x%0Ay%25\n::add-mask::abcd\n');
    expect(cmds).toEqual([
      { command: 'error', properties: { title: 'a:b,c', line: '3' }, message: 'x\ny%' },
      { command: 'add-mask', properties: {}, message: 'abcd' },
    ]);
  });

  test('a lone CR ends a line for the commands, as the runner reads them', () => {
    expect(parseCommands('progress 50%\r::add-mask::after-cr\r\n::warning::w\n')).toEqual([
      { command: 'add-mask', properties: {}, message: 'after-cr' },
      { command: 'warning', properties: {}, message: 'w' },
    ]);
  });
});
