/**
 * docs/egress.md's claims about the tamper watch and the re-close, attacked for real against
 * the bundled daemon in a "runner" namespace (see egress-topology.ts), as the runner user
 * (an unprivileged uid, the fence's client: its control socket is this user's) and as the
 * agent's own user (a uid of the agents' range):
 *
 * - "It never restores access that was removed (a deleted element stays deleted), never
 *   switches to audit": root deletes an element of the agent's set; the watch leaves it
 *   deleted, and neither user gets it back or the fence into audit with the rights it has
 *   (nft, the fence's files, its daemon's process, its control socket).
 * - "A connection the agent opened while the table was gone (root deleted it) has no bit
 *   either: from the re-close on, it is judged by address packet by packet": the daemon held
 *   (SIGSTOP) while root deletes the table, the agent opens a connection to an address off
 *   its list and two to one on it (port 80, a web gate port, and another), the daemon goes
 *   on and re-closes; the first's next packets are refused, the other port's go on, and the
 *   web port's, which never went through the gate, is cut too.
 *
 * Needs root, nft, ip, dig, python3, useradd and setpriv.
 */
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run, stop } from '../../src/devkit/netns.js';
import { parseDomains } from '../../src/fence/policy.js';
import { CONTROL_SOCKET, requestReport, stateDir, type DaemonState } from '../../src/rootd/protocol.js';
import {
  EVIL4,
  WEB4,
  World,
  asUid,
  connect,
  dig,
  egressSuite,
  freeAgentUid,
  startDaemon,
  type Runs,
} from './egress-topology.js';
import { tempDir } from '../harness/tmp.js';

const PYTHON = '/usr/bin/python3';
const suite = egressSuite('egress-tamper-claims', ['python3']);

/** The agent's name (on WEB4) and the runner's: the runner's list has both. */
const A = 'www.a.test';
/** A name of the agent's list too, on an address where only the echo server listens (port 80 and ECHO_PORT). */
const E = 'echo.a.test';
const ECHO4 = '203.0.113.77';

/**
 * HTTP/1.1 keep-alive connections to each `host:port` given: each asks once (`before <tag>
 * <result>`), waits (at most 20 s) for the file `go`, and asks again on the same
 * connection (`after <tag> <result>`). A result is `body` (the server answered), `empty`
 * (closed), or `error <errno name>`.
 */
const KEEP_ASKING = String.raw`
import errno, os, socket, sys, time
go, targets = sys.argv[1], sys.argv[2:]
conns = []
def result(s):
    try:
        s.sendall(b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
        d = s.recv(4096)
        return 'body' if b'hello from' in d else ('empty' if not d else 'other')
    except socket.timeout:
        return 'error timeout'
    except OSError as e:
        return 'error ' + (errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__)
for t in targets:
    host, port = t.rsplit(':', 1)
    try:
        s = socket.create_connection((host, int(port)), timeout=3)
        s.settimeout(3)
        conns.append((t, s))
        print('before', t, result(s), flush=True)
    except OSError as e:
        print('before', t, 'error', errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__, flush=True)
deadline = time.time() + 20
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.05)
for t, s in conns:
    print('after', t, result(s), flush=True)
`;

/** A port of the internet's where each chunk a connection sends is answered `hello from`, as long as it stays open. */
const ECHO_PORT = 9005;
const ECHO_SERVER = String.raw`
import socket, sys, threading
def serve(c):
    while True:
        d = c.recv(4096)
        if not d:
            return
        c.sendall(b'hello from here')
def listen(host, port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen()
    while True:
        threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
for t in sys.argv[1:]:
    h, p = t.rsplit(':', 1)
    threading.Thread(target=listen, args=(h, int(p)), daemon=True).start()
threading.Event().wait()
`;

