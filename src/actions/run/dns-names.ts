/**
 * Secrets the command sent out as DNS names. The egress daemon records every name asked,
 * but knows no secret; run knows the secrets it gave the command. After the command, run
 * reads the daemon's names, finds those that hold one of its secrets (ignoring case, as
 * DNS lower-cases names, and across the dots of a value split into labels), and marks them
 * with the daemon, which from then on shows them as their length and the secret's name
 * only. What run records is the secret's name and the count, never the name asked.
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

/** The secret a name carries, if any: as asked, or with its dots taken out. */
function carried(registry: SecretRegistry, name: string): string | undefined {
  return registry.findFolded(name) ?? registry.findFolded(name.replace(/\./g, ''));
}

/**
 * Finds and marks the names that carried one of run's secrets; undefined when there is no
 * fence or no secret. A daemon that cannot be asked is a warning: the names then stay as
 * the daemon saw them (docs/threat-model.md).
 */
export async function secretsInNames(deps: DnsNamesDeps): Promise<SecretInNames[] | undefined> {
  const { runner, registry } = deps;
  if (registry.size === 0) return undefined;
  const id = fenceId(runner.tempDir);
  if (!deps.report && !existsSync(join(stateDir(id), CONTROL_SOCKET))) return undefined;
  let report: DaemonReport;
  try {
    report = await (deps.report ?? requestReport)(id);
  } catch (e) {
    runner.warning(`run: could not ask the egress daemon which names the command asked: ${describeError(e)}`);
    return undefined;
  }
  const marks: { name: string; secret: string }[] = [];
  const bySecret = new Map<string, SecretInNames>();
  for (const n of report.names ?? []) {
    if (n.carriesSecret) continue;
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
  if (!marks.length) return [];
  try {
    await (deps.mark ?? markSecretNames)(id, marks.slice(0, 1000));
  } catch (e) {
    runner.warning(
      `run: the egress daemon did not take the names that carried a secret: ${describeError(e)}`,
    );
  }
  const found = [...bySecret.values()];
  for (const f of found)
    runner.warning(
      `run: the command put secret ${f.secret} into ${f.names} DNS name(s) (${f.queries} queries)${f.forwarded ? ', and they were sent on: treat it as leaked' : '; all refused'}`,
      { title: 'Cordon: a secret in DNS names' },
    );
  return found;
}
