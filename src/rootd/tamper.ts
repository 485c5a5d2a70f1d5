/**
 * The tamper watch: what root (someone else) changes behind the daemon's back, recorded
 * for the report and, where it can be, put back. Watched: Cordon's table (its chains and
 * static sets: in block mode loaded again from ruleset.nft), foreign addresses in the
 * allow sets, the runner's and the agent's (taken out again), tables added beside it, /etc/resolv.conf (written back by
 * the root helper), systemd-resolved's drop-in, and /etc/hosts.
 */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { isIP } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnMonitor, TABLE, type AllowSets, type NftShell } from '../fence/nftshell.js';

const CHAINS = [
  'output',
  'forward',
  'decide',
  'refuse',
  'agent_decide',
  'agent_refuse',
  'agent_dns',
  'dns_redirect',
  'dns_input',
  'dns_uid',
];
/** The agent's web gate's chains, in block mode only (firewall.ts). */
const WEB_CHAINS = ['agent_web', 'agent_web_origin'];
/** The daemon's own writes: the allow sets, the sentinels, and the web gate's reads and blocks. */
const OWN_CHANGE =
  /^(add|delete) element inet cordon (allow4|allow6|agent4|agent6|ack|weborig4|weborig6|websrc4|websrc6|agentblocked4|agentblocked6) /;
const ALLOW_ADD = /^add element inet cordon (allow4|allow6|agent4|agent6) \{ (.*) \}/;
/** The full check: a backstop while the monitor reports every change, the watch itself once it ended. */
const BACKSTOP_CHECK_MS = 30000;
const FULL_CHECK_MS = 3000;
const FILE_CHECK_MS = 500;

/** What someone else changed, in the order first seen, each with when: the report's `tamper`. */
export class TamperLog {
  /** Entry text to when it was first seen (ISO time); a Map keeps the order. */
  private readonly seen = new Map<string, string>();

  constructor(private readonly log: (l: string) => void) {}

  /** Records `what` once; `quiet` leaves it out of the daemon's log. */
  note(what: string, quiet = false): void {
    if (this.seen.has(what)) return;
    this.seen.set(what, new Date().toISOString());
    if (!quiet) this.log(`tamper: ${what}`);
  }

  get entries(): string[] {
    return [...this.seen.keys()];
  }

  /** When each of `entries` was first seen, same order. */
  get times(): string[] {
    return [...this.seen.values()];
  }
}

function readOr(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Cordon's own `table inet cordon { ... }` block of a listing that may hold other tables. */
function ownTableBlock(text: string): string {
  const lines = text.split('\n');
  const start = lines.indexOf(`table ${TABLE} {`);
  if (start < 0) return '';
  const end = lines.indexOf('}', start);
  return lines.slice(start, end < 0 ? undefined : end + 1).join('\n');
}

/** `table inet cordon` lines of `list tables`, as "inet cordon". */
function tableNames(text: string): string[] {
  return [...text.matchAll(/^table (\S+ \S+)/gm)].map((m) => m[1]);
}

/** Addresses in a `list set` of an allow set (elements with or without timeouts). */
function setAddresses(text: string): string[] {
  const m = /elements = \{([^}]*)\}/s.exec(text);
  if (!m) return [];
  return m[1]
    .split(',')
    .map((e) => e.trim().split(/\s+/)[0])
    .filter((a) => a && isIP(a) !== 0);
}

/**
 * Runs `nft monitor ruleset` (as root, before the daemon drops it) and calls `changed`
 * soon after any change to a table other than our own element updates (and when nft says
 * it lost events); `added` gets the set and addresses of every element added to an allow
 * set (ours or not); `ended` once, when nft is gone.
 */
