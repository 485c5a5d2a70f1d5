/**
 * Cordon's DNS proxy alone, for bench/dns-hops.ts: `<port> <upstream port> <on|off>` serves
 * UDP on 127.0.0.1:<port>, forwarding `bench.a.test` to 127.0.0.1:<upstream port>, with the
 * answer cache on or off. The set check is given addresses that are already allowed (what
 * the daemon's AllowSets answers for a name asked again); prints `ready` once it serves.
 */
import dgram from 'node:dgram';
import { DnsProxy } from '../src/fence/proxy.js';
import { DomainMatcher, parseDomain } from '../src/fence/policy.js';

const [port, upstream, cache] = process.argv.slice(2);
const proxy = new DnsProxy({
  matcher: new DomainMatcher([parseDomain('bench.a.test')]),
  policy: 'block',
  upstream: { address: '127.0.0.1', port: Number(upstream) },
  sink: { ensure: () => undefined },
  cache: cache === 'off' ? false : undefined,
});
await proxy.connectUpstream();
const sock = dgram.createSocket('udp4');
sock.bind(Number(port), '127.0.0.1', () => {
  proxy.serveUdp(sock);
  process.stdout.write('ready\n');
});
