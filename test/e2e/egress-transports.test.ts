/**
 * The agent's fence against the transports and privileges the TCP, UDP and ICMP tests do not
 * try, run for real as a uid of the agents' range against the bundled daemon in a "runner"
 * namespace (see egress-topology.ts):
 *
 * - MPTCP (`IPPROTO_MPTCP`, on by default in Linux's `net.mptcp.enabled`): the kernel sends
 *   an MPTCP connection's packets from subflow sockets of its own, and a fence that tells
 *   identities apart by `meta skuid` sees them only if the kernel gives those sockets the
 *   agent's owner. If it did not, the agent's MPTCP would be judged as the runner's: the
 *   preset's addresses, the runner's proxy on 127.0.0.1:53 and no web gate.
 * - UDP-Lite (`IPPROTO_UDPLITE`): a transport with ports that the fence's port rules, written
 *   for TCP and UDP, might not name: DNS and DoT ports, and QUIC's.
 * - A user namespace of its own (unprivileged, on by default): root there, with
 *   CAP_NET_ADMIN over a network namespace of its own, but not over the fence's.
 *
 * Each attack has a control that shows the same request works where it is allowed. Needs
 * root, nft, ip, dig, python3 (the system's), unshare, useradd and setpriv.
 */
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { stop } from '../../src/devkit/netns.js';
import { parseCidrs, parseDomains } from '../../src/fence/policy.js';
import { requestReport } from '../../src/rootd/protocol.js';
import { toEvent } from '../../src/actions/egress/report.js';
import {
  CHAIN4,
  DNS4,
  EVIL4,
  OTHER4,
  WEB4,
  WEB6,
  World,
  addAgentUser,
  asUid,
  connect,
  dig,
  egressSuite,
  setElements,
  startDaemon,
  untilReady,
  type Runs,
} from './egress-topology.js';
import { tempDir } from '../harness/tmp.js';

const PYTHON = '/usr/bin/python3';
const suite = egressSuite('egress-transports', ['python3', 'unshare']);

/** The agent's name (A), on WEB4/WEB6, and the preset's (P), on CHAIN4: the runner's list only. */
const A = 'www.a.test';
const P = 'cdn.other.test';
/** Where the internet's UDP-Lite listener echoes what it gets. */
const LITE_PORT = 9003;
const IPPROTO_MPTCP = 262;
const IPPROTO_UDPLITE = 136;

/**
 * An HTTP/1.1 request over an MPTCP socket: `body <text>` (the answer's body), `empty` (the
 * connection was closed or reset with no answer) or `error <errno name>`.
 */
const MPTCP_HTTP = String.raw`
import errno, socket, sys
host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_STREAM, ${IPPROTO_MPTCP})
s.settimeout(4)
data = b''
try:
    s.connect((host, port))
    s.sendall(('GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' % name).encode())
    while True:
        d = s.recv(4096)
        if not d:
            break
        data += d
except OSError as e:
    if not data:
        print('error', errno.errorcode.get(e.errno, type(e).__name__) if e.errno else type(e).__name__)
        sys.exit(0)
if data:
    print('body', data.split(b'\r\n\r\n', 1)[-1].decode(errors='replace').strip())
else:
    print('empty')
`;

/**
 * One DNS query for an A record over TCP framing on an MPTCP socket: `NOERROR a.b.c.d ...`,
 * `NXDOMAIN`, another rcode's name, or `error <errno name>`.
 */
