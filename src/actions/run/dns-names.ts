/**
 * Secrets the command sent out as DNS names. The egress daemon records every name asked,
 * but knows no secret; run knows the secrets it gave the command. After the command, run
 * reads the daemon's names, finds those that hold one of its secrets (ignoring case, as
 * DNS lower-cases names, and across the dots of a value split into labels), and marks them
 * with the daemon, which from then on shows them as their length and the secret's name
 * only. What run records is the secret's name and the count, never the name asked. The
 * process the report names for a name, a blocked destination or a loud source is the
 * command's to name too, so those are checked and marked the same way (threat model T80).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describeError } from '../../platform/errors.js';
import type { Runner } from '../../platform/runner.js';
import type { SecretRegistry } from '../../platform/mask.js';
import {
  CONTROL_SOCKET,
  fenceId,
  markSecretNames,
  requestReport,
  stateDir,
  type DaemonReport,
  type Identity,
} from '../../rootd/protocol.js';

export interface SecretInNames {
  /** The secret's name (`DB_PASSWORD`). */
  secret: string;
  /** Distinct names that carried it, and the queries for them. */
  names: number;
  queries: number;
  identity?: Identity;
  /** Answered or sent upstream (audit mode, or a name on the list): the value left the runner. */
  forwarded: boolean;
}

export interface DnsNamesDeps {
  runner: Runner;
  registry: SecretRegistry;
  /** The daemon's report and the marking (tests hand in their own). */
  report?: (id: string) => Promise<DaemonReport>;
  mark?: (id: string, marks: { name: string; secret: string }[]) => Promise<void>;
}

/** The secret a name carries, if any: as asked, with its dots taken out, or its - and _ too. */
function carried(registry: SecretRegistry, name: string): string | undefined {
  return (
    registry.findFolded(name) ??
    registry.findFolded(name.replace(/\./g, '')) ??
    registry.findFolded(name.replace(/[._-]/g, ''))
  );
}

/** Names sent to the daemon in one request (its bound, secret-names.ts). */
const MARKS_PER_REQUEST = 1000;

export interface SecretInProcessNames {
  secret: string;
  /** Distinct process texts (`name (pid N, ...)`) that carried it. */
  processes: number;
}

export interface NamesChecked {
  found: SecretInNames[];
  /** Secrets in the name of a process the report shows (who asked, who sent). */
  inProcesses?: SecretInProcessNames[];
  /** Names run could not check (not recorded by a full name table, or no answer), and why. */
  notChecked?: { names: number; why: string };
}

/**
 * Finds and marks the names that carried one of run's secrets; undefined when there is no
 * fence or no secret. What could not be checked is said (a warning, and in the record):
 * the names then stay as the daemon saw them (docs/threat-model.md T56).
 */
export async function secretsInNames(deps: DnsNamesDeps): Promise<NamesChecked | undefined> {
  const { runner, registry } = deps;
  if (registry.size === 0) return undefined;
  const id = fenceId(runner.tempDir);
  if (!deps.report && !existsSync(join(stateDir(id), CONTROL_SOCKET))) return undefined;
  const unchecked = (names: number, why: string): NonNullable<NamesChecked['notChecked']> => {
    runner.warning(`run: the DNS names the command asked were not all checked for its secrets: ${why}`);
    return { names, why };
  };
  let report: DaemonReport;
  try {
    // As asked, not as marked: a name marked before run looks (by the command, under
    // user: runner) is checked all the same.
    report = await (deps.report ?? ((i: string) => requestReport(i, 10000, { raw: true })))(id);
  } catch (e) {
    return { found: [], notChecked: unchecked(0, `the egress daemon did not answer (${describeError(e)})`) };
  }
  const marks: { name: string; secret: string }[] = [];
  const bySecret = new Map<string, SecretInNames>();
  for (const n of report.names ?? []) {
    const secret = carried(registry, n.name);
    if (!secret) continue;
    marks.push({ name: n.name, secret });
    const key = `${secret}\0${n.identity ?? 'runner'}`;
    const had = bySecret.get(key) ?? { secret, names: 0, queries: 0, identity: n.identity, forwarded: false };
    had.names++;
    had.queries += n.queries;
    had.forwarded ||= n.allowed || report.policy === 'audit';
    bySecret.set(key, had);
  }
  // Who asked a name, who sent to a blocked destination, the loudest sources: a process's
  // name is the command's to choose (a link named by the value), shown in the same records.
  const processes = new Set<string>();
  for (const n of report.names ?? []) if (n.process) processes.add(n.process);
  for (const b of report.blocked ?? []) if (b.process) processes.add(b.process);
  for (const src of report.refusals?.sources ?? []) if (src.process) processes.add(src.process);
  const inProcesses = new Map<string, number>();
  for (const p of processes) {
    const secret = registry.findFolded(p);
    if (!secret) continue;
    marks.push({ name: p, secret });
    inProcesses.set(secret, (inProcesses.get(secret) ?? 0) + 1);
  }
  for (const [secret, count] of inProcesses)
    runner.warning(
      `run: the command put secret ${secret} into the name of ${count} process(es) the fence reported; they are shown by length only`,
      { title: 'Cordon: a secret in a process name' },
    );
  const found = [...bySecret.values()];
  for (const f of found)
    runner.warning(
      `run: the command put secret ${f.secret} into ${f.names} DNS name(s) (${f.queries} queries)${f.forwarded ? ', and they were sent on: treat it as leaked' : '; all refused'}`,
      { title: 'Cordon: a secret in DNS names' },
    );
  let notChecked: NamesChecked['notChecked'];
  for (let at = 0; at < marks.length; at += MARKS_PER_REQUEST) {
    try {
      await (deps.mark ?? markSecretNames)(id, marks.slice(at, at + MARKS_PER_REQUEST));
    } catch (e) {
      notChecked = unchecked(marks.length - at, `the egress daemon did not take them (${describeError(e)})`);
      break;
    }
  }
  // A full name table records no more names: a secret in one of those is not found.
  if (!notChecked && report.namesDropped > 0)
    notChecked = unchecked(report.namesDropped, "the proxy's name table was full, so they were not recorded");
  return {
    found,
    ...(inProcesses.size
      ? { inProcesses: [...inProcesses].map(([secret, processes]) => ({ secret, processes })) }
      : {}),
    ...(notChecked ? { notChecked } : {}),
  };
}
