/**
 * Forged DNS answers against the bundled daemon (T13), whole program: the runner user finds
 * the proxy's upstream socket the way an attacker would (/proc/net/udp: connected to the
 * upstream's port 53, owned by cordon-dns) and sends it answers of its own; an off-path
 * forger that can fake its source (played by the test internet's DNS server sending from
 * its own socket, egress-internet.mjs `spoof`) sends answers with a wrong id or for a
 * question the proxy did not ask. The upstream holds its real answer 2 s meanwhile. None may
 * reach the asking client or put an address in a set; the control is the same forger with
 * the id and the question right, which does. Needs root, nft, ip, dig, useradd and setpriv.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { canUseNetns, run } from '../../src/devkit/netns.js';
import { parseDomains } from '../../src/fence/policy.js';
import { requestReport } from '../../src/rootd/protocol.js';
import { MAX_TCP_CLIENTS } from '../../src/fence/proxy.js';
import { toEvent } from '../../src/actions/egress/report.js';
import {
  DNS4,
  FORGED4,
  FORGER,
  REAL4,
  World,
  asUid,
  connect,
  startDaemon,
  type Runs,
} from './egress-topology.js';
import { name as wireName, rr } from '../harness/dns.js';
import { tempDir } from '../harness/tmp.js';

const usable =
  canUseNetns() &&
  ['/usr/sbin/nft', '/usr/bin/dig', '/usr/sbin/useradd', '/usr/bin/setpriv'].every((f) => existsSync(f));
if (!usable && process.env.CI === 'true')
  throw new Error('egress-forged e2e: needs root, nft, ip, dig, useradd and setpriv (CI=true)');
if (!usable) console.warn('egress-forged e2e skipped: needs root, nft, ip, dig, useradd and setpriv');
const suite = usable ? describe : describe.skip;

/** The address the control's forged answer carries (a web server in the internet). */
const CONTROL4 = '203.0.113.98';
/** Where the internet's forger takes its orders. */
const SPOOF = { address: FORGER, port: 5300 };
/** How long the upstream holds the real answer to each name asked here. */
const HOLD_MS = 2000;
const NAMES = ['wrong-source.a.test', 'wrong-id.a.test', 'other-question.a.test', 'control.a.test'];

/** A DNS answer with id `id`, one question (`q`, type A) and one A record of `address`. */
function forgedAnswer(id: number, q: string, address: string): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(0x8180, 2);
  h.writeUInt16BE(1, 4);
  h.writeUInt16BE(1, 6);
  const owner = wireName(q);
  return Buffer.concat([
    h,
    owner,
    Buffer.from([0, 1, 0, 1]),
    rr(owner, 1, 300, Buffer.from(address.split('.').map(Number))),
  ]);
}

/** The IPv4 address of /proc/net/udp's little-endian hex form. */
function fromHex(hex: string): string {
  return [6, 4, 2, 0].map((i) => parseInt(hex.slice(i, i + 2), 16)).join('.');
}

