/**
 * A loopback CONNECT proxy, as a corporate proxy on a self-hosted runner would be: it
 * records each `CONNECT host:port` (and the Proxy-Authorization it came with), optionally
 * asks for a password, and pipes bytes both ways. Tests prove with it that each client goes
 * through HTTPS_PROXY, and around it for NO_PROXY hosts.
 */
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';

export interface ConnectProxy {
  url: string;
  /** `host:port` of each CONNECT, in order. */
  connects: string[];
  /** Proxy-Authorization headers seen, in order ('' when none). */
  auths: string[];
  close(): Promise<void>;
}

export async function startConnectProxy(opts: { requireAuth?: string } = {}): Promise<ConnectProxy> {
  const connects: string[] = [];
  const auths: string[] = [];
  const open = new Set<Socket>();
  const server: Server = createServer((_req, res) => {
    // Only tunnels: a client that sends a plain request here is not using CONNECT.
    res.writeHead(405).end();
  });
  server.on('connect', (req, client: Socket, head: Buffer) => {
    const target = req.url ?? '';
    connects.push(target);
    const auth = req.headers['proxy-authorization'] ?? '';
    auths.push(auth);
    open.add(client);
    client.on('close', () => open.delete(client));
    client.on('error', () => client.destroy());
    if (opts.requireAuth !== undefined && auth !== opts.requireAuth) {
      client.end('HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(target);
    if (!m) {
      client.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const upstream = connect({ host: m[1], port: Number(m[2]) });
    open.add(upstream);
    upstream.on('close', () => open.delete(upstream));
    upstream.once('connect', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.on('error', () => {
      if (!client.destroyed) client.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n');
    });
    client.on('close', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    connects,
    auths,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}