function watchRuleset(
  changed: () => void,
  added: (set: string, addresses: string[]) => void,
  ended: () => void,
): ChildProcess {
  const monitor = spawnMonitor('ruleset');
  let timer: NodeJS.Timeout | undefined;
  const rl = createInterface({ input: monitor.stdout! });
  rl.on('close', ended);
  rl.on('line', (line) => {
    const add = ALLOW_ADD.exec(line);
    if (add)
      added(
        add[1],
        add[2].split(',').map((e) => e.trim().split(/\s+/)[0]),
      );
    if (OWN_CHANGE.test(line) || line.startsWith('# new generation')) return;
    timer ??= setTimeout(() => {
      timer = undefined;
      changed();
    }, 50);
  });
  return monitor;
}

export interface TamperWatch {
  /** The state directory (ruleset.nft is loaded again from it; resolv.conf is kept there). */
  dir: string;
  policy: 'block' | 'audit';
  shell: NftShell;
  /** The proxies' sets: the runner's and the agent's. */
  sets: AllowSets[];
  /** systemd-resolved's drop-in pointing it at the proxy, when there is one. */
  resolvedDropIn?: string;
  tamper: TamperLog;
  log: (l: string) => void;
  /** Has /etc/resolv.conf written back from `<dir>/resolv.conf` (the root helper). */
  putResolvBack: () => void;
}

/**
 * Takes the baselines (the table's fingerprint, the tables beside it, the resolver files)
 * and watches from then on; returns a function that stops watching.
 */
