/**
 * The web gate's promises (docs/egress.md "The agent's web connections: checked by name",
 * threat T17) attacked end to end, as the agent's user through the real fence: the bundled
 * daemon in a "runner" namespace, one address in the "internet" namespace serving
 * `allowed.test` (on the agent's list) and `other.test` (not) over HTTP and HTTPS, as
 * egress-sni.test.ts sets it up. The agent speaks raw bytes (egress-gate-client.mjs): each
 * hostile request is checked to be reset with nothing from the site, recorded as the docs
 * say, and beside it a control with the same bytes but the one thing changed passes, so a
 * gate that let the attack through would fail the test. Needs root, nft, ip, dig, openssl,
 * useradd and setpriv.
 */
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stop } from '../../src/devkit/netns.js';
import { parseDomains } from '../../src/fence/policy.js';
import { requestReport, stateDir } from '../../src/rootd/protocol.js';
import { MAX_GATE_CONNECTIONS } from '../../src/fence/webgate.js';
import {
  World,
  addAgentUser,
  asUid,
  dig,
  egressSuite,
  startSites,
  startDaemon,
  type Runs,
} from './egress-topology.js';
import { tempDir } from '../harness/tmp.js';
import { selfSignedCert } from '../harness/tls.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const suite = egressSuite('egress-webgate-hostile', ['openssl']);

const SHARED4 = '203.0.113.62';
const ALLOWED = 'allowed.test';
const OTHER = 'other.test';

const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 255]);
const u24 = (n: number): Buffer => Buffer.from([n >> 16, (n >> 8) & 255, n & 255]);
const ext = (type: number, data: Buffer): Buffer => Buffer.concat([u16(type), u16(data.length), data]);
const entry = (name: string): Buffer =>
  Buffer.concat([Buffer.from([0]), u16(name.length), Buffer.from(name)]);
/** A server_name extension listing `names` (one entry each). */
const sni = (...names: string[]): Buffer => {
  const list = Buffer.concat(names.map(entry));
  return ext(0, Buffer.concat([u16(list.length), list]));
};
const EARLY_DATA = ext(0x2a, Buffer.alloc(0));
/** An ECH extension (RFC 9849, type 0xfe0d) of the outer kind: config id, enc and payload are opaque here. */
const ECH = ext(
  0xfe0d,
  Buffer.concat([Buffer.from([0, 0, 1, 0, 1, 7]), u16(32), randomBytes(32), u16(64), randomBytes(64)]),
);

/**
 * A TLS 1.3 ClientHello record (TLS_AES_128_GCM_SHA256, x25519): `extra` extensions go
 * after the usual ones; `share` false sends an empty key_share, so the server answers with
 * a HelloRetryRequest.
 */
function hello(names: Buffer | undefined, extra: Buffer[] = [], share = true): Buffer {
  const exts = Buffer.concat([
    ...(names ? [names] : []),
    ext(0x2b, Buffer.from([2, 3, 4])),
    ext(10, Buffer.from([0, 2, 0, 0x1d])),
    ext(13, Buffer.from([0, 4, 4, 3, 8, 4])),
    ext(0x33, share ? Buffer.concat([u16(36), u16(0x1d), u16(32), randomBytes(32)]) : u16(0)),
    ...extra,
  ]);
  const body = Buffer.concat([
    Buffer.from([3, 3]),
    randomBytes(32),
    Buffer.from([32]),
    randomBytes(32),
    u16(2),
    Buffer.from([0x13, 0x01]),
    Buffer.from([1, 0]),
    u16(exts.length),
    exts,
  ]);
  const hs = Buffer.concat([Buffer.from([1]), u24(body.length), body]);
  return Buffer.concat([Buffer.from([22, 3, 1]), u16(hs.length), hs]);
}
const CCS = Buffer.from([20, 3, 3, 0, 1, 1]);
/** The types of the TLS records in `b`, in order (a last one cut short included). */
function types(b: Buffer): number[] {
  const out: number[] = [];
  for (let at = 0; at + 5 <= b.length; at += 5 + b.readUInt16BE(at + 3)) out.push(b[at]);
  return out;
}
/** An application_data record, as 0-RTT early data looks on the wire (any bytes: the server cannot read it). */
const appData = (): Buffer => Buffer.concat([Buffer.from([23, 3, 3]), u16(64), randomBytes(64)]);

type Step = { after?: Buffer | string; send: Buffer | string };
type Talk = { got: string; error: string; closed: boolean };

