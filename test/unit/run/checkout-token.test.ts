/**
 * withholdCheckoutToken against the layouts actions/checkout leaves and against an included
 * file run must not edit (someone else's, or a link): the header is out of every file the
 * command could read it from, or the include is taken out, and everything goes back.
 */
import { describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { withholdCheckoutToken } from '../../../src/actions/run/checkout-token.js';
import { tempDir } from '../../harness/tmp.js';

const HEADER = `AUTHORIZATION: basic ${Buffer.from('x-access-token:ghs_unittoken00000000000000000000000').toString('base64')}`;

function repo(): { dir: string; ws: string } {
  const dir = tempDir('cordon-checkout-token-');
  const ws = join(dir, 'ws');
  execFileSync('git', ['init', '-q', ws]);
  return { dir, ws };
}

const get = (ws: string, key: string): string =>
  execFileSync('git', ['-C', ws, 'config', '--get-all', key], { encoding: 'utf8' }).trim();

describe('withholdCheckoutToken', () => {
  test('checkout v6: the header leaves the included file, the include stays, both put back byte for byte', () => {
    const { dir, ws } = repo();
    const creds = join(dir, 'git-credentials-1.config');
    writeFileSync(creds, `[http "https://github.com/"]\n\textraheader = ${HEADER}\n`, { mode: 0o644 });
    execFileSync('git', ['-C', ws, 'config', `includeIf.gitdir:${ws}/.git.path`, creds]);
    const configBefore = readFileSync(join(ws, '.git', 'config'), 'utf8');
    const credsBefore = readFileSync(creds, 'utf8');
    const token = withholdCheckoutToken(ws);
    expect(token?.withheld).toEqual([`${creds}:http.https://github.com/.extraheader`]);
    expect(readFileSync(creds, 'utf8')).not.toContain('basic');
    expect(readFileSync(join(ws, '.git', 'config'), 'utf8')).toBe(configBefore);
    expect(token?.secrets).toContain(HEADER);
    expect(token?.restore()).toBe(true);
    expect(readFileSync(creds, 'utf8')).toBe(credsBefore);
    expect(get(ws, 'http.https://github.com/.extraheader')).toBe(HEADER);
  });

  test('put back as the file was, byte for byte; after the command changed the file, written into it, read by git the same', () => {
    const { ws } = repo();
    const config = join(ws, '.git', 'config');
    // Two headers, one with the characters git config quotes, in a subsection with a dot.
    const ODD = 'AUTHORIZATION: bearer "ghs_odd\\token\ttab"0000000000';
    execFileSync('git', ['-C', ws, 'config', '--add', 'http.https://github.com/.extraheader', HEADER]);
    execFileSync('git', ['-C', ws, 'config', '--add', 'http.https://ghe.example.com/.extraheader', ODD]);
    const before = readFileSync(config, 'utf8');
    const first = withholdCheckoutToken(ws);
    expect(readFileSync(config, 'utf8')).not.toContain('AUTHORIZATION');
    expect(first?.restore()).toBe(true);
    expect(readFileSync(config, 'utf8')).toBe(before);

    const second = withholdCheckoutToken(ws);
    // The command changed the file meanwhile (a setting of its own, and a header of its own).
    execFileSync('git', ['-C', ws, 'config', 'core.editor', 'vi']);
    execFileSync('git', [
      '-C',
      ws,
      'config',
      '--add',
      'http.https://github.com/.extraheader',
      'AUTHORIZATION: basic eA==',
    ]);
    expect(second?.restore()).toBe(true);
    expect(get(ws, 'http.https://github.com/.extraheader')).toBe(HEADER);
    expect(get(ws, 'http.https://ghe.example.com/.extraheader')).toBe(ODD);
    expect(get(ws, 'core.editor')).toBe('vi');
  });

  // Needs root (chown); in CI it always runs, and fails loudly without root.
  const runs = process.getuid?.() === 0 || process.env.CI === 'true';
  (runs ? test : test.skip)(
    "an included file of someone else's is not edited: its include is taken out instead, and put back",
    () => {
      const { dir, ws } = repo();
      const creds = join(dir, 'other.config');
      writeFileSync(creds, `[http "https://github.com/"]\n\textraheader = ${HEADER}\n`, { mode: 0o644 });
      chownSync(creds, 65534, 65534);
      const link = join(dir, 'link.config');
      symlinkSync(creds, link);
      execFileSync('git', ['-C', ws, 'config', 'include.path', link]);
      const credsBefore = readFileSync(creds, 'utf8');
      const token = withholdCheckoutToken(ws);
      expect(token?.withheld).toEqual(['.git/config:include.path']);
      expect(readFileSync(creds, 'utf8')).toBe(credsBefore);
      expect(() => get(ws, 'include.path')).toThrow();
      expect(token?.restore()).toBe(true);
      expect(get(ws, 'include.path')).toBe(link);
    },
  );
  test('hostile: includes naming a FIFO, /dev/zero and a huge file are skipped without blocking; a real one is still found', () => {
    const { dir, ws } = repo();
    const fifo = join(dir, 'pipe');
    execFileSync('mkfifo', [fifo]);
    const huge = join(dir, 'huge.config');
    writeFileSync(
      huge,
      `[http "https://github.com/"]\n\textraheader = ${HEADER}\n`.padEnd(2 * 1024 * 1024, '#'),
    );
    const creds = join(dir, 'git-credentials-2.config');
    writeFileSync(creds, `[http "https://github.com/"]\n\textraheader = ${HEADER}\n`, { mode: 0o644 });
    for (const [name, target] of [
      ['a', fifo],
      ['b', '/dev/zero'],
      ['c', huge],
      ['d', creds],
    ]) {
      mkdirSync(join(ws, '.git', 'modules', name), { recursive: true });
      writeFileSync(join(ws, '.git', 'modules', name, 'config'), `[include]\n\tpath = ${target}\n`);
    }
    const token = withholdCheckoutToken(ws);
    expect(token?.withheld).toEqual([`${creds}:http.https://github.com/.extraheader`]);
    expect(token?.restore()).toBe(true);
  });

  // A second name for .git/config's file (a hard link the command made while it owned the
  // workspace, its owner the runner's again once handed back) must not receive the token.
  test.each([
    ['unchanged', false],
    ['changed by the command', true],
  ])(
    'hostile: a hard link to .git/config, the file %s, gets no token when it is put back',
    (_what, changed) => {
      const { ws } = repo();
      const config = join(ws, '.git', 'config');
      execFileSync('git', ['-C', ws, 'config', '--add', 'http.https://github.com/.extraheader', HEADER]);
      const token = withholdCheckoutToken(ws);
      if (changed) execFileSync('git', ['-C', ws, 'config', 'core.editor', 'vi']);
      const leak = join(ws, 'leak.txt');
      linkSync(config, leak);
      expect(token?.restore()).toBe(true);
      expect(readFileSync(leak, 'utf8')).not.toContain('basic');
      expect(get(ws, 'http.https://github.com/.extraheader')).toBe(HEADER);
      expect(statSync(config).nlink).toBe(1);
    },
  );

  test('hostile: .git/config made a FIFO is not opened (nothing blocks) and gets no token', () => {
    const { ws } = repo();
    const config = join(ws, '.git', 'config');
    execFileSync('git', ['-C', ws, 'config', '--add', 'http.https://github.com/.extraheader', HEADER]);
    const token = withholdCheckoutToken(ws);
    rmSync(config);
    execFileSync('mkfifo', [config]);
    expect(token?.restore()).toBe(false);
    expect(lstatSync(config).isFIFO()).toBe(true);
  });

  test('put back with the mode the file had', () => {
    const { ws } = repo();
    const config = join(ws, '.git', 'config');
    execFileSync('git', ['-C', ws, 'config', '--add', 'http.https://github.com/.extraheader', HEADER]);
    chmodSync(config, 0o600);
    const token = withholdCheckoutToken(ws);
    execFileSync('git', ['-C', ws, 'config', 'core.editor', 'vi']);
    chmodSync(config, 0o600);
    expect(token?.restore()).toBe(true);
    expect(statSync(config).mode & 0o777).toBe(0o600);
    expect(readdirSync(join(ws, '.git')).filter((n) => n.includes('cordon'))).toEqual([]);
  });

  test('hostile: a submodule folder swapped for a link while the command ran gets no token written through it', () => {
    const { dir, ws } = repo();
    const sub = join(ws, '.git', 'modules', 'lib');
    mkdirSync(sub, { recursive: true });
    writeFileSync(join(sub, 'config'), `[http "https://github.com/"]\n\textraheader = ${HEADER}\n`);
    const token = withholdCheckoutToken(ws);
    expect(token?.withheld).toEqual(['.git/modules/lib/config:http.https://github.com/.extraheader']);
    // The command moves the folder away and puts a link to a folder of its own in its place.
    const elsewhere = join(dir, 'elsewhere');
    mkdirSync(elsewhere);
    writeFileSync(join(elsewhere, 'config'), '[core]\n');
    renameSync(sub, join(dir, 'moved'));
    symlinkSync(elsewhere, sub);
    expect(token?.restore()).toBe(false);
    expect(readFileSync(join(elsewhere, 'config'), 'utf8')).toBe('[core]\n');
  });

  test('a take-out that fails part way puts back what it took and fails, naming no value', () => {
    const { ws } = repo();
    execFileSync('git', ['-C', ws, 'config', 'http.https://github.com/.extraheader', HEADER]);
    const sub = join(ws, '.git', 'modules', 'lib');
    mkdirSync(sub, { recursive: true });
    writeFileSync(join(sub, 'config'), `[http "https://github.com/"]\n\textraheader = ${HEADER}\n`);
    // A stale lock: git cannot write the submodule's config.
    writeFileSync(join(sub, 'config.lock'), '');
    let error = '';
    try {
      withholdCheckoutToken(ws);
    } catch (e) {
      error = String(e);
    }
    expect(error).not.toBe('');
    expect(error).not.toContain('ghs_unittoken');
    expect(get(ws, 'http.https://github.com/.extraheader')).toBe(HEADER);
    expect(readFileSync(join(sub, 'config'), 'utf8')).toContain(HEADER);
  });
});
