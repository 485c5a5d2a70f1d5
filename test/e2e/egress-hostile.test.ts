/**
 * Egress attacks the TCP tests do not make, run for real as an unprivileged runner user and
 * as the agent's own user (a uid of the agents' range) against the bundled daemon in a
 * "runner" namespace (see egress-topology.ts): UDP and ICMP echo to addresses no allowed
 * name resolved to, UDP to port 853 (DNS over QUIC), data sent back on a connection a host
 * outside opened, and the proxy used as an open resolver from outside. Each attack has a
 * control that the same request to an allowed address does arrive. Needs root, nft, ip,
 * dig, python3, useradd and setpriv.
 */
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { run, stop } from '../../src/devkit/netns.js';
import { parseDomains } from '../../src/fence/policy.js';
import { requestReport } from '../../src/rootd/protocol.js';
import {
  DNS4,
  DNS6,
  OTHER4,
  OTHER6,
  REAL4,
  WEB4,
  WEB6,
  World,
  asUid,
  connect,
  dig,
  egressSuite,
  freeAgentUid,
  startDaemon,
  untilReady,
  type Runs,
} from './egress-topology.js';
import { tempDir } from '../harness/tmp.js';

const PYTHON = '/usr/bin/python3';
const suite = egressSuite('egress-hostile', ['python3']);

/** The runner's address on the link to the "internet" (egress-topology.ts). */
const RUNNER4 = '198.51.100.2';
const RUNNER6 = '2001:db8:1::2';
/** The metadata service, which the rebinding names answer from their second query on. */
const IMDS = '169.254.169.254';
/** Where the "internet" listens for UDP: each identity sends to its own port. */
const PORTS = { runner: 9000, agent: 9001 } as const;
type Who = keyof typeof PORTS;
/**
 * A name on the runner's list only (as the preset's are), its addresses, and the port of the
 * internet's UDP listener there: the runner's flows to it, which the agent must not borrow.
 */
const RUNNER_ONLY = 'runner-only.a.test';
const RUNNER_ONLY4 = '203.0.113.60';
const RUNNER_ONLY6 = '2001:db8:2::60';
const FLOW_PORT = 9002;

/**
 * Sends `payload` over UDP three times in 1.5 s, from `localPort` when given; 'echo' when
 * the listener sent it back.
 */
function udp(as: Runs, address: string, port: number, payload: string, localPort = 0): string {
  const script = `const s=require('dgram').createSocket(process.argv[1].includes(':')?'udp6':'udp4');
    s.on('message',()=>{console.log('echo');process.exit(0)});s.on('error',e=>{console.log(e.code);process.exit(0)});
    let n=0;const go=()=>{if(n++<3){s.send(process.argv[3],+process.argv[2],process.argv[1],()=>{});setTimeout(go,500)}else{console.log('timeout');process.exit(0)}};
    s.bind(+process.argv[4],go);`;
  return as
    .try([process.execPath, '-e', script, address, String(port), payload, String(localPort)], 10000)
    .stdout.trim();
}

/**
 * One ICMP echo through an unprivileged ping socket, with the echo identifier `ident` when
 * given (the socket's bound "port"): 'reply', 'timeout' or the errno.
 */
function ping(as: Runs, address: string, payload: string, ident = 0): string {
  const script = `import socket,struct,sys,errno
a=sys.argv[1];v6=':' in a
s=socket.socket(socket.AF_INET6 if v6 else socket.AF_INET,socket.SOCK_DGRAM,socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
s.settimeout(1.5)
try:
  s.bind(('::' if v6 else '0.0.0.0',int(sys.argv[3])))
  s.sendto(struct.pack('!BBHHH',128 if v6 else 8,0,0,0,1)+sys.argv[2].encode(),(a,0))
  d=s.recv(2048)
  print('reply' if d[0] in (0,129) else 'type%d'%d[0])
except socket.timeout: print('timeout')
except OSError as e: print(errno.errorcode.get(e.errno,str(e.errno)))`;
  return as.try([PYTHON, '-c', script, address, payload, String(ident)], 10000).stdout.trim();
}

