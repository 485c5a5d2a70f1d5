import {
  readFileSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
  appendFileSync,
  existsSync,
  lstatSync,
} from 'node:fs';
import { join } from 'node:path';
import { restoreFileCommands, snapshotFileCommands } from '../../../src/identity/filecmds.js';
import { tempDir } from '../../harness/tmp.js';

let dir: string;
let env: Record<string, string>;
const ORIGINAL = {
  GITHUB_ENV: 'KEEP=1\n',
  GITHUB_PATH: '/opt/tool\n',
  GITHUB_OUTPUT: 'out=1\n',
  GITHUB_STATE: '',
  GITHUB_STEP_SUMMARY: '# Summary\n',
};

beforeEach(() => {
  dir = tempDir('cordon-fc-');
  env = {};
  for (const [k, v] of Object.entries(ORIGINAL)) {
    env[k] = join(dir, k.toLowerCase());
    writeFileSync(env[k], v);
  }
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

test('lines the command appended are reverted and reported by name, never by value', () => {
  const snap = snapshotFileCommands(env);
  appendFileSync(env.GITHUB_ENV, 'LD_PRELOAD=/tmp/evil.so\nBASH_ENV<<X\nsecret-value\nX\n');
  appendFileSync(env.GITHUB_PATH, '/tmp/fake-bin\n');
  appendFileSync(env.GITHUB_OUTPUT, 'verdict=intact\n');
  appendFileSync(env.GITHUB_STATE, 'isPost=true\n');
  appendFileSync(env.GITHUB_STEP_SUMMARY, '## Record intact\n');
  const found = restoreFileCommands(snap);
  expect(found).toEqual({
    env: ['LD_PRELOAD', 'BASH_ENV'],
    path: ['/tmp/fake-bin'],
    output: ['verdict'],
    state: ['isPost'],
    summary: true,
    rewritten: [],
  });
  expect(JSON.stringify(found)).not.toContain('secret-value');
  for (const [k, v] of Object.entries(ORIGINAL)) expect(readFileSync(env[k], 'utf8')).toBe(v);
});

test('hostile: a name holding a secret is scrubbed whole before it is cut, so no part of a long value is shown', () => {
  const value = `file-command-secret-${'Vb42kQ'.repeat(20)}`;
  const scrub = (t: string): string => t.replaceAll(value, '***');
  const snap = snapshotFileCommands(env);
  appendFileSync(env.GITHUB_PATH, `${value}\n/opt/${value}/bin\n`);
  appendFileSync(env.GITHUB_ENV, `${value}=1\n`);
  const found = restoreFileCommands(snap, scrub);
  expect(found.path).toEqual(['***', '/opt/***/bin']);
  expect(found.env).toEqual(['***']);
  expect(JSON.stringify(found)).not.toContain(value.slice(0, 30));
  // Without the scrub the name is cut at 100 characters: the first 100 of the value.
  const again = snapshotFileCommands(env);
  appendFileSync(env.GITHUB_PATH, `${value}\n`);
  expect(restoreFileCommands(again).path).toEqual([value.slice(0, 100)]);
});

test('an untouched set reports nothing', () => {
  const found = restoreFileCommands(snapshotFileCommands(env));
  expect(found).toEqual({ env: [], path: [], output: [], state: [], summary: false, rewritten: [] });
});

test('a file rewritten, removed or swapped for a link is put back as a plain file and reported', () => {
  const snap = snapshotFileCommands(env);
  writeFileSync(env.GITHUB_ENV, 'OTHER=1\n');
  unlinkSync(env.GITHUB_OUTPUT);
  const elsewhere = join(dir, 'elsewhere');
  writeFileSync(elsewhere, 'untouched\n');
  unlinkSync(env.GITHUB_PATH);
  symlinkSync(elsewhere, env.GITHUB_PATH);
  const found = restoreFileCommands(snap);
  expect(found.rewritten.sort()).toEqual(['GITHUB_ENV', 'GITHUB_OUTPUT', 'GITHUB_PATH']);
  expect(readFileSync(env.GITHUB_ENV, 'utf8')).toBe(ORIGINAL.GITHUB_ENV);
  expect(readFileSync(env.GITHUB_OUTPUT, 'utf8')).toBe(ORIGINAL.GITHUB_OUTPUT);
  expect(lstatSync(env.GITHUB_PATH).isFile()).toBe(true);
  expect(readFileSync(env.GITHUB_PATH, 'utf8')).toBe(ORIGINAL.GITHUB_PATH);
  expect(readFileSync(elsewhere, 'utf8')).toBe('untouched\n');
});

test('a file that did not exist before and was created is removed', () => {
  unlinkSync(env.GITHUB_STATE);
  const snap = snapshotFileCommands(env);
  writeFileSync(env.GITHUB_STATE, 'x=1\n');
  expect(restoreFileCommands(snap).state).toEqual(['x']);
  expect(existsSync(env.GITHUB_STATE)).toBe(false);
});