suite('egress: forged DNS answers, against the proxy’s upstream socket (T13)', () => {
  const user = `chfor${process.pid % 100000}`;
  let as: Runs;
  let w: World;
  let id = '';
  /**
   * The proxies' upstream sockets as the runner user saw them (the runner's and the
   * agent's proxy have one each): address, port, owner uid. Every attack goes to each.
   */
  let upstreams: { address: string; port: number; uid: number }[] = [];

  const sets = (set: string): string => w.runner.exec(['nft', 'list', 'set', 'inet', 'cordon', set]);

  beforeAll(async () => {
    run(['useradd', '--user-group', '--no-create-home', '--shell', '/bin/sh', user]);
    w = new World('f');
    await w.serve({
      zone: Object.fromEntries(NAMES.map((n) => [n, [{ type: 'A', value: REAL4, ttl: 300 }]])),
      http: [CONTROL4],
      delay: Object.fromEntries(NAMES.map((n) => [n, HOLD_MS])),
      spoof: SPOOF,
    });
    as = asUid(w.runner, Number(run(['id', '-u', user]).trim()), Number(run(['id', '-g', user]).trim()));
    id = await startDaemon(w, join(tempDir('cordon-forged-'), 'config.json'), {
      id: `forged${process.pid}`,
      domains: parseDomains('*.a.test'),
      agentDomains: parseDomains('*.a.test'),
    });
    // As the attacker: the socket connected to the upstream's port 53 is the proxy's.
    const dns = DNS4.split('.')
      .map((b) => Number(b).toString(16).padStart(2, '0'))
      .reverse()
      .join('')
      .toUpperCase();
    const r = as.try(['cat', '/proc/net/udp']);
    upstreams = r.stdout
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f[2] === `${dns}:0035`)
      .map((f) => {
        const [addr, port] = f[1].split(':');
        return { address: fromHex(addr), port: parseInt(port, 16), uid: Number(f[7]) };
      });
  }, 60000);

  afterAll(async () => {
    await w?.destroy(id ? [id] : []);
    spawnSync('userdel', [user], { timeout: 15000 });
  });

  /** Starts `dig name` as the runner user; resolves with its answer lines (or its status). */
  function digLater(name: string): Promise<string> {
    const child = w.runner.spawn([
      'setpriv',
      `--reuid=${run(['id', '-u', user]).trim()}`,
      `--regid=${run(['id', '-g', user]).trim()}`,
      '--clear-groups',
      'dig',
      '@127.0.0.1',
      '+time=6',
      '+tries=1',
      '+short',
      name,
      'A',
    ]);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    return new Promise((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
      child.on('exit', (code) => {
        clearTimeout(timer);
        resolve(code === 0 ? out.trim() : `dig exit ${code}`);
      });
    });
  }

  /** The proxy's query of `name` as the upstream got it (bounded wait). */
  async function asked(name: string): Promise<{ port: number; id: number }> {
    for (let i = 0; i < 50; i++) {
      const q = w.queries.find((e) => e.q === name && e.proto === 'udp');
      if (q?.port !== undefined && q.id !== undefined) return { port: q.port, id: q.id };
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`the upstream never got ${name}`);
  }

  /**
   * The off-path forger: `answer` sent to each proxy socket from the upstream's address and
   * port 53, once per id in `ids`; one order a socket, each confirmed.
   */
  function spoof(answer: Buffer, ids: number[]): void {
    const script = `const s=require('dgram').createSocket('udp4');const m=JSON.parse(process.argv[1]);let n=0;
      s.on('message',()=>{if(++n===m.length)process.exit(0)});
      for(const x of m)s.send(JSON.stringify(x),${SPOOF.port},'${SPOOF.address}');
      setTimeout(()=>{console.error('forger did not confirm');process.exit(1)},5000);`;
    const orders = upstreams.map((u) => ({ to: u.address, port: u.port, hex: answer.toString('hex'), ids }));
    const r = w.internet.try([process.execPath, '-e', script, JSON.stringify(orders)], 10000);
    expect(r.code).toBe(0);
  }

  test('the runner user finds the proxies’ upstream sockets: cordon-dns’s, connected to the upstream', () => {
    // The runner's proxy and the agent's; the upstream sees queries come from one of them
    // (checked on each name below).
    expect(upstreams).toHaveLength(2);
    const dnsUid = Number(run(['id', '-u', 'cordon-dns']).trim());
    for (const u of upstreams) expect(u.uid).toBe(dnsUid);
  });

  test('from the runner user’s own socket, even with the id the proxy sent, an answer never arrives', async () => {
    const name = NAMES[0];
    const answer = digLater(name);
    const q = await asked(name);
    const upstream = upstreams.find((u) => u.port === q.port);
    expect(upstream).toBeDefined();
    // Every id near the real one, the real one first: the socket is connected, so the
    // kernel hands it nothing but the upstream's address and port.
    const script = `const s=require('dgram').createSocket('udp4');const [to,port,hex,first]=process.argv.slice(1);
      const base=Buffer.from(hex,'hex');let i=0;const next=()=>{if(i===256){console.log('sent');process.exit(0)}
      const b=Buffer.from(base);b.writeUInt16BE((+first+i++)&0xffff,0);s.send(b,+port,to,next)};next();`;
    const sent = as.try(
      [
        process.execPath,
        '-e',
        script,
        upstream!.address,
        String(upstream!.port),
        forgedAnswer(0, name, FORGED4).toString('hex'),
        String(q.id),
      ],
      10000,
    );
    expect(sent.stdout.trim()).toBe('sent');
    expect(await answer).toBe(REAL4);
  }, 20000);

  test('from the upstream’s own address and port, a wrong id or a question not asked never reaches the client', async () => {
    const before = (await requestReport(id)).forgedAnswers;
    const wrongId = digLater(NAMES[1]);
    const q1 = await asked(NAMES[1]);
    expect(upstreams.map((u) => u.port)).toContain(q1.port);
    spoof(
      forgedAnswer(0, NAMES[1], FORGED4),
      Array.from({ length: 256 }, (_, i) => (q1.id + 1 + i) & 0xffff),
    );
    expect(await wrongId).toBe(REAL4);
    // One after the other, so no wrong id above can be the next query's.
    const otherQuestion = digLater(NAMES[2]);
    const q2 = await asked(NAMES[2]);
    // With the id the proxy waits on: an answer to a name no one asked, and one to the
    // name the query before asked.
    spoof(forgedAnswer(0, 'forged-other.a.test', FORGED4), [q2.id]);
    spoof(forgedAnswer(0, NAMES[1], FORGED4), [q2.id]);
    expect(await otherQuestion).toBe(REAL4);
    // The two with the waiting id were read and refused; the wrong ids matched no query.
    expect((await requestReport(id)).forgedAnswers - before).toBe(2);
  }, 30000);

  test('no forged address went into a set, and the runner user cannot connect to it', () => {
    expect(sets('allow4')).not.toContain(FORGED4);
    expect(sets('agent4')).not.toContain(FORGED4);
    expect(connect(as, FORGED4, 80).result).toBe('ECONNREFUSED');
    // The real answer's address is open: the refusal is the fence's, not the network's.
    expect(connect(as, REAL4, 80).result).toBe('open');
  });

  test('control: the same forger with the id and the question right is taken, and opens its address', async () => {
    const answer = digLater(NAMES[3]);
    const q = await asked(NAMES[3]);
    spoof(forgedAnswer(0, NAMES[3], CONTROL4), [q.id]);
    expect(await answer).toBe(CONTROL4);
    expect(sets('allow4')).toContain(CONTROL4);
    expect(connect(as, CONTROL4, 80).result).toBe('open');
  }, 20000);

  // Not a forgery: the proxy's TCP client cap (T57) reaches the report the daemon hands post.
  test('connections held open past the proxy’s TCP cap are closed, and the report counts them', async () => {
    const script = `const net=require('net');const n=+process.argv[1];let open=0,closed=0;
      for(let i=0;i<n;i++){const c=net.connect(53,'127.0.0.1');c.on('error',()=>{});
        c.on('connect',()=>{if(++open===n)setTimeout(()=>{console.log(closed);process.exit(0)},500)});c.on('close',()=>closed++)}
      setTimeout(()=>{console.log('stuck '+open);process.exit(1)},15000);`;
    const r = w.runner.try([process.execPath, '-e', script, String(MAX_TCP_CLIENTS + 5)], 20000);
    expect(r.stdout.trim()).toBe('5');
    const report = await requestReport(id);
    expect(report.tcpEvicted).toBe(5);
    expect(toEvent(report).dns?.tcpEvicted).toBe(5);
  }, 30000);
});
