// The "internet" for the egress tests, run inside its namespace: an authoritative-style
// DNS server that logs every query it gets (one JSON line on stdout each), optional
// forged answers sent from another address, and TCP/HTTP servers on several addresses.
// Config: one JSON argument { dns: [addr], zone: { name: [{type, value, ttl, later}] },
//   forge: { name: { from, address } }, delay: { name: ms }, spoof: { address, port },
//   http: [addr], tcp: [{address, port}] }.
// `delay` holds a name's UDP answer that long (the window a forger races). `spoof` is a
// control socket for an off-path forger that can fake its source: each datagram it gets,
// JSON { to, port, hex, ids }, has the message `hex` sent once per id in `ids` (written as
// its DNS id) from the DNS server's own socket of that family (so from the upstream's
// address and port 53), then "sent" goes back.
// A record with `later` answers `value` the first time its name and type are asked, then
// `later` (a rebinding owner's server).
import dgram from 'node:dgram';
import net from 'node:net';
import http from 'node:http';

const cfg = JSON.parse(process.argv[2]);
const TYPES = { A: 1, CNAME: 5, TXT: 16, AAAA: 28 };
const log = (o) => process.stdout.write(JSON.stringify(o) + '\n');
/** Names and types asked before (name/type), for records with `later`. */
const asked = new Set();
/** The DNS server's UDP socket per family, for `spoof`. */
const dnsSockets = {};

function readName(buf, off) {
  const labels = [];
  for (let i = 0; i < 128; i++) {
    const len = buf[off];
    if (len === 0) return { name: labels.join('.').toLowerCase(), end: off + 1 };
    labels.push(buf.toString('latin1', off + 1, off + 1 + len));
    off += 1 + len;
  }
  throw new Error('bad name');
}

function encodeName(name) {
  const parts = name.split('.').filter(Boolean);
  return Buffer.concat([
    ...parts.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p)])),
    Buffer.from([0]),
  ]);
}

function rdata(r) {
  if (r.type === 'A') return Buffer.from(r.value.split('.').map(Number));
  if (r.type === 'AAAA') {
    const [h, t] = r.value.split('::');
    const hs = h ? h.split(':') : [];
    const ts = t !== undefined && t ? t.split(':') : [];
    const g = t !== undefined ? [...hs, ...Array(8 - hs.length - ts.length).fill('0'), ...ts] : hs;
    const b = Buffer.alloc(16);
    g.forEach((x, i) => b.writeUInt16BE(parseInt(x, 16), i * 2));
    return b;
  }
  if (r.type === 'CNAME') return encodeName(r.value);
  if (r.type === 'TXT') return Buffer.concat([Buffer.from([r.value.length]), Buffer.from(r.value)]);
  throw new Error(`type ${r.type}`);
}

function answer(query, overrideA) {
  const q = readName(query, 12);
  const qtype = query.readUInt16BE(q.end);
  const question = query.subarray(12, q.end + 4);
  const records = [];
  let name = q.name;
  for (let hop = 0; hop < 8; hop++) {
    const rrs = cfg.zone[name];
    if (!rrs) break;
    const cname = rrs.find((r) => r.type === 'CNAME');
    if (cname && qtype !== TYPES.CNAME) {
      records.push({ owner: name, ...cname });
      name = cname.value;
      continue;
    }
    const again = asked.has(`${name}/${qtype}`);
    asked.add(`${name}/${qtype}`);
    for (const r of rrs)
      if (TYPES[r.type] === qtype) {
        const value = again && r.later ? r.later : r.value;
        records.push({ owner: name, ...r, value: overrideA && r.type === 'A' ? overrideA : value });
      }
    break;
  }
  const known = cfg.zone[q.name] !== undefined;
  const head = Buffer.alloc(12);
  head.writeUInt16BE(query.readUInt16BE(0), 0);
  head.writeUInt16BE(0x8400 | (query.readUInt16BE(2) & 0x0100) | 0x0080 | (known ? 0 : 3), 2);
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(records.length, 6);
  const rrs = records.map((r) => {
    const data = rdata(r);
    const fixed = Buffer.alloc(10);
    fixed.writeUInt16BE(TYPES[r.type], 0);
    fixed.writeUInt16BE(1, 2);
    fixed.writeUInt32BE(r.ttl ?? 300, 4);
    fixed.writeUInt16BE(data.length, 8);
    return Buffer.concat([encodeName(r.owner), fixed, data]);
  });
  return { name: q.name, qtype, buf: Buffer.concat([head, question, ...rrs]) };
}

for (const address of cfg.dns ?? []) {
  const type = net.isIP(address) === 6 ? 'udp6' : 'udp4';
  const udp = dgram.createSocket(type);
  dnsSockets[type] ??= udp;
  udp.on('message', (msg, rinfo) => {
    let a;
    try {
      a = answer(msg);
    } catch {
      return;
    }
    log({
      q: a.name,
      type: a.qtype,
      proto: 'udp',
      from: rinfo.address,
      port: rinfo.port,
      id: msg.readUInt16BE(0),
    });
    const forge = cfg.forge?.[a.name];
    if (forge) {
      const f = answer(msg, forge.address);
      const s = dgram.createSocket(net.isIP(forge.from) === 6 ? 'udp6' : 'udp4');
      s.bind(53, forge.from, () => s.send(f.buf, rinfo.port, rinfo.address, () => s.close()));
      setTimeout(() => udp.send(a.buf, rinfo.port, rinfo.address), 150);
      return;
    }
    const delay = cfg.delay?.[a.name];
    if (delay) {
      setTimeout(() => udp.send(a.buf, rinfo.port, rinfo.address), delay);
      return;
    }
    udp.send(a.buf, rinfo.port, rinfo.address);
  });
  udp.bind(53, address);
  net
    .createServer((c) => {
      let buf = Buffer.alloc(0);
      c.on('error', () => c.destroy());
      c.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const n = buf.readUInt16BE(0);
          const msg = buf.subarray(2, 2 + n);
          buf = buf.subarray(2 + n);
          const a = answer(msg);
          log({ q: a.name, type: a.qtype, proto: 'tcp', from: c.remoteAddress });
          const len = Buffer.alloc(2);
          len.writeUInt16BE(a.buf.length);
          c.write(Buffer.concat([len, a.buf]));
        }
      });
    })
    .listen(53, address);
}

if (cfg.spoof) {
  const control = dgram.createSocket(net.isIP(cfg.spoof.address) === 6 ? 'udp6' : 'udp4');
  control.on('message', (msg, rinfo) => {
    const { to, port, hex, ids } = JSON.parse(msg.toString());
    const from = dnsSockets[net.isIP(to) === 6 ? 'udp6' : 'udp4'];
    let i = 0;
    const next = () => {
      if (i === ids.length) return control.send('sent', rinfo.port, rinfo.address);
      const b = Buffer.from(hex, 'hex');
      b.writeUInt16BE(ids[i++], 0);
      from.send(b, port, to, next);
    };
    next();
  });
  control.bind(cfg.spoof.port, cfg.spoof.address);
}

for (const address of cfg.http ?? []) {
  http.createServer((req, res) => res.end(`hello from ${address}\n`)).listen(80, address);
}
for (const { address, port } of cfg.tcp ?? []) {
  net.createServer((c) => c.end(`open ${address} ${port}\n`)).listen(port, address);
}
setTimeout(() => log({ ready: true }), 200);
