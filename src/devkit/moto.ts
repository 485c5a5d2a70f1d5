/**
 * The moto server (preinstalled `moto_server`, Python) on a loopback port: the real AWS
 * emulator the tests and `cordon demo` call. Started and stopped by pid.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';

export interface Moto {
  endpoint: string;
  port: number;
  pid: number;
  /** Variables that steer the AWS SDK (and boto3) at the emulator. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

export function motoAvailable(): boolean {
  return spawnSync('sh', ['-c', 'command -v moto_server'], { stdio: 'ignore' }).status === 0;
}

export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export async function startMoto(opts: { timeoutMs?: number } = {}): Promise<Moto> {
  if (!motoAvailable()) {
    throw new Error(
      'moto_server is not on PATH: it comes preinstalled with Python 3.11 here (moto 5.2.1); install it with pip where you can',
    );
  }
  const port = await freePort();
  const child: ChildProcess = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, MOTO_ALLOW_NONEXISTENT_REGION: 'true' },
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    if (stderr.length < 4000) stderr += d.toString();
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (opts.timeoutMs ?? 30000);
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`moto_server exited with ${child.exitCode}: ${stderr}`);
    try {
      const res = await fetch(`${endpoint}/moto-api/`, { signal: AbortSignal.timeout(1000) });
      if (res.status < 500) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(
        `moto_server did not answer on ${endpoint} within ${opts.timeoutMs ?? 30000} ms: ${stderr}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    endpoint,
    port,
    pid: child.pid as number,
    env: {
      AWS_ENDPOINT_URL: endpoint,
      AWS_ACCESS_KEY_ID: 'testing',
      AWS_SECRET_ACCESS_KEY: 'testing',
      AWS_REGION: 'us-east-1',
      AWS_DEFAULT_REGION: 'us-east-1',
    },
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const t = setTimeout(() => child.kill('SIGKILL'), 3000);
        child.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
}

/** Secrets Manager's JSON protocol, straight to the emulator (moto reads the region from the signature scope). */
export async function createMotoSecret(endpoint: string, name: string, value: string): Promise<void> {
  const res = await fetch(endpoint, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-amz-json-1.1',
      'x-amz-target': 'secretsmanager.CreateSecret',
      authorization:
        'AWS4-HMAC-SHA256 Credential=demo/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0',
    },
    body: JSON.stringify({ Name: name, SecretString: value }),
  });
  if (!res.ok)
    throw new Error(`could not create the secret ${name} in moto: HTTP ${res.status} ${await res.text()}`);
}