const MPTCP_DNS = String.raw`
import errno, socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
q = struct.pack('>HHHHHH', 0x2b1d, 0x0100, 1, 0, 0, 0)
q += b''.join(bytes([len(l)]) + l.encode() for l in name.split('.')) + b'\0' + struct.pack('>HH', 1, 1)
s = socket.socket(socket.AF_INET6 if ':' in server else socket.AF_INET, socket.SOCK_STREAM, ${IPPROTO_MPTCP})
s.settimeout(4)
def read(n):
    b = b''
    while len(b) < n:
        d = s.recv(n - len(b))
        if not d:
            raise OSError(errno.ECONNRESET, 'closed')
        b += d
    return b
def skip_name(m, i):
    while True:
        n = m[i]
        if n & 0xc0 == 0xc0:
            return i + 2
        if n == 0:
            return i + 1
        i += n + 1
try:
    s.connect((server, 53))
    s.sendall(struct.pack('>H', len(q)) + q)
    m = read(struct.unpack('>H', read(2))[0])
except OSError as e:
    print('error', errno.errorcode.get(e.errno, type(e).__name__) if e.errno else type(e).__name__)
    sys.exit(0)
rcode = m[3] & 0xf
names = {0: 'NOERROR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 5: 'REFUSED'}
qd, an = struct.unpack('>HH', m[4:8])
i = 12
for _ in range(qd):
    i = skip_name(m, i) + 4
out = []
for _ in range(an):
    i = skip_name(m, i)
    t, _c, _ttl, n = struct.unpack('>HHIH', m[i:i + 10])
    i += 10
    if t == 1:
        out.append(socket.inet_ntoa(m[i:i + 4]))
    i += n
print(' '.join([names.get(rcode, 'rcode%d' % rcode)] + out))
`;

/**
 * Three UDP-Lite datagrams (UDP with a fourth argument `udp`) in 1.5 s to host:port: `echo`
 * when the listener sent one back.
 */
const UDPLITE_SEND = String.raw`
import errno, socket, sys
host, port, payload = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
proto = socket.IPPROTO_UDP if sys.argv[4:] == ['udp'] else ${IPPROTO_UDPLITE}
s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_DGRAM, proto)
s.settimeout(0.5)
last = 'timeout'
for _ in range(3):
    try:
        s.sendto(payload, (host, port))
        s.recvfrom(2048)
        print('echo')
        sys.exit(0)
    except socket.timeout:
        pass
    except OSError as e:
        last = errno.errorcode.get(e.errno, str(e.errno))
print(last)
`;

/**
 * The internet's UDP-Lite listeners (UDP with a first argument `udp`), both families, one a
 * port: echo and print each datagram's data.
 */
const UDPLITE_LISTEN = String.raw`
import select, socket, sys
socks = []
proto = socket.IPPROTO_UDP if sys.argv[1] == 'udp' else ${IPPROTO_UDPLITE}
for port in sys.argv[2:]:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, proto)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(('::', int(port)))
    socks.append(s)
print('ready', flush=True)
while True:
    for s in select.select(socks, [], [])[0]:
        d, a = s.recvfrom(2048)
        print(d.decode(errors='replace'), flush=True)
        s.sendto(d, a)
`;

function py(as: Runs, script: string, args: string[]): string {
  return as.try([PYTHON, '-c', script, ...args], 15000).stdout.trim();
}