export async function watchTamper(w: TamperWatch): Promise<() => void> {
  const { dir, shell, sets, tamper, log, resolvedDropIn } = w;
  // The resolver text the proxy wrote, kept where the root helper can put it back.
  const resolvText = readFileSync('/etc/resolv.conf', 'utf8');
  writeFileSync(join(dir, 'resolv.conf'), resolvText, { mode: 0o644 });
  const hostsText = readOr('/etc/hosts');
  const dropInText = resolvedDropIn ? readOr(resolvedDropIn) : '';
  // Everything in the table but the dynamic sets' elements: a change means someone
  // else (root) edited it. In block mode the table is put back from the same file.
  // nft fails a line holding several `list` commands, so each is its own request.
  // The table's chain headers too: a chain someone adds to it (a hook after Cordon's,
  // rewriting an allowed packet's destination, say) is a change like any other.
  const listings = [
    ...[...CHAINS, ...(w.policy === 'block' ? WEB_CHAINS : [])].map((c) => `list chain ${TABLE} ${c}`),
    `list set ${TABLE} static4`,
    `list set ${TABLE} static6`,
    `list chains ${TABLE.split(' ')[0]}`,
  ];
  const fingerprint = async (): Promise<string> =>
    (await Promise.all(listings.map((l) => shell.run(l))))
      .map((text, i) => (i === listings.length - 1 ? ownTableBlock(text) : text))
      .join('\n');
  const baseline = await fingerprint();
  const tablesAtStart = new Set(tableNames(await shell.run('list tables')));
  const reclose = (): void => {
    if (w.policy !== 'block') return;
    shell.run(`include "${join(dir, 'ruleset.nft')}"`).then(
      async () => {
        log('re-closed: the table was loaded again from ruleset.nft');
        // The sets came back empty: what the proxies answered (and still serve from
        // their caches, and clients still hold) goes back in for the time it has left.
        const counts = await Promise.all(sets.map((a) => a.refill().catch(() => -1)));
        if (counts.includes(-1)) log('could not put the allow sets back after re-closing');
        const back = counts.reduce((n, c) => n + Math.max(c, 0), 0);
        tamper.note(
          `the table inet cordon was loaded again (re-closed); ${back} address(es) the proxies had answered were put back in the allow sets`,
        );
      },
      (e: Error) => log(`could not re-close: ${e.message}`),
    );
  };
  const owner = new Map(sets.flatMap((a) => a.names.map((n) => [n, a] as const)));
  /** Elements of an allow set its proxy did not add: recorded and taken out again. */
  const checkSets = async (): Promise<void> => {
    for (const [set, mine] of owner) {
      const foreign = setAddresses(await shell.run(`list set ${TABLE} ${set}`)).filter((a) => !mine.has(a));
      if (!foreign.length) continue;
      tamper.note(`${foreign.join(', ')} added to ${set} by someone else (removed again)`);
      await shell.run(`delete element ${TABLE} ${set} { ${foreign.join(', ')} }`).catch(() => undefined);
    }
  };
  const checkTables = async (): Promise<void> => {
    for (const t of tableNames(await shell.run('list tables'))) {
      if (tablesAtStart.has(t) || t === TABLE) continue;
      tablesAtStart.add(t);
      tamper.note(
        `a table ${t} was added by someone else (an accept there does not get a packet past Cordon's drop)`,
      );
    }
  };
  let checking = false;
  // A change reported while a check runs may come after that check read the table: it
  // gets a check of its own once this one ends (the backstop is 30 s away).
  let again = false;
  const done = (): void => {
    checking = false;
    if (again) {
      again = false;
      check();
    }
  };
  const check = (): void => {
    if (checking) {
      again = true;
      return;
    }
    checking = true;
    fingerprint().then(
      async (now) => {
        if (now !== baseline) {
          tamper.note('the table inet cordon was changed by someone else');
          reclose();
        }
        await checkSets().catch((e: Error) => log(`set check failed: ${e.message}`));
        await checkTables().catch((e: Error) => log(`table check failed: ${e.message}`));
        done();
      },
      () => {
        tamper.note('the table inet cordon was removed');
        reclose();
        done();
      },
    );
  };
  // `nft monitor` reports every ruleset change as it happens (and says when it lost
  // some), at no cost while nothing changes; an address added to an allow set is checked
  // against the proxy's own at once. A full check every 30 s backs it up; once the
  // monitor has ended (recorded), every 3 s. Each is a dozen listings: every 3 s they
  // were a burst of nft work next to the proxy all along.
  let stopping = false;
  let poll = setInterval(check, BACKSTOP_CHECK_MS);
  poll.unref();
  const monitor = watchRuleset(
    check,
    (set, addresses) => {
      const mine = owner.get(set);
      if (!mine || addresses.some((a) => !mine.has(a))) check();
    },
    () => {
      if (stopping) return;
      // Its shell, still ours, goes too (it would otherwise signal a pid nft no longer holds).
      monitor.kill();
      tamper.note(
        `the daemon's nft monitor ended: the ruleset is checked every ${FULL_CHECK_MS / 1000} s from then on, so a change can stand that long`,
      );
      clearInterval(poll);
      poll = setInterval(check, FULL_CHECK_MS);
      poll.unref();
      check();
    },
  );
  const files = setInterval(() => {
    // The proxy's record of its own addresses, which the set checks compare against.
    for (const a of sets) a.sweep();
    if (readOr('/etc/resolv.conf') !== resolvText) {
      tamper.note('/etc/resolv.conf was changed (put back to the proxy)');
      w.putResolvBack();
    }
    // systemd-resolved's drop-in: recorded, not put back (resolved's own upstream queries
    // are refused by the fence whatever it says).
    if (resolvedDropIn && readOr(resolvedDropIn) !== dropInText)
      tamper.note(`${resolvedDropIn} (systemd-resolved pointed at the proxy) was changed or removed`);
    const hosts = readOr('/etc/hosts');
    if (hosts !== hostsText) {
      const added = hosts.split('\n').filter((l) => l.trim() && !hostsText.split('\n').includes(l));
      tamper.note(
        `/etc/hosts was changed${added.length ? `: ${added.slice(0, 5).join(' | ').slice(0, 300)}` : ''} (its addresses are still not in the sets)`,
      );
    }
  }, FILE_CHECK_MS);
  files.unref();
  return () => {
    stopping = true;
    clearInterval(poll);
    clearInterval(files);
    monitor.stdin!.end();
  };
}
