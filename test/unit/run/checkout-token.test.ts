/**
 * withholdCheckoutToken against the layouts actions/checkout leaves and against an included
 * file run must not edit (someone else's, or a link): the header is out of every file the
 * command could read it from, or the include is taken out, and everything goes back.
 */
import { describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { chownSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withholdCheckoutToken } from '../../../src/actions/run/home.js';
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

  const root = process.getuid?.() === 0;
  (root ? test : test.skip)(
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
});
