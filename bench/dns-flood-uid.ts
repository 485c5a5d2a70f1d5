/**
 * The per-uid DNS limit (firewall.ts DNS_FLOOD_PER_UID), measured: `npx tsx bench/dns-flood-uid.ts`.
 * The fence's daemon in a namespace (test/e2e/egress-topology.ts). In turn, for ROUNDS
 * rounds: root (whom the per-uid limit spares, so as every user was before it) and then a
 * plain uid send refused names from 64 UDP sockets, each under the per-socket limit
 * (test/e2e/dns-load.py), until the lookups are done, while another uid looks an allowed name up
 * LOOKUPS times, 300 ms apart (1 s between tries, 5 tries). Per flood: what was sent, what the proxies
 * refused a second (what they drained), what the kernel dropped, and the lookups.
 * Results replace the `<!-- flood-uid -->` section of bench/RESULTS-egress.md.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { stop } from '../src/devkit/netns.js';
import { REPO_ROOT } from '../src/devkit/run-action.js';
import { parseDomains } from '../src/fence/policy.js';
import { DNS_FLOOD_PER_UID } from '../src/fence/firewall.js';
import { requestReport } from '../src/rootd/protocol.js';
import { World, startDaemon } from '../test/e2e/egress-topology.js';
import { tempDir } from '../test/harness/tmp.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
/** The flood's bound; it is stopped once the lookups are done. */
const FLOOD_SECS = 90;
const LOOKUPS = 10;
const LOAD = join(REPO_ROOT, 'test', 'e2e', 'dns-load.py');
const RUNNER_UID = 62990;
const FLOOD_UID = 62991;
const as = (uid: number): string[] => ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups'];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function output(child: ChildProcess, timeoutMs: number): Promise<string> {
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve) => {
    const t = setTimeout(() => void stop(child), timeoutMs);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(out.trim());
    });
  });
}

interface Row {
  who: string;
  secs: number;
  sent: number;
  drained: number;
  dropped: number;
  lookups: { tries: number; rcode: number | null; us: number }[];
}

async function main(): Promise<void> {
  const dir = tempDir('cordon-bench-flooduid-');
  const w = new World('b');
  const kids: ChildProcess[] = [];
  const id = `flooduid${process.pid}`;
  try {
    await w.serve();
    await startDaemon(w, join(dir, 'config.json'), {
      id,
      domains: parseDomains('www.a.test'),
      agentDomains: parseDomains('www.a.test'),
    });
    const rows: Row[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (const [who, uid] of [
        ['root (spared)', 0],
        [`uid ${FLOOD_UID} (limited)`, FLOOD_UID],
      ] as const) {
        const before = (await requestReport(id)).refusals;
        // Two processes of 32 sockets, one per core.
        const floods = [0, 1].map(() =>
          w.runner.spawn([
            ...as(uid),
            '/usr/bin/python3',
            LOAD,
            'flood',
            '127.0.0.1',
            '53',
            '32',
            String(FLOOD_SECS),
          ]),
        );
        kids.push(...floods);
        const began = Date.now();
        const sent = floods.map((f) => output(f, (FLOOD_SECS + 10) * 1000));
        const look = w.runner.spawn([
          ...as(RUNNER_UID),
          '/usr/bin/python3',
          LOAD,
          'lookups',
          '127.0.0.1',
          '53',
          'www.a.test',
          String(LOOKUPS),
        ]);
        kids.push(look);
        const lookups = JSON.parse((await output(look, 80000)) || '[]') as Row['lookups'];
        const after = (await requestReport(id)).refusals;
        const secs = (Date.now() - began) / 1000;
        for (const f of floods) await stop(f);
        const n = (await Promise.all(sent)).reduce((k, x) => k + Number(x), 0);
        rows.push({
          who,
          secs,
          sent: n,
          drained: ((after?.total ?? 0) - (before?.total ?? 0)) / secs,
          dropped: (after?.kernelDropped ?? 0) - (before?.kernelDropped ?? 0),
          lookups,
        });
        console.log(JSON.stringify(rows[rows.length - 1]));
        await sleep(1500);
      }
    }
    const load = w.runner.exec(['cat', '/proc/loadavg']).split(' ').slice(0, 3).join(' ');
    const ms = (us: number): string => (us / 1000).toFixed(1);
    const out = [
      `Run ${new Date().toISOString()}, Node ${process.version}, load average ${load} at the end, DNS_FLOOD_PER_UID = ${DNS_FLOOD_PER_UID}. ${ROUNDS} rounds; in each, root and then uid ${FLOOD_UID} send refused names to the runner's proxy from 64 UDP sockets (two processes), each at most 4000 a second (under the per-socket limit), until the lookups are done (test/e2e/dns-load.py), while uid ${RUNNER_UID} looks \`www.a.test\` up ${LOOKUPS} times, 300 ms apart (a new socket each, sent again after 1 s unanswered, 5 tries). Root is spared by the per-uid limit, so its rows are what any user could do before it. Drained: the proxies' refused queries a second during the flood. Dropped: by the kernel (per-socket and per-uid limits).`,
      '',
      '| flooder | sent q/s | drained q/s | dropped by the kernel | lookups | answered | answered at the first try | slowest ms |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      ...rows.map(
        (r) =>
          `| ${r.who} | ${Math.round(r.sent / r.secs)} | ${Math.round(r.drained)} | ${r.dropped} | ${r.lookups.length} | ${r.lookups.filter((l) => l.rcode === 0).length} | ${r.lookups.filter((l) => l.rcode === 0 && l.tries === 1).length} | ${ms(Math.max(0, ...r.lookups.map((l) => l.us)))} |`,
      ),
    ];
    const file = join(REPO_ROOT, 'bench', 'RESULTS-egress.md');
    const [OPEN, CLOSE] = ['<!-- flood-uid -->', '<!-- end of flood-uid -->'];
    const text = readFileSync(file, 'utf8');
    const at = text.indexOf(OPEN);
    const block = `${OPEN}\n${out.join('\n')}\n${CLOSE}`;
    writeFileSync(
      file,
      at < 0
        ? `${text.trimEnd()}\n\n${block}\n`
        : text.slice(0, at) + block + text.slice(text.indexOf(CLOSE) + CLOSE.length),
    );
    console.log(out.join('\n'));
  } finally {
    for (const k of kids) await stop(k);
    await w.destroy([id]);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
