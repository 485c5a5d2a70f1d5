/**
 * The command's side of the broker, kept tiny (no dependencies) because git runs it for
 * every fetch and push:
 *   node helper.js git-credential get   a git credential helper (username/password lines)
 *   node helper.js gh-token             prints a current installation token (for GH_TOKEN)
 * It reads CORDON_BROKER_URL and CORDON_BROKER_TOKEN from its environment.
 */
const [, , command, action] = process.argv;

async function currentToken(): Promise<{ token: string; expiresAt: string }> {
  const url = process.env.CORDON_BROKER_URL;
  const bearer = process.env.CORDON_BROKER_TOKEN;
  if (!url || !bearer) throw new Error('CORDON_BROKER_URL and CORDON_BROKER_TOKEN are not set');
  const res = await fetch(`${url}/github/token`, {
    headers: { authorization: `Bearer ${bearer}` },
    signal: AbortSignal.timeout(60000),
  });
  if (!res.ok) throw new Error(`the broker answered HTTP ${res.status}`);
  return (await res.json()) as { token: string; expiresAt: string };
}

function readStdin(): Promise<string> {
  return new Promise((resolve) => {
    let s = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (d: string) => (s += d));
    process.stdin.on('end', () => resolve(s));
  });
}

async function main(): Promise<number> {
  if (command === 'gh-token') {
    process.stdout.write(`${(await currentToken()).token}\n`);
    return 0;
  }
  if (command === 'git-credential') {
    // git sends the request on stdin for every action; only `get` is answered.
    await readStdin();
    if (action !== 'get') return 0;
    const t = await currentToken();
    const expiry = Math.floor(Date.parse(t.expiresAt) / 1000);
    process.stdout.write(
      `username=x-access-token\npassword=${t.token}\n${expiry > 0 ? `password_expiry_utc=${expiry}\n` : ''}`,
    );
    return 0;
  }
  process.stderr.write('usage: helper.js git-credential <get|store|erase> | gh-token\n');
  return 2;
}

main().then(
  (code) => (process.exitCode = code),
  (e: unknown) => {
    process.stderr.write(`cordon broker: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