suite("the agent's web gate, attacked end to end", () => {
  const user = `cwgh${process.pid % 100000}`;
  let uid = 0;
  let gid = 0;
  let w: World;
  let id: string;
  let agent: Runs;
  let sites: ChildProcess | undefined;

  /** One raw conversation as the agent, to the shared address; what came back (text) and how it ended. */
  /** The client's one JSON line; when it printed none, what it said instead (it failed to run). */
  const clientSaid = (r: { stdout: string; stderr: string; code: number | null }): unknown => {
    try {
      return JSON.parse(r.stdout.trim());
    } catch {
      throw new Error(`the agent's client printed no result (status ${r.code}): ${r.stderr.slice(-800)}`);
    }
  };
  const talk = (port: 80 | 443, steps: Step[], ms = 2500): { text: string; bytes: Buffer; error: string } => {
    const hex = (b: Buffer | string): string => Buffer.from(b).toString('hex');
    const arg = {
      host: SHARED4,
      port,
      ms,
      steps: steps.map((s) => ({ send: hex(s.send), after: s.after && hex(s.after) })),
    };
    const r = agent.try([process.execPath, join(HERE, 'egress-gate-client.mjs'), JSON.stringify(arg)], 40000);
    const out = clientSaid(r) as Talk;
    const bytes = Buffer.from(out.got, 'hex');
    return { text: bytes.toString('latin1'), bytes, error: out.error };
  };
  const get = (head: string, body = ''): Step[] => [{ send: `${head}\r\n\r\n${body}` }];
  /** The daemon's log lines for the gate's resets to the shared address on `port`, with why. */
  const resets = (port: number): string[] =>
    readFileSync(join(stateDir(id), 'daemon.log'), 'utf8')
      .split('\n')
      .filter((l) => l.includes(`web gate: reset an agent connection to ${SHARED4} port ${port}: `));
  /** Waits (at most 3 s) for `n` more reset lines than `before`; the new ones. */
  const newResets = async (port: number, before: number, n: number): Promise<string[]> => {
    for (let i = 0; i < 30 && resets(port).length < before + n; i++)
      await new Promise((r) => setTimeout(r, 100));
    return resets(port).slice(before);
  };
  const blocked = (): string => w.runner.exec(['nft', 'list', 'set', 'inet', 'cordon', 'agentblocked4']);

  beforeAll(async () => {
    ({ uid, gid } = addAgentUser(user, 11));
    const dir = tempDir('cordon-wgh-');
    const { cert, key } = selfSignedCert(dir, [ALLOWED, OTHER]);
    w = new World('h');
    w.internet.addAddress('lo', `${SHARED4}/32`);
    await w.serve({
      zone: {
        [ALLOWED]: [{ type: 'A', value: SHARED4, ttl: 300 }],
        [OTHER]: [{ type: 'A', value: SHARED4, ttl: 300 }],
      },
    });
    const started = startSites(w, { addresses: [SHARED4], cert, key });
    sites = started.child;
    await started.ready;
    id = await startDaemon(w, join(dir, 'config.json'), {
      id: `wgh${process.pid}`,
      domains: parseDomains(`${ALLOWED}\n${OTHER}`),
      agentDomains: parseDomains(ALLOWED),
    });
    agent = asUid(w.runner, uid, gid);
    expect(dig(agent, ALLOWED).answers).toEqual([SHARED4]);
  }, 60000);

  afterAll(async () => {
    await stop(sites);
    await w?.destroy(id ? [id] : []);
    spawnSync('userdel', [user], { timeout: 15000 });
  });

  /** A TLS answer from the site: its first record (ServerHello, HelloRetryRequest or an alert). */
  const tlsAnswered = (r: { bytes: Buffer }): boolean => r.bytes.length >= 5 && [21, 22].includes(r.bytes[0]);

  test('hostile: an encrypted ClientHello (ECH) whose outer server name is the allowed one is reset, and recorded', async () => {
    const before = resets(443).length;
    const ech = talk(443, [{ send: hello(sni(ALLOWED), [ECH]) }]);
    expect(ech.bytes).toHaveLength(0);
    expect(ech.error).toBe('ECONNRESET');
    // The draft's ESNI extension (0xffce) the same.
    const esni = talk(443, [{ send: hello(sni(ALLOWED), [ext(0xffce, randomBytes(40))]) }]);
    expect(esni.bytes).toHaveLength(0);
    expect(esni.error).toBe('ECONNRESET');
    // Recorded: a log line each (address and port, never the name), the destination in the
    // agent's blocked set.
    const lines = await newResets(443, before, 2);
    expect(lines).toEqual([
      expect.stringMatching(/: unreadable start$/),
      expect.stringMatching(/: unreadable start$/),
    ]);
    expect(lines.join('\n')).not.toContain(ALLOWED);
    expect(blocked()).toContain(`${SHARED4} . tcp . 443`);
    // Control: the same ClientHello without ECH reaches the site, which answers it.
    expect(tlsAnswered(talk(443, [{ send: hello(sni(ALLOWED)) }]))).toBe(true);
  });

  test('hostile: a ClientHello with two server names, two server_name extensions, or none is reset', async () => {
    const before = resets(443).length;
    for (const h of [
      hello(sni(ALLOWED, OTHER)),
      hello(sni(ALLOWED, ALLOWED)),
      hello(sni(ALLOWED), [sni(OTHER)]),
      hello(undefined),
    ]) {
      const r = talk(443, [{ send: h }]);
      expect(r.bytes).toHaveLength(0);
      expect(r.error).toBe('ECONNRESET');
    }
    expect(await newResets(443, before, 4)).toHaveLength(4);
    expect(tlsAnswered(talk(443, [{ send: hello(sni(ALLOWED)) }]))).toBe(true);
  });

  test('hostile: a second ClientHello naming another site after a HelloRetryRequest, behind a fake early-data record, is reset', async () => {
    // The first ClientHello names the allowed site, offers early data and no key share, so
    // the server asks again (HelloRetryRequest). An application_data record then reads as
    // rejected 0-RTT data, which the server skips (RFC 8446 4.2.10); the ClientHello after
    // it names the other site.
    const hrr = Buffer.from([22, 3, 3]);
    const first = hello(sni(ALLOWED), [EARLY_DATA], false);
    const smuggled = talk(443, [
      { send: first },
      { after: hrr, send: Buffer.concat([appData(), CCS, hello(sni(OTHER))]) },
    ]);
    expect(smuggled.bytes.subarray(0, 3)).toEqual(hrr);
    // Only the HelloRetryRequest (and the server's compatibility CCS) came back: no
    // ServerHello for the other name.
    expect(types(smuggled.bytes)).toEqual([22, 20]);
    expect(smuggled.error).toBe('ECONNRESET');
    // Without the early-data record, as the docs said before: reset.
    const plain = talk(443, [{ send: first }, { after: hrr, send: Buffer.concat([CCS, hello(sni(OTHER))]) }]);
    expect(types(plain.bytes)).toEqual([22, 20]);
    expect(plain.error).toBe('ECONNRESET');
    // Control: the same with the allowed name in the second ClientHello: the server answers it.
    const ok = talk(443, [
      { send: first },
      { after: hrr, send: Buffer.concat([appData(), CCS, hello(sni(ALLOWED))]) },
    ]);
    expect(ok.error).toBe('');
    expect(types(ok.bytes).slice(0, 3)).toEqual([22, 20, 22]);
  });

  test('hostile: plain HTTP with two Host headers, none, a folded Host, or HTTP/2 without TLS is reset; one allowed Host passes', async () => {
    const before = resets(80).length;
    const heads = [
      `GET / HTTP/1.1\r\nHost: ${ALLOWED}\r\nHost: ${OTHER}`,
      `GET / HTTP/1.1\r\nHost: ${OTHER}\r\nHost: ${ALLOWED}`,
      'GET / HTTP/1.1\r\nAccept: */*',
      'GET / HTTP/1.0',
      `GET / HTTP/1.1\r\nHost: ${ALLOWED}\r\n ${OTHER}`,
      `GET / HTTP/1.1\r\nHost:\r\n\t${ALLOWED}`,
      `GET / HTTP/1.1\r\nX-Note: a\r\n Host: ${OTHER}\r\nHost: ${ALLOWED}`,
      // h2c by Upgrade, and the prior-knowledge preface.
      `GET / HTTP/1.1\r\nHost: ${ALLOWED}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA`,
    ];
    for (const head of heads) {
      const r = talk(80, get(head));
      expect({ head, text: r.text, error: r.error }).toEqual({ head, text: '', error: 'ECONNRESET' });
    }
    // The HTTP/2 connection preface and a SETTINGS frame.
    const h2 = talk(80, [
      {
        send: Buffer.concat([
          Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
          Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]),
        ]),
      },
    ]);
    expect(h2).toEqual({ text: '', bytes: Buffer.alloc(0), error: 'ECONNRESET' });
    expect(await newResets(80, before, heads.length + 1)).toHaveLength(heads.length + 1);
    // Control: one Host, the allowed one.
    expect(talk(80, get(`GET / HTTP/1.1\r\nHost: ${ALLOWED}\r\nConnection: close`)).text).toContain(
      `host ${ALLOWED}`,
    );
  });

  test('hostile: domain fronting over plain HTTP (the allowed address, another Host) is reset; the allowed Host passes', async () => {
    const before = resets(80).length;
    for (const head of [
      `GET / HTTP/1.1\r\nHost: ${OTHER}`,
      `GET / HTTP/1.1\r\nHost: ${OTHER.toUpperCase()}.:80`,
      `GET http://${OTHER}/ HTTP/1.1\r\nHost: ${ALLOWED}`,
      `GET http://${ALLOWED}@${OTHER}/ HTTP/1.1\r\nHost: ${ALLOWED}`,
    ]) {
      const r = talk(80, get(head));
      expect({ head, text: r.text, error: r.error }).toEqual({ head, text: '', error: 'ECONNRESET' });
    }
    const lines = await newResets(80, before, 4);
    expect(lines.filter((l) => l.endsWith(': name off the list'))).toHaveLength(2);
    expect(lines.join('\n')).not.toContain(OTHER);
    expect(blocked()).toContain(`${SHARED4} . tcp . 80`);
    expect(talk(80, get(`GET / HTTP/1.1\r\nHost: ${ALLOWED}\r\nConnection: close`)).text).toContain(
      `host ${ALLOWED}`,
    );
    expect(
      talk(80, get(`GET http://${ALLOWED}/ HTTP/1.1\r\nHost: ${ALLOWED}:80\r\nConnection: close`)).text,
    ).toContain(`host ${ALLOWED}`);
  });

  test('hostile: Expect: 100-continue, a body sent after the 100 that holds a request for another site, and that request pipelined after it', () => {
    const smuggle = `GET / HTTP/1.1\r\nHost: ${OTHER}\r\n\r\n`;
    const expectHead = (length: number): string =>
      `POST / HTTP/1.1\r\nHost: ${ALLOWED}\r\nExpect: 100-continue\r\nContent-Length: ${length}\r\n\r\n`;
    // The body follows only after the server's 100: it goes on, the site answers.
    const plain = talk(80, [{ send: expectHead(5) }, { after: ' 100 Continue', send: 'hello' }]);
    expect(plain.text).toMatch(/^HTTP\/1\.1 100 Continue\r\n/);
    expect(plain.text).toContain(`host ${ALLOWED}`);
    // A body that is a request for the other site: the gate counts it through as the body, and
    // so does the site (it read it as the body): one answer, for the allowed site.
    const inBody = talk(80, [
      { send: expectHead(smuggle.length) },
      { after: ' 100 Continue', send: smuggle },
    ]);
    expect(inBody.text).toContain(`host ${ALLOWED}`);
    expect(inBody.text).not.toContain(`host ${OTHER}`);
    // The same request after the body, on the same connection: the gate reads it as the next
    // request, and resets the connection before it goes on.
    const after = talk(80, [
      { send: expectHead(5) },
      { after: ' 100 Continue', send: 'hello' },
      { after: `host ${ALLOWED}`, send: smuggle },
    ]);
    expect(after.text).toContain(`host ${ALLOWED}`);
    expect(after.text).not.toContain(`host ${OTHER}`);
    expect(after.error).toBe('ECONNRESET');
    // Not waiting for the 100: the head, the body and the other request in one write.
    const piped = talk(80, [{ send: `${expectHead(5)}hello${smuggle}` }]);
    expect(piped.text).not.toContain(`host ${OTHER}`);
    expect(piped.error).toBe('ECONNRESET');
  });

  test('hostile: 512 stalled connections held by the agent; the next one is reset, and once they close a new one passes', async () => {
    expect(MAX_GATE_CONNECTIONS).toBe(512);
    const before = (await requestReport(id)).webGate?.overCap ?? 0;
    const arg = {
      host: SHARED4,
      port: 80,
      count: MAX_GATE_CONNECTIONS,
      request: Buffer.from(`GET / HTTP/1.1\r\nHost: ${ALLOWED}\r\nConnection: close\r\n\r\n`).toString('hex'),
    };
    const r = agent.try([process.execPath, join(HERE, 'egress-gate-client.mjs'), JSON.stringify(arg)], 40000);
    const out = clientSaid(r) as { held: number; extra: Talk; after: Talk & { tries: number } };
    expect(out.held).toBe(MAX_GATE_CONNECTIONS);
    // Reset as the gate takes it: maybe before the client's request was written.
    expect(out.extra).toMatchObject({ got: '', error: 'ECONNRESET' });
    expect(Buffer.from(out.after.got, 'hex').toString()).toContain(`host ${ALLOWED}`);
    expect((await requestReport(id)).webGate?.overCap).toBe(before + 1);
  }, 60000);
});
