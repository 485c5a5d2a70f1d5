// The agent's raw client for the web gate's hostile tests (egress-webgate-hostile.test.ts):
// run as the agent's user in the "runner" namespace. Two modes, one JSON argument.
//
// talk: { host, port, steps: [{ after?: hex, send: hex }], ms } connects once and, step by
// step, waits until the bytes received so far include `after` (when given) and then writes
// `send`; then waits `ms` for more. Prints { got (hex), error, closed }: what the server sent
// back, and the socket's error code (ECONNRESET when the gate reset it).
//
// hold: { host, port, count, request } opens `count` connections that send nothing, then
// one more that sends `request`, then closes the held ones and (every 300 ms, at most 20
// times) tries `request` again on a new connection until one is answered. Prints
// { held, extra: { got, error }, after: { got, error, tries } }. Every socket is destroyed
// however it ends; the whole run is bounded by 30 s.
import net from 'node:net';

const cfg = JSON.parse(process.argv[2]);
const hex = (s) => Buffer.from(s ?? '', 'hex');
const bail = setTimeout(() => {
  console.log(JSON.stringify({ error: 'the client ran out of its 30 s' }));
  process.exit(1);
}, 30000);

/** One connection: writes the steps in turn, resolves with what came back and how it ended. */
function talk(steps, ms) {
  return new Promise((resolve) => {
    const c = net.connect({ host: cfg.host, port: cfg.port });
    let got = Buffer.alloc(0);
    let error = '';
    let at = 0;
    const next = () => {
      while (at < steps.length && (!steps[at].after || got.includes(hex(steps[at].after))))
        c.write(hex(steps[at++].send));
    };
    c.on('connect', next);
    c.on('data', (d) => {
      got = Buffer.concat([got, d]);
      next();
    });
    c.on('error', (e) => (error = e.code ?? e.message));
    const timer = setTimeout(() => c.destroy(), ms);
    c.on('close', () => {
      clearTimeout(timer);
      resolve({ got: got.toString('hex'), error, closed: at === steps.length });
    });
  });
}

async function hold() {
  const held = [];
  try {
    await new Promise((resolve, reject) => {
      let up = 0;
      for (let i = 0; i < cfg.count; i++) {
        const c = net.connect({ host: cfg.host, port: cfg.port });
        c.on('error', () => {});
        c.on('close', () => reject(new Error(`a held connection closed early (${up} open)`)));
        c.on('connect', () => ++up === cfg.count && resolve());
        held.push(c);
      }
    });
    // The gate accepts what the kernel queued: give it time to count them all.
    await new Promise((r) => setTimeout(r, 1000));
    const extra = await talk([{ send: cfg.request }], 3000);
    for (const c of held) c.removeAllListeners('close');
    const count = held.length;
    for (const c of held.splice(0)) c.destroy();
    return { held: count, extra, after: await again() };
  } finally {
    for (const c of held) c.destroy();
  }
}

async function again() {
  let r;
  for (let tries = 1; tries <= 20; tries++) {
    await new Promise((res) => setTimeout(res, 300));
    r = await talk([{ send: cfg.request }], 3000);
    if (r.got) return { ...r, tries };
  }
  return { ...r, tries: 20 };
}

const out = cfg.count ? await hold() : await talk(cfg.steps, cfg.ms);
clearTimeout(bail);
console.log(JSON.stringify(out));
