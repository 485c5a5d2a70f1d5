// Fills the agent's blocked set from the agent's own uid (egress-sni.test.ts): TCP to
// `count` destinations no answer opened (one address, port after port, then the next
// address), each refused by the filter and recorded. Prints `done <refused>`.
// Config: one JSON argument { base: "192.0.2.", count: n }.
import net from 'node:net';

const { base, count } = JSON.parse(process.argv[2]);
const IN_FLIGHT = 256;
let next = 0;
let refused = 0;
let open = 0;
const start = () => {
  while (open < IN_FLIGHT && next < count) {
    const i = next++;
    const c = net.connect({ host: `${base}${1 + Math.floor(i / 65535)}`, port: 1 + (i % 65535) });
    open++;
    const settle = () => {
      open--;
      c.destroy();
      if (next < count) start();
      else if (!open) process.stdout.write(`done ${refused}\n`);
    };
    c.once('error', () => (refused++, settle()));
    c.once('connect', settle);
    c.setTimeout(3000, () => settle());
  }
};
start();
