// Two sites on one address, as a CDN edge serves them, for the web gate's test
// (egress-sni.test.ts): run inside the "internet" namespace. HTTP on port 80 and HTTPS on
// port 443 of every address given, each answering which site was asked for: the TLS
// server name (`tls <name>`) and the Host header (`host <name>`).
// Config: one JSON argument { addresses: [addr], cert: path, key: path }.
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';

const cfg = JSON.parse(process.argv[2]);
const answer = (req, res) => {
  const sni = req.socket.servername;
  res.end(`${sni === undefined ? '' : `tls ${sni || 'none'} `}host ${req.headers.host ?? 'none'}\n`);
};
const tls = { cert: readFileSync(cfg.cert), key: readFileSync(cfg.key) };
let waiting = cfg.addresses.length * 2;
const ready = () => {
  if (--waiting === 0) process.stdout.write('ready\n');
};
for (const address of cfg.addresses) {
  http.createServer(answer).listen(80, address, ready);
  https.createServer(tls, answer).listen(443, address, ready);
}
