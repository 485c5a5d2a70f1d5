/**
 * Names that carried a secret out: `run` knows the secrets its command was given, the
 * daemon only what was asked. After the command, `run` finds the names that hold one of
 * its secrets (mask.ts `findFolded`) and tells the daemon over `control.sock`
 * (`secret-names <json>`); from then on every report shows such a name only as its length
 * and the secret's name, so the value never reaches the ledger, the summary or
 * attribution.json. The same goes for the name of a process the report shows (who asked,
 * who sent), which the command chooses too. A caller can only hide a name behind a louder
 * finding: a marked name stays counted and is reported as carrying a secret.
 */
import type { DaemonReport } from './protocol.js';

/** Names one request may mark; a command with more secret names than this is flagged anyway. */
const MAX_MARKS = 1000;
const MAX_NAME = 255;
const SECRET_NAME = /^[A-Za-z0-9_ -]{1,64}$/;
/** Both proxies' name tables (proxy-stats.ts, 5000 each) and then some. */
const MAX_KEPT = 12000;

export interface SecretNameMark {
  name: string;
  /** The name the secret was registered under (`DB_PASSWORD`), never its value. */
  secret: string;
}

/** Parses a `secret-names` request body; throws a short reason on anything else. */
export function parseMarks(body: string): SecretNameMark[] {
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    throw new Error('not JSON');
  }
  if (!Array.isArray(v)) throw new Error('not a list');
  if (v.length > MAX_MARKS) throw new Error(`more than ${MAX_MARKS} names`);
  return v.map((m: unknown) => {
    const { name, secret } = (m ?? {}) as Record<string, unknown>;
    if (typeof name !== 'string' || !name || name.length > MAX_NAME)
      throw new Error('a name is missing or too long');
    if (typeof secret !== 'string' || !SECRET_NAME.test(secret)) throw new Error('a secret name is not one');
    return { name, secret };
  });
}

/** What a marked name is shown as: its length and whose value it carried. */
export function shownAs(name: string, secret: string): string {
  return `[${name.length} chars carrying ${secret}]`;
}

export class SecretNames {
  private readonly marks = new Map<string, string>();

  add(marks: SecretNameMark[]): void {
    for (const m of marks)
      if (this.marks.size < MAX_KEPT || this.marks.has(m.name)) this.marks.set(m.name, m.secret);
  }

  /**
   * The report with every marked name replaced, and the secret named on its entry; and
   * every process (who asked, who sent) whose text was marked shown as its length: a
   * process's name is its own to choose (a link named by the value), so run marks those too.
   */
  apply(r: DaemonReport): DaemonReport {
    if (!this.marks.size) return r;
    const proc = <T extends { process?: string }>(n: T): T => {
      const secret = n.process === undefined ? undefined : this.marks.get(n.process);
      return secret && n.process !== undefined ? { ...n, process: shownAs(n.process, secret) } : n;
    };
    const swap = <T extends { name: string; process?: string }>(n: T): T & { carriesSecret?: string } => {
      const secret = this.marks.get(n.name);
      return proc(secret ? { ...n, name: shownAs(n.name, secret), carriesSecret: secret } : n);
    };
    return {
      ...r,
      names: r.names.map(swap),
      blocked: r.blocked.map(proc),
      ...(r.refusals ? { refusals: { ...r.refusals, sources: r.refusals.sources.map(proc) } } : {}),
      ...(r.rebinding ? { rebinding: r.rebinding.map(swap) } : {}),
    };
  }
}
