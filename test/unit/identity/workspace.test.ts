import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, lstatSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  asAgentArgv,
  createAgentUser,
  privilegedExec,
  sweepAndRemove,
  type AgentUser,
} from '../../../src/identity/user.js';
import { pinWorkspace, unpin } from '../../../src/identity/pinned.js';
import { lendWorkspace, type HandOverStrategy } from '../../../src/identity/workspace.js';
import { tempDir } from '../../harness/tmp.js';

const exec = privilegedExec('root');
const RUNNER = { uid: 4242, gid: 4242 };
let base: string;
let agent: AgentUser;
let work: string;

const asAgent = (script: string, cwd: string) => {
  const [cmd, ...args] = asAgentArgv(agent, 'root', ['sh', '-c', script]);
  return spawnSync(cmd, args, {
    cwd,
    encoding: 'utf8',
    timeout: 10_000,
    env: { PATH: process.env.PATH, HOME: agent.home },
  });
};

/** Every path under `dir` that is not owned by `uid`:`gid` (bounded depth). */
function notOwnedBy(dir: string, ids: { uid: number; gid: number }, depth = 0): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = lstatSync(p);
    if (st.uid !== ids.uid || st.gid !== ids.gid) out.push(p);
    if (st.isDirectory() && depth < 8) out.push(...notOwnedBy(p, ids, depth + 1));
  }
  return out;
}

beforeAll(() => {
  base = tempDir('cordon-home-');
  work = tempDir('cordon-ws-');
  chmodSync(work, 0o755); // as a runner's _work is: others may pass through
  agent = createAgentUser(exec, base);
});

afterAll(() => {
  sweepAndRemove(exec, agent);
  rmSync(base, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});

describe.each<HandOverStrategy>(['idmap', 'chown'])('workspace lent by %s', (strategy) => {
  let ws: string;
  beforeEach(() => {
    ws = join(work, strategy);
    mkdirSync(join(ws, 'src'), { recursive: true });
    writeFileSync(join(ws, 'src', 'a.txt'), 'a\n', { mode: 0o644 });
    for (const p of [ws, join(ws, 'src'), join(ws, 'src', 'a.txt')]) chownSync(p, RUNNER.uid, RUNNER.gid);
  });

  test("the agent creates and changes files; afterwards every file is the runner's again", () => {
    expect(asAgent('echo x > new.txt', ws).status).not.toBe(0);
    const pinned = pinWorkspace(ws, RUNNER.uid);
    const loan = lendWorkspace({ dir: pinned, agent, strategy });
    expect(loan.strategy).toBe(strategy);
    try {
      const r = asAgent(
        'echo b >> src/a.txt && mkdir -p out/deep && echo c > out/deep/c.txt && ln -s /etc/shadow out/link && git init -q repo && git -C repo status --porcelain',
        ws,
      );
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
    } finally {
      loan.giveBack();
      unpin(pinned);
    }
    expect(notOwnedBy(ws, RUNNER)).toEqual([]);
    expect(lstatSync(ws).uid).toBe(RUNNER.uid);
    // the planted link's target was not handed to anyone
    expect(lstatSync('/etc/shadow').uid).toBe(0);
    expect(asAgent('echo x > again.txt', ws).status).not.toBe(0);
  });

  test("a file of someone else's in the workspace is never handed to the agent", () => {
    const theirs = join(ws, 'root-file');
    writeFileSync(theirs, 'r\n', { mode: 0o644 });
    chownSync(theirs, 0, 0);
    const pinned = pinWorkspace(ws, RUNNER.uid);
    const loan = lendWorkspace({ dir: pinned, agent, strategy });
    try {
      expect(asAgent('echo x >> root-file', ws).status).not.toBe(0);
      expect(lstatSync(theirs).uid).not.toBe(agent.uid);
    } finally {
      loan.giveBack();
      unpin(pinned);
    }
    expect(lstatSync(theirs).uid).toBe(0);
  });
});
