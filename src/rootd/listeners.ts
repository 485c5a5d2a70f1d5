/** The DNS proxy's port 53 sockets, bound as root before the daemon gives up root. */
import dgram from 'node:dgram';
import net from 'node:net';
import { describeError } from '../platform/errors.js';
import { BUFFER_BYTES } from '../fence/proxy.js';

export interface Listeners {
  udp4: dgram.Socket;
  tcp4: net.Server;
  udp6?: dgram.Socket;
  tcp6?: net.Server;
  /** Port 53 on every address (needed for containers' redirected DNS), or loopback only. */
  wildcard: boolean;
  /** The agent's proxy: one port on 127.0.0.1 (and ::1 when there is IPv6), its DNS redirected there. */
  agent: { port: number; udp: dgram.Socket[]; tcp: net.Server[] };
  /** The agent's web gate (fence/webgate.ts): a port each for its port 80 and 443 connections, on 127.0.0.1 (and ::1). */
  web: { http: GatePort; https: GatePort };
  /** Closes every socket above. */
  close(): void;
}

function bindUdp(type: 'udp4' | 'udp6', address: string, port = 53): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket({
      type,
      ipv6Only: type === 'udp6',
      reuseAddr: true,
      recvBufferSize: BUFFER_BYTES,
      sendBufferSize: BUFFER_BYTES,
    });
    s.once('error', reject);
    s.bind(port, address, () => {
      s.off('error', reject);
      resolve(s);
    });
  });
}

export interface GatePort {
  port: number;
  servers: net.Server[];
}

function listenTcp(host: string, ipv6Only: boolean, port = 53, allowHalfOpen = false): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    // The gate joins two connections: one side's end must not close the other direction.
    const s = net.createServer({ allowHalfOpen });
    s.once('error', reject);
    s.listen({ port, host, ipv6Only }, () => {
      s.off('error', reject);
      resolve(s);
    });
  });
}

/**
 * Port 53 on every address, so the bridge redirect lands on the proxy; when another
 * server already holds port 53 on some address (systemd-resolved's stub on 127.0.0.53),
 * the wildcard bind fails and the proxy falls back to loopback only. On failure nothing
 * stays bound.
 */
export async function bindListeners(log: (l: string) => void): Promise<Listeners> {
  const attempt = async (v4: string, v6: string): Promise<Listeners> => {
    const closers: (() => void)[] = [];
    const close = (): void => {
      for (const c of closers) c();
    };
    try {
      const udp4 = await bindUdp('udp4', v4);
      closers.push(() => udp4.close());
      const tcp4 = await listenTcp(v4, false);
      closers.push(() => tcp4.close());
      let udp6: dgram.Socket | undefined;
      let tcp6: net.Server | undefined;
      try {
        udp6 = await bindUdp('udp6', v6);
        closers.push(() => udp6?.close());
        tcp6 = await listenTcp(v6, true);
        closers.push(() => tcp6?.close());
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE') throw e;
        log(`no IPv6 listener: ${describeError(e)}`);
      }
      const agent = await bindAgent(udp6 !== undefined, closers);
      const web = {
        http: await bindGate(udp6 !== undefined, closers),
        https: await bindGate(udp6 !== undefined, closers),
      };
      return { udp4, tcp4, udp6, tcp6, wildcard: v4 === '0.0.0.0', agent, web, close };
    } catch (e) {
      close();
      throw e;
    }
  };
  try {
    return await attempt('0.0.0.0', '::');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    log(`port 53 is taken on some address (${describeError(e)}); listening on loopback only`);
    return attempt('127.0.0.1', '::1');
  }
}

/**
 * The agent's proxy on loopback: a port the kernel picks for UDP on 127.0.0.1, then the
 * same port for TCP (and on ::1); when another socket holds it there, another try.
 * What it binds is added to `closers`.
 */
async function bindAgent(ipv6: boolean, closers: (() => void)[]): Promise<Listeners['agent']> {
  for (let attempt = 0; ; attempt++) {
    const mine: (() => void)[] = [];
    try {
      const first = await bindUdp('udp4', '127.0.0.1', 0);
      mine.push(() => first.close());
      const port = first.address().port;
      const udp = [first];
      const tcp = [await listenTcp('127.0.0.1', false, port)];
      mine.push(() => tcp[0].close());
      if (ipv6) {
        const u6 = await bindUdp('udp6', '::1', port);
        mine.push(() => u6.close());
        udp.push(u6);
        const t6 = await listenTcp('::1', true, port);
        mine.push(() => t6.close());
        tcp.push(t6);
      }
      closers.push(...mine);
      return { port, udp, tcp };
    } catch (e) {
      for (const c of mine) c();
      if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 4) throw e;
    }
  }
}

/** A web gate port: one the kernel picks on 127.0.0.1, the same on ::1; closed by `closers`. */
async function bindGate(ipv6: boolean, closers: (() => void)[]): Promise<GatePort> {
  for (let attempt = 0; ; attempt++) {
    const mine: (() => void)[] = [];
    try {
      const first = await listenTcp('127.0.0.1', false, 0, true);
      mine.push(() => first.close());
      const port = (first.address() as net.AddressInfo).port;
      const servers = [first];
      if (ipv6) {
        const s6 = await listenTcp('::1', true, port, true);
        mine.push(() => s6.close());
        servers.push(s6);
      }
      closers.push(...mine);
      return { port, servers };
    } catch (e) {
      for (const c of mine) c();
      if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 4) throw e;
    }
  }
}