suite('egress: the tamper watch and the re-close, attacked as the runner user and the agent', () => {
  const users = { runner: `ctcrun${process.pid % 100000}`, agent: `ctcagt${process.pid % 100000}` };
  const as = {} as Record<'runner' | 'agent', Runs>;
  const ids = { runner: [0, 0], agent: [0, 0] };
  let w: World;
  let dir: string;
  let id = '';
  let echo: ChildProcess | undefined;

  const sets = (set: string): string => w.runner.exec(['nft', 'list', 'set', 'inet', 'cordon', set]);
  const daemonPid = (): number =>
    (JSON.parse(readFileSync(join(stateDir(id), 'state.json'), 'utf8')) as Pick<DaemonState, 'pid'>).pid;
  /** Waits (at most `ms`) until `ok()`; says whether it did. */
  const until = async (ok: () => boolean, ms: number): Promise<boolean> => {
    for (const end = Date.now() + ms; Date.now() < end;) {
      if (ok()) return true;
      await new Promise((r) => setTimeout(r, 100));
    }
    return ok();
  };

  beforeAll(async () => {
    run(['useradd', '--user-group', '--no-create-home', '--shell', '/bin/sh', users.runner]);
    run([
      'useradd',
      '--uid',
      String(freeAgentUid(17)),
      '--user-group',
      '--no-create-home',
      '--shell',
      '/bin/sh',
      users.agent,
    ]);
    dir = tempDir('cordon-tamper-claims-');
    // The agent's script reads the go file here.
    chmodSync(dir, 0o755);
    w = new World('t');
    w.internet.addAddress('lo', `${ECHO4}/32`);
    await w.serve({ zone: { [E]: [{ type: 'A', value: ECHO4, ttl: 300 }] } });
    echo = w.internet.spawn([
      PYTHON,
      '-c',
      ECHO_SERVER,
      `${EVIL4}:${ECHO_PORT}`,
      `${ECHO4}:${ECHO_PORT}`,
      `${ECHO4}:80`,
    ]);
    // Listening within 1 s (the connections below show it: each is answered before the re-close).
    await new Promise((r) => setTimeout(r, 1000));
    for (const who of ['runner', 'agent'] as const) {
      const uid = Number(run(['id', '-u', users[who]]).trim());
      const gid = Number(run(['id', '-g', users[who]]).trim());
      ids[who] = [uid, gid];
      as[who] = asUid(w.runner, uid, gid);
    }
    id = await startDaemon(w, join(dir, 'config.json'), {
      id: `tamperclaims${process.pid}`,
      domains: parseDomains(`${A}\n${E}`),
      agentDomains: parseDomains(`${A}\n${E}`),
      clientUid: ids.runner[0],
    });
    expect(dig(as.agent, A).answers).toEqual([WEB4]);
    expect(dig(as.agent, E).answers).toEqual([ECHO4]);
    expect(sets('agent4')).toContain(WEB4);
  }, 60000);

  afterAll(async () => {
    await stop(echo);
    await w?.destroy(id ? [id] : []);
    for (const u of Object.values(users)) spawnSync('userdel', [u], { timeout: 15000 });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('hostile: an address root deleted from the agent’s set stays deleted, and neither the runner user nor the agent gets it back or the fence into audit', async () => {
    // The control: the agent reaches its name's address (through the web gate).
    expect(connect(as.agent, WEB4, 443).result).toBe('open');
    w.runner.exec(['nft', 'delete', 'element', 'inet', 'cordon', 'agent4', `{ ${WEB4} }`]);
    const pid = daemonPid();
    const state = stateDir(id);
    for (const who of ['runner', 'agent'] as const) {
      const attacks: [string, string[]][] = [
        ['nft', ['nft', 'add', 'element', 'inet', 'cordon', 'agent4', `{ ${WEB4} }`]],
        ['nft-policy', ['nft', 'add', 'chain', 'inet', 'cordon', 'output', '{ policy accept; }']],
        ['ruleset', ['sh', '-c', `echo 'table inet cordon {}' > ${state}/ruleset.nft`]],
        ['state-dir', ['sh', '-c', `touch ${state}/planted`]],
        ['signal', ['kill', '-STOP', String(pid)]],
        // Asking the daemon, on its control socket, for audit: the runner user may connect
        // (a report is all it answers), the agent may not.
        [
          'control',
          [
            process.execPath,
            '-e',
            `const c=require('net').connect(process.argv[1]);c.on('error',e=>{console.log(e.code);process.exit(1)});c.write('policy audit\\n');let d='';c.on('data',b=>d+=b);c.on('end',()=>{console.log(JSON.parse(d).policy);process.exit(0)})`,
            join(state, CONTROL_SOCKET),
          ],
        ],
      ];
      for (const [name, argv] of attacks) {
        const r = as[who].try(argv, 10000);
        const out = `${who} ${name}: ${r.code} ${r.stdout.trim()}`;
        if (name === 'control' && who === 'runner') expect(out).toBe(`${who} ${name}: 0 block`);
        else expect(out).toMatch(new RegExp(`^${who} ${name}: [1-9]`));
      }
    }
    // Past the watch's 3 s check: still deleted, the daemon running, the policy drop.
    await new Promise((r) => setTimeout(r, 3500));
    expect(sets('agent4')).not.toContain(WEB4);
    expect(readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(/^State:\s+[RS]/m);
    expect(w.runner.exec(['nft', 'list', 'chain', 'inet', 'cordon', 'output'])).toContain('policy drop;');
    expect(connect(as.agent, WEB4, 443).result).toBe('ECONNREFUSED');
    const report = await requestReport(id);
    expect(report.policy).toBe('block');
    // Asking its own proxy again does not bring it back either: the proxy answers from its
    // cache and holds the address as in the set already (until the answer expires).
    expect(dig(as.agent, A).answers).toEqual([WEB4]);
    expect(sets('agent4')).not.toContain(WEB4);
    expect(connect(as.agent, WEB4, 443).result).toBe('ECONNREFUSED');
  }, 60000);

  test('hostile: a connection the agent opened while the table was gone is refused from the re-close on when its address is off its list, and goes on when it is on it', async () => {
    const go = join(dir, 'go');
    rmSync(go, { force: true });
    // The agent's proxy answered its name: WEB4 goes back in its set with the re-close's
    // refill (the test before deleted it from the set, not from the proxy's answers).
    expect(dig(as.agent, A).answers).toEqual([WEB4]);
    const pid = daemonPid();
    let agent: ChildProcess | undefined;
    const lines: string[] = [];
    try {
      // Held, the daemon cannot re-close while the agent connects.
      process.kill(pid, 'SIGSTOP');
      try {
        w.runner.exec(['nft', 'delete', 'table', 'inet', 'cordon']);
        agent = w.runner.spawn([
          'setpriv',
          `--reuid=${ids.agent[0]}`,
          `--regid=${ids.agent[1]}`,
          '--clear-groups',
          PYTHON,
          '-c',
          KEEP_ASKING,
          go,
          `${EVIL4}:${ECHO_PORT}`,
          `${ECHO4}:${ECHO_PORT}`,
          `${ECHO4}:80`,
        ]);
        let partial = '';
        agent.stdout!.on('data', (b: Buffer) => {
          const l = (partial + b.toString()).split('\n');
          partial = l.pop() ?? '';
          lines.push(...l.filter(Boolean));
        });
        // Both connections open and answered, with no table at all.
        expect(await until(() => lines.length >= 3, 10000)).toBe(true);
        expect(lines).toEqual([
          `before ${EVIL4}:${ECHO_PORT} body`,
          `before ${ECHO4}:${ECHO_PORT} body`,
          `before ${ECHO4}:80 body`,
        ]);
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      // The watch sees the table gone and loads it again (the refill puts the agent's back).
      const closed = (): boolean =>
        w.runner.try(['nft', 'list', 'chain', 'inet', 'cordon', 'agent_decide']).code === 0 &&
        sets('agent4').includes(ECHO4);
      expect(await until(closed, 10000)).toBe(true);
      writeFileSync(go, '');
      expect(await until(() => lines.length >= 6, 15000)).toBe(true);
    } finally {
      writeFileSync(go, '');
      await stop(agent);
    }
    // Off its list: refused from the re-close on, and recorded as the agent's.
    expect(lines[3]).toMatch(new RegExp(`^after ${EVIL4}:${ECHO_PORT} (empty|error .*)$`));
    expect(sets('agentblocked4')).toContain(`${EVIL4} . tcp . ${ECHO_PORT}`);
    // The control: on its list, the same kind of connection goes on.
    expect(lines[4]).toBe(`after ${ECHO4}:${ECHO_PORT} body`);
    // A web port's, which never went through the web gate, is cut even on its list.
    expect(lines[5]).toMatch(new RegExp(`^after ${ECHO4}:80 (empty|error .*)$`));
    expect((await requestReport(id)).tamper.join('\n')).toContain('loaded again (re-closed)');
  }, 60000);
});
