/**
 * The agents' home base, /run/cordon-home (src/identity/user.ts): made by the first agent
 * that needs it, with the mark of a shared root (the sticky bit: 1755), and removed by
 * whichever agent's removal leaves it empty. Only the agent that made it used to remove it:
 * when it ended first, while another agent's HOME was there (two jobs on one runner), the
 * base was left, empty, on the machine. Each case runs in a private mount namespace of its
 * own with a fresh /run (unshare, a tmpfs), never on the host's /run/cordon-home; the users
 * are real (/etc/passwd is the host's) and removed however the case ends.
 */
import { expect, test } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { printed, runOnFreshRun } from '../../harness/fresh-run.js';
import { DEFAULT_HOME_BASE, privilegedExec, sweepAndRemove } from '../../../src/identity/user.js';

const root = process.getuid?.() === 0;
if (!root && process.env.CI === 'true') throw new Error('home-base.test.ts needs root in CI');
const maybe = root ? test : test.skip;

/**
 * Runs `body` (a module's text, with `u`: src/identity/user.ts, `exec`: its root exec,
 * `make()`: a new agent user under /run/cordon-home, `fs`: node:fs, and `base()`: what
 * /run/cordon-home is now) on a fresh /run in a private mount namespace; returns what it
 * printed. Every user it made is removed here if the body did not remove it.
 */
function onFreshRun(body: string): unknown {
  const src = JSON.stringify(join(process.cwd(), 'src/identity/user.ts'));
  const script = `const u = await import(${src});
    const fs = await import('node:fs');
    const exec = u.privilegedExec('root');
    const make = () => {
      const a = u.createAgentUser(exec);
      process.stderr.write('MADE ' + a.name + '\\n');
      return a;
    };
    const base = () => {
      if (!fs.existsSync('/run/cordon-home')) return 'gone';
      const mode = (fs.statSync('/run/cordon-home').mode & 0o7777).toString(8);
      return mode + ':' + (fs.readdirSync('/run/cordon-home').length || 'empty');
    };
    ${body}
    process.exit(0);`;
  const r = runOnFreshRun(script, { timeoutMs: 60000 });
  const exec = privilegedExec('root');
  for (const [, name] of (r.stderr ?? '').matchAll(/^MADE (cordon-agent-[0-9a-f]{6})$/gm)) {
    if (readFileSync('/etc/passwd', 'utf8').includes(`\n${name}:`))
      sweepAndRemove(exec, { name, home: join(DEFAULT_HOME_BASE, name) });
  }
  return printed(r);
}

maybe(
  'two agents overlap and the one that made /run/cordon-home is removed first: the other removes it when it is removed',
  () => {
    expect(
      onFreshRun(`const a = make();
        const b = make();
        u.sweepAndRemove(exec, a);
        const between = base();
        u.sweepAndRemove(exec, b);
        console.log(JSON.stringify([between, base()]));`),
    ).toEqual(['1755:1', 'gone']);
  },
  70000,
);

maybe(
  '/run/cordon-home made by an agent is root-owned 1755: the agent reaches and writes its own HOME through it, and cannot write in it',
  () => {
    expect(
      onFreshRun(`const a = make();
        const st = fs.statSync('/run/cordon-home');
        const [cmd, ...args] = u.asAgentArgv(a, 'root', ['sh', '-c',
          'touch "$0/x" && ls -d "$0" >/dev/null && if touch /run/cordon-home/y 2>/dev/null; then echo wrote-base; else echo home-only; fi',
          a.home]);
        const r = (await import('node:child_process')).spawnSync(cmd, args, { encoding: 'utf8', timeout: 10000 });
        u.sweepAndRemove(exec, a);
        console.log(JSON.stringify([st.uid, (st.mode & 0o7777).toString(8), r.stdout.trim(), base()]));`),
    ).toEqual([0, '1755', 'home-only', 'gone']);
  },
  70000,
);

maybe(
  'a /run/cordon-home no agent made stays when the agents in it are removed, empty, 0755, as it was',
  () => {
    expect(
      onFreshRun(`fs.mkdirSync('/run/cordon-home', { mode: 0o755 });
        const a = make();
        const b = make();
        u.sweepAndRemove(exec, b);
        u.sweepAndRemove(exec, a);
        console.log(JSON.stringify(base()));`),
    ).toEqual('755:empty');
  },
  70000,
);