suite("the agent's fence against other transports and its own user namespace", () => {
  const user = `ctrp${process.pid % 100000}`;
  let uid = 0;
  let gid = 0;
  let w: World;
  let dir: string;
  let id: string;
  let agent: Runs;
  let lite: ChildProcess | undefined;
  let udp: ChildProcess | undefined;
  const arrived: string[] = [];

  beforeAll(async () => {
    ({ uid, gid } = addAgentUser(user, 11));
    dir = tempDir('cordon-transports-');
    w = new World('m');
    await w.serve({ zone: { [P]: [{ type: 'A', value: CHAIN4, ttl: 300 }] } });
    lite = w.internet.spawn([PYTHON, '-c', UDPLITE_LISTEN, 'lite', ...[LITE_PORT, 53, 853, 443].map(String)]);
    // UDP on QUIC's ports, and one port QUIC does not use.
    udp = w.internet.spawn([PYTHON, '-c', UDPLITE_LISTEN, 'udp', ...[LITE_PORT, 80, 443].map(String)]);
    await Promise.all(
      [lite, udp].map((listener) => untilReady(listener, 'a datagram listener', (l) => arrived.push(l))),
    );
    id = await startDaemon(w, join(dir, 'config.json'), {
      id: `transports${process.pid}`,
      // The runner's list: the agent's name and the test's preset name.
      domains: parseDomains(`${A}\n${P}`),
      agentDomains: parseDomains(A),
      ips: parseCidrs(`${OTHER4}/32`),
    });
    agent = asUid(w.runner, uid, gid);
    // MPTCP is on in the runner's namespace, as Linux ships it: the attacks below are real.
    expect(w.runner.exec(['sysctl', '-n', 'net.mptcp.enabled']).trim()).toBe('1');
    // The runner side resolves the preset's name: CHAIN4 is in the runner's set from here on.
    expect(dig(w.runner, P).answers).toEqual([CHAIN4]);
    // The agent resolves its own name: WEB4 and WEB6 are in its sets.
    expect(dig(agent, A).answers).toEqual([WEB4]);
    expect(dig(agent, A, { type: 'AAAA' }).answers).toEqual([WEB6]);
  }, 60000);

  afterAll(async () => {
    await stop(lite);
    await stop(udp);
    await w?.destroy(id ? [id] : []);
    spawnSync('userdel', [user], { timeout: 15000 });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("control: over MPTCP the agent reaches its own name through the gate, and the runner side the preset's", () => {
    expect(py(agent, MPTCP_HTTP, [WEB4, '80', A])).toBe(`body hello from ${WEB4}`);
    expect(py(agent, MPTCP_HTTP, [WEB6, '80', A])).toBe(`body hello from ${WEB6}`);
    expect(py(w.runner, MPTCP_HTTP, [CHAIN4, '80', P])).toBe(`body hello from ${CHAIN4}`);
  });

  test("hostile: over MPTCP the agent is refused the preset's address, and it is recorded as the agent's", () => {
    const t0 = Date.now();
    expect(py(agent, MPTCP_HTTP, [CHAIN4, '80', P])).toMatch(/^error (ECONNREFUSED|ECONNRESET)$/);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(setElements(w, 'agent4')).not.toContain(CHAIN4);
    expect(setElements(w, 'agentblocked4')).toContain(`${CHAIN4} . tcp . 80`);
    expect(setElements(w, 'blocked4')).not.toContain(CHAIN4);
  });

  test('hostile: over MPTCP, another site named on the agent’s own address is reset by the web gate', () => {
    expect(py(agent, MPTCP_HTTP, [WEB4, '80', P])).toMatch(/^(empty|error ECONNRESET)$/);
    expect(py(agent, MPTCP_HTTP, [WEB6, '80', P])).toMatch(/^(empty|error ECONNRESET)$/);
  });

  test("hostile: the agent's DNS over MPTCP, to the runner's proxy or an outside resolver, is answered by its own proxy", async () => {
    for (const server of ['127.0.0.1', '::1', DNS4]) {
      expect(py(agent, MPTCP_DNS, [server, P])).toBe('NXDOMAIN');
      expect(py(agent, MPTCP_DNS, [server, A])).toBe(`NOERROR ${WEB4}`);
    }
    // The control: the runner side's own MPTCP lookup of P is answered by the runner's proxy.
    expect(py(w.runner, MPTCP_DNS, ['127.0.0.1', P])).toBe(`NOERROR ${CHAIN4}`);
    // Every query the upstream saw for A came from the proxy; the agent's P reached no one.
    expect((await w.asked(A)).every((q) => q.from === '198.51.100.2')).toBe(true);
    const event = toEvent(await requestReport(id));
    expect(event.blockedNames).toContainEqual(expect.objectContaining({ name: P, identity: 'agent' }));
  });

  test('hostile: UDP-Lite from the agent to an address no allowed name resolved to never arrives, and is recorded as the agent’s', async () => {
    // The control: to its own name's address, it arrives and is echoed.
    expect(py(agent, UDPLITE_SEND, [WEB4, String(LITE_PORT), 'lite-allowed'])).toBe('echo');
    expect(py(agent, UDPLITE_SEND, [EVIL4, String(LITE_PORT), 'lite-evil'])).not.toBe('echo');
    expect(py(agent, UDPLITE_SEND, [CHAIN4, String(LITE_PORT), 'lite-preset'])).not.toBe('echo');
    await new Promise((r) => setTimeout(r, 250));
    expect(arrived).toContain('lite-allowed');
    expect(arrived).not.toContain('lite-evil');
    expect(arrived).not.toContain('lite-preset');
    expect(setElements(w, 'agentblocked4')).toContain(`${EVIL4} . udplite . 0`);
    expect(setElements(w, 'agentblocked4')).toContain(`${CHAIN4} . udplite . 0`);
  });

  test("hostile: UDP-Lite to the DNS, DoT and QUIC ports of the agent's own allowed address is refused, as UDP is", async () => {
    for (const port of [53, 853, 443]) {
      expect(py(agent, UDPLITE_SEND, [WEB4, String(port), `lite-port-${port}`])).not.toBe('echo');
      expect(setElements(w, 'agentblocked4')).toContain(`${WEB4} . udplite . 0`);
    }
    await new Promise((r) => setTimeout(r, 250));
    expect(arrived.filter((a) => a.startsWith('lite-port-'))).toEqual([]);
  });

  // docs/egress.md: "The agent's UDP and UDP-Lite to ports 80 and 443 are refused (but to
  // `allowed-ips`)". OTHER4 is in allowed-ips; WEB4 is the address of the agent's own name.
  test("hostile: the agent's UDP and UDP-Lite to ports 80 and 443 of its own name's address are refused (QUIC); to an allowed-ips address they arrive", async () => {
    // The control: UDP to another port of its own name's address arrives.
    expect(py(agent, UDPLITE_SEND, [WEB4, String(LITE_PORT), 'udp-web-other', 'udp'])).toBe('echo');
    for (const port of [80, 443]) {
      expect(py(agent, UDPLITE_SEND, [WEB4, String(port), `udp-web-${port}`, 'udp'])).not.toBe('echo');
      expect(py(agent, UDPLITE_SEND, [WEB6, String(port), `udp-web6-${port}`, 'udp'])).not.toBe('echo');
      expect(setElements(w, 'agentblocked4')).toContain(`${WEB4} . udp . ${port}`);
      expect(py(agent, UDPLITE_SEND, [OTHER4, String(port), `udp-static-${port}`, 'udp'])).toBe('echo');
    }
    expect(py(agent, UDPLITE_SEND, [WEB4, '443', 'lite-web-443'])).not.toBe('echo');
    expect(py(agent, UDPLITE_SEND, [OTHER4, '443', 'lite-static-443'])).toBe('echo');
    await new Promise((r) => setTimeout(r, 250));
    expect(arrived.filter((a) => /^(udp|lite)-(web|static)/.test(a)).sort()).toEqual(
      ['lite-static-443', 'udp-static-443', 'udp-static-80', 'udp-web-other'].sort(),
    );
    expect(setElements(w, 'agentblocked4')).not.toContain(OTHER4);
  });

  test("hostile: root of a user namespace of its own, the agent cannot change the fence's table", () => {
    // The rules and the tables: set elements come and go with answers, the rules stay.
    const table = (): string =>
      ['output', 'decide', 'agent_decide', 'agent_refuse', 'agent_dns']
        .map((c) => w.runner.exec(['nft', 'list', 'chain', 'inet', 'cordon', c]))
        .concat(w.runner.exec(['nft', 'list', 'tables']))
        .join('\n');
    const before = table();
    // The control: in a user namespace of its own it is root, with CAP_NET_ADMIN over a
    // network namespace of its own (where it may load any table it likes).
    const own = agent.try(
      [
        'unshare',
        '--user',
        '--map-root-user',
        '--net',
        'sh',
        '-c',
        'nft add table inet mine && nft list tables',
      ],
      10000,
    );
    expect(own.stdout).toContain('table inet mine');
    for (const attack of [
      ['nft', 'delete', 'table', 'inet', 'cordon'],
      ['nft', 'flush', 'ruleset'],
      ['nft', 'add', 'element', 'inet', 'cordon', 'agent4', `{ ${EVIL4} }`],
      ['nft', 'insert', 'rule', 'inet', 'cordon', 'agent_decide', 'accept'],
    ]) {
      const r = agent.try(['unshare', '--user', '--map-root-user', ...attack], 10000);
      expect(`${attack.join(' ')}: ${r.code} ${r.stderr}`).toMatch(/: [1-9]\d* .*Operation not permitted/s);
    }
    expect(table()).toBe(before);
    expect(setElements(w, 'agent4')).not.toContain(EVIL4);
    const c = connect(agent, EVIL4, 80);
    expect(c.result).toBe('ECONNREFUSED');
  });
});
