/**
 * What the root side takes from less privileged users: cgroup requests of any shape, files
 * they can replace (a link, a FIFO, a huge file), and ledger lines counted in bytes.
 */
import { afterAll, describe, expect, test } from '@jest/globals';
import net from 'node:net';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  lchownSync,
  mkdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { parseCgroupRequest } from '../../../src/rootd/cgroups.js';
import { keepLedgerCopy } from '../../../src/rootd/ledger-server.js';
import { clientOf } from '../../../src/rootd/access.js';
import { stateDir } from '../../../src/rootd/protocol.js';
import { teardown } from '../../../src/rootd/teardown.js';
import { readUserFile, UserFileRefused } from '../../../src/platform/user-file.js';
import { tempDir } from '../../harness/tmp.js';

const dirs: string[] = [];
function tmp(): string {
  const d = tempDir('cordon-rootd-');
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('cgroup requests', () => {
  test.each([
    'null',
    '42',
    '"join"',
    '[]',
    '{}',
    '{"op":"join"}',
    '{"op":"join","pid":"12"}',
    '{"op":"join","pid":1}',
    '{"op":"x"}',
    '{',
  ])('%s is refused with a reason, never thrown', (line) => {
    expect(parseCgroupRequest(line)).toEqual({ error: expect.any(String) });
  });

  test('join with a pid, and remove, are read; nothing else in them', () => {
    expect(parseCgroupRequest('{"op":"join","pid":1234,"x":1}')).toEqual({ op: 'join', pid: 1234 });
    expect(parseCgroupRequest('{"op":"remove"}')).toEqual({ op: 'remove' });
  });
});

describe('files a user can replace', () => {
  test('a regular file is read; a link, a FIFO, a device and a large file are refused without blocking', () => {
    const d = tmp();
    writeFileSync(join(d, 'pid'), '4242\n');
    expect(readUserFile(join(d, 'pid'), 64)).toBe('4242\n');
    symlinkSync(join(d, 'pid'), join(d, 'link'));
    expect(() => readUserFile(join(d, 'link'), 64)).toThrow(UserFileRefused);
    execFileSync('mkfifo', [join(d, 'fifo')]);
    expect(() => readUserFile(join(d, 'fifo'), 64)).toThrow(/not a regular file/);
    expect(() => readUserFile('/dev/zero', 64)).toThrow(/not a regular file/);
    writeFileSync(join(d, 'big'), 'x'.repeat(65));
    expect(() => readUserFile(join(d, 'big'), 64)).toThrow(/larger than 64 bytes/);
    expect(() => readUserFile(join(d, 'missing'), 64)).toThrow(/ENOENT/);
  });

  // Ownership needs root: the tests run as root (CI too).
  (process.getuid?.() === 0 ? test : test.skip)(
    "a link above the file, in a folder another user can write, does not lead root into root's folders; one in a folder only root writes is followed",
    () => {
      const base = tmp();
      chmodSync(base, 0o755);
      // A folder of root's the user cannot read, holding a file named like the one root reads.
      const secret = join(base, 'root-only');
      mkdirSync(secret, { mode: 0o700 });
      writeFileSync(join(secret, 'agent.pid'), '1\n', { mode: 0o600 });
      // The user's RUNNER_TEMP: it makes `cordon` there a link to root's folder.
      const runnerTemp = join(base, 'runner-temp');
      mkdirSync(runnerTemp);
      chownSync(runnerTemp, 61999, 61999);
      symlinkSync(secret, join(runnerTemp, 'cordon'));
      lchownSync(join(runnerTemp, 'cordon'), 61999, 61999);
      expect(() => readUserFile(join(runnerTemp, 'cordon', 'agent.pid'), 64)).toThrow(
        /cordon is a symbolic link in a directory another user than root can write/,
      );
      // Relative, or in a folder everyone may write (sticky, as /tmp): refused as well.
      symlinkSync('../root-only', join(runnerTemp, 'rel'));
      expect(() => readUserFile(join(runnerTemp, 'rel', 'agent.pid'), 64)).toThrow(UserFileRefused);
      const shared = join(base, 'shared');
      mkdirSync(shared);
      chmodSync(shared, 0o1777);
      symlinkSync(secret, join(shared, 'cordon'));
      expect(() => readUserFile(join(shared, 'cordon', 'agent.pid'), 64)).toThrow(UserFileRefused);
      // Root's own link, in a folder only root writes, is followed (absolute and relative).
      symlinkSync(secret, join(base, 'cordon'));
      expect(readUserFile(join(base, 'cordon', 'agent.pid'), 64)).toBe('1\n');
      symlinkSync('root-only', join(base, 'rel'));
      expect(readUserFile(join(base, 'rel', 'agent.pid'), 64)).toBe('1\n');
      // Through a real folder of the user's, the file itself is read.
      writeFileSync(join(runnerTemp, 'agent.pid'), '4242\n');
      expect(readUserFile(join(runnerTemp, '.', 'agent.pid'), 64)).toBe('4242\n');
    },
  );
});

describe('the fence id', () => {
  test('an id that would lead the state directory out of /run/cordon is refused before root removes anything', () => {
    const victim = tmp();
    writeFileSync(join(victim, 'kept'), 'x');
    for (const id of [`x/../../..${victim}`, '..', 'a.b', '', 'a/b', 'x'.repeat(65)])
      expect(() => stateDir(id)).toThrow(/not a fence id/);
    expect(() => teardown(`x/../../..${victim}`)).toThrow(/not a fence id/);
    expect(readFileSync(join(victim, 'kept'), 'utf8')).toBe('x');
    expect(stateDir('0123456789abcdef')).toBe('/run/cordon/egress-0123456789abcdef');
    expect(stateDir(`own${process.pid}`)).toBe(`/run/cordon/egress-own${process.pid}`);
  });
});

describe('the client', () => {
  test('the config names it; else sudo; else root alone', () => {
    const gid = (uid: number): number => uid + 1;
    expect(clientOf({ clientUid: 1001 }, { SUDO_UID: '7' }, gid)).toEqual({ uid: 1001, gid: 1002 });
    expect(clientOf({}, { SUDO_UID: '7' }, gid)).toEqual({ uid: 7, gid: 8 });
    expect(clientOf({}, {}, () => undefined)).toEqual({ uid: 0, gid: 0 });
  });
});

describe('the ledger copy', () => {
  const send = (sock: string, data: Buffer): Promise<void> =>
    new Promise((resolve) => {
      const c = net.connect(sock, () => c.end(data));
      c.on('error', () => resolve());
      c.on('close', () => resolve());
    });

  test('limits are bytes: a line of multi-byte characters over the line cap is dropped, the total caps bytes', async () => {
    const d = tmp();
    const logged: string[] = [];
    const stop = await keepLedgerCopy(d, { uid: 0, gid: 0 }, (l) => logged.push(l), {
      line: 1000,
      total: 3000,
    });
    const sock = join(d, 'ledger.sock');
    expect(statSync(sock).mode & 0o777).toBe(0o600);
    expect(statSync(join(d, 'ledger.jsonl')).mode & 0o777).toBe(0o640);
    // 400 characters, 1200 bytes.
    await send(sock, Buffer.from('€'.repeat(400) + '\n'));
    expect(readFileSync(join(d, 'ledger.jsonl'), 'utf8')).toBe('');
    expect(logged.join('\n')).toContain('longer than 1000 bytes');
    // 300 characters, 900 bytes each: the third passes 3000 bytes.
    for (let i = 0; i < 4; i++) await send(sock, Buffer.from('€'.repeat(300) + '\n'));
    const copy = readFileSync(join(d, 'ledger.jsonl'));
    expect(
      copy
        .toString('utf8')
        .split('\n')
        .filter((l) => l.startsWith('€')),
    ).toHaveLength(3);
    expect(copy.toString('utf8')).toContain('copy full');
    stop();
  });

  test('a character split across two writes is joined again', async () => {
    const d = tmp();
    const stop = await keepLedgerCopy(d, { uid: 0, gid: 0 }, () => undefined);
    const sock = join(d, 'ledger.sock');
    const bytes = Buffer.from('{"a":"€"}\n');
    await new Promise<void>((resolve) => {
      const c = net.connect(sock, () => {
        c.write(bytes.subarray(0, 7));
        setTimeout(() => c.end(bytes.subarray(7)), 50);
      });
      c.on('close', () => resolve());
    });
    expect(readFileSync(join(d, 'ledger.jsonl'), 'utf8')).toBe('{"a":"€"}\n');
    stop();
  });
});
