/**
 * Who may talk to the root side: the runner user who started the fence (through sudo, or
 * as the step's own user) and root. Node cannot read a Unix socket's peer credentials
 * (`SO_PEERCRED`), so the socket file's owner and mode are the check: each socket is the
 * client's, mode 0600, and the files beside it that the client reads are root's, readable
 * by the client's group only. Another local user (the agent's own user among them) cannot
 * connect at all.
 */
import { chmodSync, chownSync } from 'node:fs';
import type { DaemonConfig } from './protocol.js';

export interface Client {
  uid: number;
  gid: number;
}

const isId = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0;

/**
 * The client: the uid named in the config (the launching step's user), else sudo's caller
 * (`SUDO_UID`), else root alone; its group is that user's primary group (`gidOf`, from the
 * system's user database, which root owns), else root's.
 */
export function clientOf(
  cfg: Pick<DaemonConfig, 'clientUid'>,
  env: NodeJS.ProcessEnv,
  gidOf: (uid: number) => number | undefined,
): Client {
  const sudo = env.SUDO_UID ? Number(env.SUDO_UID) : undefined;
  const uid = isId(cfg.clientUid) ? cfg.clientUid : isId(sudo) ? sudo : 0;
  return { uid, gid: gidOf(uid) ?? 0 };
}

/** The socket at `path` becomes the client's alone (root reaches it anyway). */
export function socketForClient(path: string, client: Client): void {
  // Tightened before it is handed over: no moment where the new owner's mode is wider.
  chmodSync(path, 0o600);
  chownSync(path, client.uid, client.gid);
}

/** A root-owned file the client may read but not change: root's, group the client's, 0640. */
export function readableByClient(path: string, client: Client): void {
  chmodSync(path, 0o640);
  chownSync(path, 0, client.gid);
}
