/**
 * The daemon's setup and teardown, as root. Setup is an ordered list of steps, each with
 * what undoes it: bind port 53, load the table, point the resolver at the proxy, start
 * the root helper, apply the lockdown, start the watches, serve the sockets, then give up
 * root for the proxy's own user (its `nft -i` child stays root). When a step fails, the
 * steps already applied are undone in reverse order and the state directory removed, so
 * the host is left as it was; one line, `READY {json}` or `ERROR {json}`, tells the action
 * that started it (platform/detached). teardown.ts undoes a running fence.
 */
import { existsSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describeError } from '../platform/errors.js';
import { applyRuleset, execSync, removeTable, renderRuleset } from '../fence/firewall.js';
import { disableDocker, disableSudo, restoreLockdown, type LockdownBackup } from '../fence/lockdown.js';
import { ACK_RANGE, AllowSets, NftShell, TABLE } from '../fence/nftshell.js';
import { DomainMatcher } from '../fence/policy.js';
import { DnsProxy } from '../fence/proxy.js';
import { WARM_BUDGET_MS, WARM_QUERIES, warmUp } from '../fence/warmup.js';
import { AnsweredNames } from '../fence/answered.js';
import { nftOrigin, RefusalRecorder, WebGate } from '../fence/webgate.js';
import { AGENT_UID_MAX, AGENT_UID_MIN } from '../identity/user.js';
import {
  detectUpstreams,
  hostResolved,
  pointResolver,
  pointSystemdResolved,
  restoreResolver,
  restoreSystemdResolved,
  type ResolverBackup,
} from '../fence/resolver.js';
import { readUserFile } from '../platform/user-file.js';
import { clientOf, readableByClient } from './access.js';
import { serveControl, buildReport } from './control.js';
import { SecretNames } from './secret-names.js';
import { RootHelper } from './helper.js';
import { bundledLauncher, removeLauncherCopy, tryAllowLauncher, tryCopyLauncher } from './launcher.js';
import { keepLedgerCopy } from './ledger-server.js';
import { bindListeners, type Listeners } from './listeners.js';
import { buildProxies, proxyBuilder, type ProxyBuilder } from './proxies.js';
import { TamperLog, watchTamper } from './tamper.js';
import {
  cgroupMountDir,
  makeStateDir,
  removeStateRoot,
  stateDir,
  type DaemonConfig,
  type DaemonReady,
  type DaemonState,
} from './protocol.js';

const DNS_USER = 'cordon-dns';
/** The config is written by the runner user: read as a user-writable file, with a cap. */
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;
/** How long the root helper may take to start and load its code (a node start, on a busy runner). */
const HELPER_LOAD_MS = 10000;
/** How long READY waits for the root helper's first listing of the blocked sets. */
const HELPER_LIST_MS = 3000;

/** A uid's primary group, from the user database (root's). */
function primaryGid(uid: number): number | undefined {
  const r = execSync(['id', '-g', String(uid)]);
  const gid = Number(r.stdout.trim());
  return r.code === 0 && Number.isInteger(gid) ? gid : undefined;
}

function ensureUser(name: string): { uid: number; gid: number } {
  if (execSync(['id', '-u', name]).code !== 0) {
    const r = execSync([
      'useradd',
      '--system',
      '--no-create-home',
      '--home-dir',
      '/nonexistent',
      '--shell',
      '/usr/sbin/nologin',
      name,
    ]);
    if (r.code !== 0) throw new Error(`could not create the system user ${name}: ${r.stderr.trim()}`);
  }
  return {
    uid: Number(execSync(['id', '-u', name]).stdout.trim()),
    gid: Number(execSync(['id', '-g', name]).stdout.trim()),
  };
}

/** One setup step: `undo` puts back what `apply` did, once `apply` has finished. */
interface Step {
  name: string;
  apply: () => void | Promise<void>;
  undo?: () => void;
}

/**
 * Applies the steps in order; when one fails, undoes those applied, last first, and
 * throws its error. An undo that fails is logged and the rest still run.
 */