suite('egress: UDP, ICMP, DoQ and inbound attacks, as the runner user and the agent', () => {
  const users = { runner: `chrun${process.pid % 100000}`, agent: `chagt${process.pid % 100000}` };
  const as = {} as Record<Who, Runs>;
  let w: World;
  let dir: string;
  let id = '';
  let listener: ChildProcess | undefined;
  /** What arrived at the internet's UDP listener. */
  const arrived: { to: string; port: number; data: string }[] = [];

  const sets = (set: string): string => w.runner.exec(['nft', 'list', 'set', 'inet', 'cordon', set]);

  beforeAll(async () => {
    run(['useradd', '--user-group', '--no-create-home', '--shell', '/bin/sh', users.runner]);
    const agentUid = String(freeAgentUid(13));
    run([
      'useradd',
      '--uid',
      agentUid,
      '--user-group',
      '--no-create-home',
      '--shell',
      '/bin/sh',
      users.agent,
    ]);
    dir = tempDir('cordon-hostile-');
    w = new World('h');
    w.internet.addAddress('lo', `${RUNNER_ONLY4}/32`);
    w.internet.addAddress('lo', `${RUNNER_ONLY6}/128`);
    await w.serve({
      zone: {
        ...Object.fromEntries(
          (['runner', 'agent'] as const).map((who) => [
            `rebind-${who}.a.test`,
            [{ type: 'A', value: REAL4, ttl: 0, later: IMDS }],
          ]),
        ),
        [RUNNER_ONLY]: [
          { type: 'A', value: RUNNER_ONLY4, ttl: 300 },
          { type: 'AAAA', value: RUNNER_ONLY6, ttl: 300 },
        ],
      },
      http: [IMDS],
    });
    for (const who of ['runner', 'agent'] as const) {
      const uid = Number(run(['id', '-u', users[who]]).trim());
      const gid = Number(run(['id', '-g', users[who]]).trim());
      as[who] = asUid(w.runner, uid, gid);
    }
    // As on GitHub's Ubuntu images (systemd's default): every user may open a ping socket.
    w.runner.sysctl('net.ipv4.ping_group_range', '0 2147483647');
    // A UDP listener in the "internet" on allowed and forbidden addresses, echoing back.
    const targets = [
      ...[OTHER4, OTHER6, WEB4, WEB6].flatMap((a) => [
        [a, PORTS.runner],
        [a, PORTS.agent],
        [a, 853],
      ]),
      [RUNNER_ONLY4, FLOW_PORT],
      [RUNNER_ONLY6, FLOW_PORT],
    ];
    const script = `const d=require('dgram');const t=JSON.parse(process.argv[1]);let n=0;
      for(const [a,p] of t){const s=d.createSocket(a.includes(':')?'udp6':'udp4');
        s.on('message',(m,r)=>{console.log(JSON.stringify({to:a,port:p,data:m.toString()}));s.send(m,r.port,r.address)});
        s.bind(p,a,()=>{if(++n===t.length)console.log('ready')})}`;
    listener = w.internet.spawn([process.execPath, '-e', script, JSON.stringify(targets)]);
    await untilReady(listener, 'the UDP listener', (l) =>
      arrived.push(JSON.parse(l) as { to: string; port: number; data: string }),
    );
    id = await startDaemon(w, join(dir, 'config.json'), {
      id: `hostile${process.pid}`,
      domains: parseDomains(`www.a.test rebind-runner.a.test ${RUNNER_ONLY}`),
      agentDomains: parseDomains('www.a.test rebind-agent.a.test'),
    });
    // Each identity resolves the allowed name, both families, so its set holds WEB4 and WEB6.
    for (const who of ['runner', 'agent'] as const) {
      expect(dig(as[who], 'www.a.test').answers).toEqual([WEB4]);
      expect(dig(as[who], 'www.a.test', { type: 'AAAA' }).answers).toEqual([WEB6]);
    }
  }, 60000);

  afterAll(async () => {
    await stop(listener);
    await w?.destroy(id ? [id] : []);
    for (const u of Object.values(users)) spawnSync('userdel', [u], { timeout: 15000 });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The payloads that reached the listener, after it has had time to say so. */
  async function arrivedData(): Promise<string[]> {
    await new Promise((r) => setTimeout(r, 250));
    return arrived.map((a) => a.data);
  }

  test.each(['runner', 'agent'] as const)(
    'control (%s): UDP and an ICMP echo to the allowed name’s addresses arrive, IPv4 and IPv6',
    async (who) => {
      for (const a of [WEB4, WEB6]) {
        expect(udp(as[who], a, PORTS[who], `ok-${who}-${a}`)).toBe('echo');
        expect(ping(as[who], a, `ok-${who}`)).toBe('reply');
      }
      expect(await arrivedData()).toEqual(expect.arrayContaining([`ok-${who}-${WEB4}`, `ok-${who}-${WEB6}`]));
    },
  );

  test.each(['runner', 'agent'] as const)(
    'UDP (%s) to an address no allowed name resolved to never arrives, IPv4 or IPv6, and the kernel records it',
    async (who) => {
      for (const a of [OTHER4, OTHER6])
        expect(udp(as[who], a, PORTS[who], `exfil-${who}-${a}`)).not.toBe('echo');
      expect((await arrivedData()).filter((d) => d.startsWith(`exfil-${who}`))).toEqual([]);
      const prefix = who === 'agent' ? 'agent' : '';
      expect(sets(`${prefix}blocked4`)).toContain(`${OTHER4} . udp . ${PORTS[who]}`);
      expect(sets(`${prefix}blocked6`)).toContain(`${OTHER6} . udp . ${PORTS[who]}`);
    },
  );

  test('as the runner user, not root: TCP to such an address, DNS straight to the upstream and DoT to the allowed address are refused', async () => {
    for (const a of [OTHER4, OTHER6]) expect(connect(as.runner, a, 80).result).toBe('ECONNREFUSED');
    for (const server of [DNS4, DNS6]) {
      expect(dig(as.runner, 'direct-runner.a.test', { server }).status).toMatch(/^failed/);
      expect(dig(as.runner, 'direct-runner.a.test', { server, tcp: true }).status).toMatch(/^failed/);
    }
    expect(await w.asked('direct-runner.a.test')).toEqual([]);
    expect(connect(as.runner, WEB4, 853).result).toBe('ECONNREFUSED');
    expect(sets('blocked4')).toContain(`${OTHER4} . tcp . 80`);
  });

  test.each(['runner', 'agent'] as const)(
    'an ICMP echo (%s) to such an address gets no reply and is recorded as ICMP',
    (who) => {
      expect(ping(as[who], OTHER4, `exfil-${who}`)).not.toBe('reply');
      expect(ping(as[who], OTHER6, `exfil-${who}`)).not.toBe('reply');
      const prefix = who === 'agent' ? 'agent' : '';
      expect(sets(`${prefix}blocked4`)).toContain(`${OTHER4} . icmp . 0`);
      expect(sets(`${prefix}blocked6`)).toContain(`${OTHER6} . ipv6-icmp . 0`);
    },
  );

  // The kernel keeps a flow (UDP, an ICMP echo) by its addresses and ports alone, for 30 s
  // after its last packet. A flow the runner opened to an address of its own list, the
  // agent's socket on the same local port (or echo identifier) would find established.
  test.each([RUNNER_ONLY4, RUNNER_ONLY6])(
    'hostile: the agent reusing the local port of a UDP flow the runner opened to %s (on the runner’s list only) gets nothing through',
    async (a) => {
      const six = a.includes(':');
      const localPort = six ? 40124 : 40123;
      expect(dig(as.runner, RUNNER_ONLY, { type: six ? 'AAAA' : 'A' }).answers).toEqual([a]);
      // Control: the runner's flow from that port is answered.
      expect(udp(as.runner, a, FLOW_PORT, `runner-flow-${a}`, localPort)).toBe('echo');
      // The agent, from the same port to the same address and port, at once.
      expect(udp(as.agent, a, FLOW_PORT, `borrowed-flow-${a}`, localPort)).not.toBe('echo');
      expect(await arrivedData()).toContain(`runner-flow-${a}`);
      expect((await arrivedData()).filter((d) => d.startsWith('borrowed-flow'))).toEqual([]);
      expect(sets(six ? 'agentblocked6' : 'agentblocked4')).toContain(`${a} . udp . ${FLOW_PORT}`);
    },
  );

  test.each([RUNNER_ONLY4, RUNNER_ONLY6])(
    'hostile: the agent reusing the echo identifier of an ICMP echo the runner sent to %s gets no reply',
    (a) => {
      const six = a.includes(':');
      const ident = six ? 4243 : 4242;
      expect(dig(as.runner, RUNNER_ONLY, { type: six ? 'AAAA' : 'A' }).answers).toEqual([a]);
      expect(ping(as.runner, a, 'runner-echo', ident)).toBe('reply');
      expect(ping(as.agent, a, 'borrowed-echo', ident)).not.toBe('reply');
      expect(sets(six ? 'agentblocked6' : 'agentblocked4')).toContain(
        `${a} . ${six ? 'ipv6-icmp' : 'icmp'} . 0`,
      );
    },
  );

  test('hostile: the agent reusing the local port of the runner’s lookup on 127.0.0.1:53 is not answered by the runner’s proxy', async () => {
    const from = ['-b', '127.0.0.1#40126'];
    const lookup = (who: Who): string =>
      as[who]
        .try(['dig', '@127.0.0.1', ...from, '+time=1', '+tries=1', '+short', RUNNER_ONLY, 'A'], 10000)
        .stdout.trim();
    // Control: the runner's proxy answers the runner's name.
    expect(lookup('runner')).toBe(RUNNER_ONLY4);
    // The agent's lookup from that port would find the runner's flow (so no redirect to its
    // own proxy) and, let through as established, get the runner's answer.
    expect(lookup('agent')).not.toContain(RUNNER_ONLY4);
    // The agent's own lookup, from any other port, goes to its own proxy: NXDOMAIN.
    expect(dig(as.agent, RUNNER_ONLY).status).toBe('NXDOMAIN');
  });

  test('control: the agent’s own UDP flow to its allowed address, from one local port, is answered every time', () => {
    expect(udp(as.agent, WEB4, PORTS.agent, 'own-flow-1', 40125)).toBe('echo');
    expect(udp(as.agent, WEB4, PORTS.agent, 'own-flow-2', 40125)).toBe('echo');
  });

  test.each(['runner', 'agent'] as const)(
    'UDP to port 853 (%s: DNS over QUIC) never arrives, even at the allowed name’s address',
    async (who) => {
      for (const a of [WEB4, WEB6]) expect(udp(as[who], a, 853, `doq-${who}-${a}`)).not.toBe('echo');
      expect((await arrivedData()).filter((d) => d.startsWith(`doq-${who}`))).toEqual([]);
    },
  );

  test.each(['runner', 'agent'] as const)(
    'an allowed name answering a public address first and the metadata service the second time (%s) never opens the latter',
    (who) => {
      const name = `rebind-${who}.a.test`;
      const set = who === 'agent' ? 'agent4' : 'allow4';
      // TTL 0: nothing is cached, so the second lookup reaches the name's server again.
      expect(dig(as[who], name).answers).toEqual([REAL4]);
      expect(connect(as[who], REAL4, 80).result).toBe('open');
      expect(dig(as[who], name).status).toBe('REFUSED');
      expect(dig(as[who], name, { tcp: true }).status).toBe('REFUSED');
      expect(sets(set)).not.toContain(IMDS);
      expect(connect(as[who], IMDS, 80).result).toBe('ECONNREFUSED');
    },
  );

  test('a connection a host outside opens to a port the agent listens on carries nothing out', async () => {
    const port = 9500;
    const server = `const s=require('net').createServer(c=>{c.on('error',()=>{});c.write(process.argv[1])});
      s.listen(+process.argv[2],'::',()=>console.log('listening'));setTimeout(()=>process.exit(0),20000);`;
    const agentUid = run(['id', '-u', users.agent]).trim();
    const child = w.runner.spawn([
      'setpriv',
      `--reuid=${agentUid}`,
      `--regid=${run(['id', '-g', users.agent]).trim()}`,
      '--clear-groups',
      process.execPath,
      '-e',
      server,
      'inbound-secret',
      String(port),
    ]);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the agent’s server did not listen in 10 s')), 10000);
        child.stdout!.once('data', () => {
          clearTimeout(timer);
          resolve();
        });
      });
      const client = `const c=require('net').connect({host:process.argv[1],port:+process.argv[2]});let d='';
        c.on('data',x=>d+=x);const done=e=>{console.log(JSON.stringify({data:d,end:e}));process.exit(0)};
        c.on('close',()=>done('close'));c.on('error',e=>done(e.code));setTimeout(()=>done('timeout'),3000);`;
      for (const a of [RUNNER4, RUNNER6]) {
        const out = JSON.parse(
          w.internet.exec([process.execPath, '-e', client, a, String(port)], { timeoutMs: 10000 }),
        ) as { data: string };
        expect(out.data).toBe('');
      }
      // Refused as the agent's, toward the outside host.
      expect(sets('agentblocked4')).toContain('198.51.100.1 . tcp . ');
      expect(sets('agentblocked6')).toContain('2001:db8:1::1 . tcp . ');
    } finally {
      await stop(child);
    }
  }, 30000);

  // The agent's own packets on such a connection are refused (above), but packets with no
  // socket owner are not the agent's as far as `meta skuid` can tell: a SYN-ACK sent as a
  // SYN cookie (the listener's queue is full) and what a socket sends after it was closed
  // (an orphan: its unsent data once the peer's window opens). The host outside fills the
  // agent's queue with SYNs, holds its window at 0 while the agent writes and closes, then
  // opens it.
  /**
   * A host outside opens 30 connections, 30 ms apart, to a listener of `who` (backlog 0, so
   * the kernel answers with SYN cookies once its queue is full), which writes to each one it
   * accepts and closes it at once; with `zeroWindow`, the host outside advertises a zero
   * window for the first 1.5 s, so what was written leaves only after the socket was closed.
   * Returns whether the listener wrote, to how many connections, and how many bytes the host
   * outside received; it connects from `from` (one of its addresses) when given.
   */
  async function inbound(
    who: Who,
    port: number,
    zeroWindow: boolean,
    from?: string,
  ): Promise<{ wrote: boolean; sent: number; data: number }> {
    // The kernel's default: cookies once a listener's SYN queue is full.
    w.runner.sysctl('net.ipv4.tcp_syncookies', '1');
    const server = `import socket,sys,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); s.bind(('0.0.0.0',int(sys.argv[1]))); s.listen(0)
print('listening',flush=True)
s.settimeout(8)
try:
  while True:
    c,_=s.accept(); c.setblocking(False)
    try: c.send(b'inbound-secret'*1000)
    except OSError: pass
    c.close(); print('sent',flush=True)
except OSError: pass
time.sleep(3)`;
    const uid = run(['id', '-u', users[who]]).trim();
    const gid = run(['id', '-g', users[who]]).trim();
    const child = w.runner.spawn([
      'setpriv',
      `--reuid=${uid}`,
      `--regid=${gid}`,
      '--clear-groups',
      PYTHON,
      '-c',
      server,
      String(port),
    ]);
    let said = '';
    child.stdout!.on('data', (b: Buffer) => (said += b.toString()));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`the ${who}’s listener did not start in 10 s`)),
          10000,
        );
        child.stdout!.once('data', () => {
          clearTimeout(timer);
          resolve();
        });
      });
      if (zeroWindow)
        for (const cmd of [
          ['add', 'table', 'inet', 'zerowin'],
          ['add', 'chain', 'inet', 'zerowin', 'out', '{ type filter hook output priority 0; }'],
          ['add', 'rule', 'inet', 'zerowin', 'out', `tcp dport ${port} tcp window set 0`],
        ])
          w.internet.exec(['nft', ...cmd]);
      const client = `let data=0;const net=require('net');
        for(let i=0;i<30;i++)setTimeout(()=>{
          const c=net.connect({host:process.argv[1],port:+process.argv[2],...(process.argv[3]?{localAddress:process.argv[3]}:{})});
          c.on('data',x=>data+=x.length);c.on('error',()=>{})},i*30);
        setTimeout(()=>{console.log(JSON.stringify({data}));process.exit(0)},6000);`;
      const outside = w.internet.spawn([process.execPath, '-e', client, RUNNER4, String(port), from ?? '']);
      let out = '';
      outside.stdout!.on('data', (b: Buffer) => (out += b.toString()));
      await new Promise((r) => setTimeout(r, 1500));
      if (zeroWindow) w.internet.exec(['nft', 'delete', 'table', 'inet', 'zerowin']);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 10000);
        outside.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
      });
      return {
        wrote: said.includes('sent'),
        sent: said.split('\n').filter((l) => l === 'sent').length,
        data: (JSON.parse(out.trim()) as { data: number }).data,
      };
    } finally {
      if (zeroWindow) w.internet.try(['nft', 'delete', 'table', 'inet', 'zerowin']);
      await stop(child);
    }
  }

  // The agent's own packets on such a connection are refused (above), but packets with no
  // socket owner are not the agent's as far as `meta skuid` can tell: a SYN-ACK sent as a
  // SYN cookie (the listener's queue is full) and what a socket sends after it was closed
  // (an orphan: its unsent data once the peer's window opens).
  test('hostile: a host outside gets nothing from the agent through SYN cookies and a closed socket’s unsent data', async () => {
    const got = await inbound('agent', 9600, true);
    // The kernel's SYN cookies completed some handshakes: the agent accepted and wrote.
    expect(got.wrote).toBe(true);
    expect(got.data).toBe(0);
  }, 30000);

  test('control: the agent’s listener answers a host on its list in full, through SYN cookies and a closed socket too', async () => {
    // WEB4 is on the agent's list (answered to it for www.a.test); the host outside connects from it.
    expect(dig(as.agent, 'www.a.test').answers).toEqual([WEB4]);
    const got = await inbound('agent', 9602, true, WEB4);
    expect(got.sent).toBeGreaterThan(0);
    // Every byte the agent wrote, most of it sent after its socket was closed.
    expect(got.data).toBe(got.sent * 14000);
  }, 30000);

  test('control: the runner user’s listener still answers a host outside, through SYN cookies too (the runner identity is not held: T61)', async () => {
    const got = await inbound('runner', 9601, false);
    expect(got.wrote).toBe(true);
    expect(got.data).toBeGreaterThan(0);
  }, 30000);

  test('from outside, the proxy on the runner’s own addresses answers nothing, over UDP or TCP', () => {
    for (const server of [RUNNER4, RUNNER6]) {
      expect(dig(w.internet, 'www.a.test', { server }).status).toMatch(/^failed/);
      expect(dig(w.internet, 'www.a.test', { server, tcp: true }).status).toMatch(/^failed/);
    }
    // The same address from inside is the proxy.
    expect(dig(as.runner, 'www.a.test', { server: RUNNER4 }).answers).toEqual([WEB4]);
  });

  // Root, as an agent with sudo would be (T16): detected and undone, never prevented.
  test("an address root adds to the agent's set is deleted again and recorded", async () => {
    w.runner.exec(['nft', 'add', 'element', 'inet', 'cordon', 'agent4', `{ ${OTHER4} timeout 600s }`]);
    let gone = false;
    for (let i = 0; i < 50 && !gone; i++) {
      await new Promise((r) => setTimeout(r, 100));
      gone = !sets('agent4').includes(OTHER4);
    }
    expect(gone).toBe(true);
    expect(connect(as.agent, OTHER4, 80).result).toBe('ECONNREFUSED');
    expect((await requestReport(id)).tamper.join('\n')).toContain(
      `${OTHER4} added to agent4 by someone else`,
    );
  });
});