async function applySteps(steps: Step[], log: (l: string) => void): Promise<void> {
  const applied: Step[] = [];
  const took: string[] = [];
  try {
    for (const step of steps) {
      const t0 = Date.now();
      await step.apply();
      took.push(`${step.name} ${Date.now() - t0}`);
      applied.push(step);
    }
    log(`setup steps, ms: ${took.join(', ')}`);
  } catch (e) {
    log(`setup failed: ${describeError(e)}`);
    for (const step of applied.reverse()) {
      try {
        step.undo?.();
      } catch (u) {
        log(`could not undo ${step.name}: ${describeError(u)}`);
      }
    }
    throw e;
  }
}

/** `daemon.js start <config.json>`. */
export async function start(configPath: string): Promise<void> {
  const started = Date.now();
  const cfg = JSON.parse(readUserFile(configPath, MAX_CONFIG_BYTES)) as DaemonConfig;
  const client = clientOf(cfg, process.env, primaryGid);
  const dir = stateDir(cfg.id);
  makeStateDir(cfg.id);
  const logFd = openSync(join(dir, 'daemon.log'), 'a', 0o640);
  readableByClient(join(dir, 'daemon.log'), client);
  const log = (line: string): void => {
    writeSync(logFd, `${new Date().toISOString()} ${line}\n`);
  };

  // What the steps make, for the steps after them.
  let proxyUser = { uid: -1, gid: -1 };
  let upstreams: string[] = [];
  let resolvedDropIn: string | undefined;
  let listeners: Listeners | undefined;
  let shell: NftShell | undefined;
  // The tamper watch's and the report's own: their listings (the full check makes a
  // dozen every 3 s) never hold up a set update that an answer waits for.
  let watchShell: NftShell | undefined;
  let resolver: ResolverBackup | undefined;
  const lockdown: LockdownBackup = { sudoers: [], groupsLeft: [] };
  let sets: AllowSets | undefined;
  let proxy: DnsProxy | undefined;
  // The agent's: its own proxy filling its own sets (see firewall.ts).
  let agentSets: AllowSets | undefined;
  let agentProxy: DnsProxy | undefined;
  // Which addresses the agent's proxy answered for which name, for its web gate.
  let answered: AnsweredNames | undefined;
  /** Builds the warm-up's throwaway proxy (fence/warmup.ts), the last step. */
  let warmProxy: ProxyBuilder['warm'] | undefined;
  let warmMs = 0;
  let gate: WebGate | undefined;
  let helper: RootHelper | undefined;
  const tamper = new TamperLog(log);
  const stops: Record<string, () => void> = {};
  let state: DaemonState | undefined;
  const need = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error('a setup step ran before the one it needs');
    return v;
  };

  const steps: Step[] = [
    {
      name: 'the proxy user',
      apply: () => {
        proxyUser = ensureUser(DNS_USER);
        upstreams = cfg.upstream ? [cfg.upstream] : detectUpstreams();
      },
    },
    {
      // Where systemd-resolved runs: pointed at the proxy and its stub off before the bind.
      name: 'systemd-resolved',
      apply: () => {
        resolvedDropIn = pointSystemdResolved(hostResolved, log);
      },
      undo: () => {
        if (resolvedDropIn) restoreSystemdResolved(hostResolved, resolvedDropIn);
      },
    },
    {
      name: 'the port 53 listeners',
      apply: async () => {
        listeners = await bindListeners(log);
      },
      undo: () => listeners?.close(),
    },
    {
      name: 'the table',
      apply: () =>
        applyRuleset(
          renderRuleset({
            policy: cfg.policy,
            staticAllowed: cfg.ips,
            dnsUid: proxyUser.uid,
            upstreams,
            agent: {
              uidMin: AGENT_UID_MIN,
              uidMax: AGENT_UID_MAX,
              dnsPort: need(listeners).agent.port,
              web: { http: need(listeners).web.http.port, https: need(listeners).web.https.port },
            },
          }),
          join(dir, 'ruleset.nft'),
        ),
      undo: () => removeTable(),
    },
    {
      name: 'the nft shell',
      apply: async () => {
        shell = new NftShell();
        watchShell = new NftShell('nft', ACK_RANGE);
        await Promise.all([shell.run(`list set ${TABLE} ack`), watchShell.run(`list set ${TABLE} ack`)]);
      },
    },
    {
      name: 'the resolver',
      apply: () => {
        resolver = pointResolver('/etc/resolv.conf', need(listeners).udp6 !== undefined);
      },
      undo: () => restoreResolver(need(resolver)),
    },
    {
      // Before the lockdown, and whole: it runs the daemon's node and bundle, files the
      // runner user can replace once sudo is gone (a real runner's externals and _actions),
      // so they are read while the runner user is still root anyway.
      name: 'the root helper',
      apply: async () => {
        helper = new RootHelper({
          dir,
          pidFile: cfg.agentPidFile,
          proxyUid: proxyUser.uid,
          client,
          // Only root can kill it, and it cannot be started again once the daemon gave up
          // root: from then on there is no who-asked, no resolv.conf put back, no cgroup for run.
          died: (how) => tamper.note(`the daemon's root helper ${how}`),
          noted: (what) => tamper.note(what),
          orphaned: (e) =>
            tamper.note(
              `run's process went away while its command ran: the daemon killed the command's cgroup ${e.name} (${e.alive} process(es) left)`,
            ),
        });
        try {
          await helper.loaded(HELPER_LOAD_MS);
        } catch (e) {
          // A step that failed is not undone by the list: the helper is ended here.
          helper.close();
          throw e;
        }
      },
      undo: () => helper?.close(),
    },
    {
      name: 'the lockdown',
      apply: () => {
        // Half a lockdown is undone here: the step counts as applied only when whole.
        try {
          if (cfg.disableSudo) {
            // sudo gone, `run` still gives the agent its own user: through root's copy of its
            // launcher, the one command sudo keeps for the runner user (launcher.ts). Copied
            // before sudo goes: from then on root reads nothing the runner user can write.
            const agentJs = bundledLauncher(process.argv[1]);
            const launch = agentJs
              ? tryCopyLauncher({ dir, agentJs, node: process.execPath }, log)
              : undefined;
            if (!agentJs)
              log('no dist/run/agent.js beside the daemon: run cannot give the agent its own user');
            disableSudo(cfg.user, lockdown);
            if (launch) tryAllowLauncher({ user: cfg.user, dir, id: cfg.id }, launch, lockdown, log);
          }
          if (cfg.disableDocker) disableDocker(cfg.user, lockdown);
        } catch (e) {
          restoreLockdown(lockdown, cfg.user);
          removeLauncherCopy(dir);
          throw e;
        }
      },
      undo: () => {
        restoreLockdown(lockdown, cfg.user);
        removeLauncherCopy(dir);
      },
    },
    {
      name: 'the proxy',
      apply: () => {
        const builder = proxyBuilder(cfg, log);
        const built = buildProxies(cfg, {
          builder,
          shell: need(shell),
          upstream: upstreams[0],
          listeners: need(listeners),
          ask: (source, from) => helper?.askSource(source, from),
        });
        ({ sets, proxy, agentSets, agentProxy, answered } = built);
        warmProxy = builder.warm;
      },
    },
    {
      // The agent's port 80 and 443 connections, redirected here in block mode (firewall.ts).
      name: 'the web gate',
      apply: () => {
        const shell = need(watchShell);
        const record = new RefusalRecorder(shell, log, () =>
          tamper.note("the web gate could not record a block in the agent's blocked sets", true),
        );
        const g = new WebGate({
          matcher: new DomainMatcher(cfg.agentDomains),
          answered: need(answered),
          origin: nftOrigin(shell),
          refused: (why, address, port) => record.note(why, address, port),
        });
        const l = need(listeners);
        for (const s of l.web.http.servers) g.serve(s, 80);
        for (const s of l.web.https.servers) g.serve(s, 443);
        gate = g;
      },
      undo: () => gate?.close(),
    },
    {
      name: 'the tamper watch',
      apply: async () => {
        const h = need(helper);
        stops.tamper = await watchTamper({
          dir,
          policy: cfg.policy,
          shell: need(watchShell),
          sets: [need(sets), need(agentSets)],
          resolvedDropIn,
          tamper,
          log,
          putResolvBack: () => h.putResolvBack(),
        });
      },
      undo: () => stops.tamper?.(),
    },
    {
      name: 'the control socket',
      apply: async () => {
        const sources = {
          policy: cfg.policy,
          proxy: need(proxy),
          sets: need(sets),
          agentProxy: need(agentProxy),
          agentSets: need(agentSets),
          gate: cfg.policy === 'block' ? gate : undefined,
          shell: need(watchShell),
          tamper,
          helper: need(helper),
        };
        stops.control = await serveControl(dir, client, () => buildReport(sources), new SecretNames());
      },
      undo: () => stops.control?.(),
    },
    {
      name: 'the ledger copy',
      apply: async () => {
        stops.ledger = await keepLedgerCopy(dir, client, log);
      },
      undo: () => stops.ledger?.(),
    },
    {
      // The helper's first listing of the blocked sets (four `nft` starts), made once its
      // trace monitor listens: part of setup, not on the cores beside the first lookups.
      name: 'the blocked sets listed',
      apply: async () => {
        if (!(await need(helper).blockedListed(HELPER_LIST_MS)))
          log(`the root helper had not listed the blocked sets within ${HELPER_LIST_MS / 1000} s`);
      },
    },
    {
      // Removed with the state directory.
      name: 'the state file',
      apply: () => {
        state = {
          pid: process.pid,
          uid: proxyUser.uid,
          upstreams,
          // Teardown puts resolv.conf and systemd-resolved back together.
          resolver: resolver && { ...resolver, resolvedDropIn },
          lockdown,
          user: cfg.user,
          setupMs: Date.now() - started,
        };
        writeFileSync(join(dir, 'state.json'), JSON.stringify(state), { mode: 0o600 });
      },
    },
    {
      // From here on the process is the proxy's user: its upstream sockets carry that uid,
      // which is what the output chain lets through to the upstream.
      name: 'giving up root',
      apply: async () => {
        process.setgroups!([]);
        process.setgid!(proxyUser.gid);
        process.setuid!(proxyUser.uid);
        await need(proxy).connectUpstream();
        await need(agentProxy).connectUpstream();
      },
    },
    {
      // Last, once the fence is enforced and `setupMs` taken: the job's first lookups find
      // the answer path compiled, not compiling beside them (warmup.ts). Run alone, not
      // beside the steps above: on two cores it only slowed them as much. Never fails setup.
      name: 'the answer path warmed',
      apply: async () => {
        // A monotonic clock: a wall-clock step during it must not move setup-ms.
        const t0 = performance.now();
        const w = await warmUp(need(warmProxy)).catch((e: Error) => e);
        warmMs = Math.round(performance.now() - t0);
        if (w instanceof Error) log(`the answer path was not warmed: ${describeError(w)}`);
        else
          log(
            `the answer path warmed: ${w.answered} of ${w.sent} queries answered in ${w.ms} ms${w.finished ? '' : ` (stopped at ${WARM_BUDGET_MS} ms, of ${WARM_QUERIES})`}`,
          );
      },
    },
  ];

  try {
    await applySteps(steps, log);
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    // The root helper, told to end by the undo, removes its cgroup2 mount point beside the
    // state directory once it reads the end of its stdin: waited for (the event loop runs
    // meanwhile), at most 3 s, so /run/cordon is empty when no other fence is there. The
    // helper removes the state root itself if it empties it later.
    const mount = cgroupMountDir(dir);
    for (let i = 0; i < 60 && existsSync(mount); i++) await new Promise((r) => setTimeout(r, 50));
    removeStateRoot();
    process.stdout.write(`ERROR ${JSON.stringify({ message: describeError(e) })}\n`);
    process.exit(1);
  }
  const l = need(listeners);
  log(
    `ready: policy ${cfg.policy}, upstream ${upstreams.join(' ')}, ${cfg.domains.length} patterns (the agent's ${cfg.agentDomains.length}, its proxy on port ${l.agent.port}), nft pid ${need(shell).pid}`,
  );
  const ready: DaemonReady = {
    pid: process.pid,
    upstreams,
    setupMs: need(state).setupMs,
    warmMs,
    ipv6: l.udp6 !== undefined,
    wildcard: l.wildcard,
  };
  process.stdout.write(`READY ${JSON.stringify(ready)}\n`);
}
