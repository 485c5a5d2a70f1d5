/**
 * The launcher's check of what its caller sends. With `disable-sudo`, sudo's one remaining
 * rule for the runner user is this launcher, so its caller may be any process of that user,
 * hostile included. Each field of the config is checked against what only root decides:
 *  - no field but these five (no uid, user, home or group: the launcher makes the user, picks
 *    its name, uid and home, and never runs the command as root or an existing user);
 *  - `argv`, `env`: run as the agent's new uid only, under no_new_privs; bounded, no NUL,
 *    variable names plain (HOME, USER, LOGNAME, CORDON_OUTPUT are the launcher's);
 *  - `cwd`: entered by the agent's own shell, as the agent, never by root (`cd` below);
 *  - `workspace`: pinned and checked in identity/pinned.ts (a real directory of the
 *    caller's, no link on the way); everything root does to it goes through descriptors;
 *  - `files`: written only inside the fresh home root made, by relative plain names, at
 *    most rwx modes (no set-uid), with `wx` (never over something there).
 */
import type { AgentLaunchConfig } from './agent-protocol.js';

const MAX_ARGS = 4096;
const MAX_ENV = 4096;
const MAX_FILES = 64;
const MAX_BYTES = 4 * 1024 * 1024;
const KEYS = ['argv', 'cwd', 'env', 'files', 'workspace'];
const FILE_KEYS = ['content', 'mode', 'path'];
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const FILE_PATH = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+){0,3}$/;

/** Why a config was refused; never quotes a value (the environment holds secrets). */
export class ConfigRefused extends Error {}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;

function exactKeys(v: Record<string, unknown>, keys: string[], what: string): void {
  const got = Object.keys(v).sort();
  const extra = got.filter((k) => !keys.includes(k));
  if (extra.length)
    throw new ConfigRefused(`${what} has fields the launcher does not take: ${extra.slice(0, 8).join(', ')}`);
  const missing = keys.filter((k) => !got.includes(k));
  if (missing.length) throw new ConfigRefused(`${what} lacks ${missing.join(', ')}`);
}

const plain = (s: unknown): s is string => typeof s === 'string' && !s.includes('\0');

/** The config, checked field by field, or `ConfigRefused` naming the field. */
export function parseLaunchConfig(raw: unknown): AgentLaunchConfig {
  if (!isRecord(raw)) throw new ConfigRefused('the config is not an object');
  exactKeys(raw, KEYS, 'the config');
  const { argv, env, cwd, workspace, files } = raw;
  let bytes = 0;
  const checkedEnv: Record<string, string> = {};
  const checkedFiles: AgentLaunchConfig['files'] = [];
  if (!Array.isArray(argv) || argv.length < 1 || argv.length > MAX_ARGS || !argv.every(plain))
    throw new ConfigRefused(`argv must be 1 to ${MAX_ARGS} strings without NUL`);
  bytes += argv.reduce((n: number, a: string) => n + a.length, 0);
  if (!isRecord(env) || Object.keys(env).length > MAX_ENV)
    throw new ConfigRefused(`env must be an object of at most ${MAX_ENV} variables`);
  for (const [k, v] of Object.entries(env)) {
    if (!ENV_NAME.test(k))
      throw new ConfigRefused(`env has a variable name that is not [A-Za-z_][A-Za-z0-9_]*`);
    if (!plain(v)) throw new ConfigRefused(`env ${k} is not a string without NUL`);
    bytes += k.length + v.length;
    checkedEnv[k] = v;
  }
  if (!plain(cwd) || !cwd.startsWith('/')) throw new ConfigRefused('cwd must be an absolute path');
  if (!plain(workspace) || !workspace.startsWith('/'))
    throw new ConfigRefused('workspace must be an absolute path');
  if (!Array.isArray(files) || files.length > MAX_FILES)
    throw new ConfigRefused(`files must be a list of at most ${MAX_FILES}`);
  for (const f of files as unknown[]) {
    if (!isRecord(f)) throw new ConfigRefused('a file is not an object');
    exactKeys(f, FILE_KEYS, 'a file');
    if (!plain(f.path) || !FILE_PATH.test(f.path) || f.path.split('/').some((c) => c === '.' || c === '..'))
      throw new ConfigRefused('a file path is not a plain relative name inside the agent home');
    if (!plain(f.content)) throw new ConfigRefused(`file ${f.path} has no text content`);
    if (typeof f.mode !== 'number' || !Number.isInteger(f.mode) || f.mode < 0 || f.mode > 0o777)
      throw new ConfigRefused(`file ${f.path} has a mode outside 0 to 0777`);
    bytes += f.content.length;
    checkedFiles.push({ path: f.path, content: f.content, mode: f.mode });
  }
  if (bytes > MAX_BYTES) throw new ConfigRefused(`the config is larger than ${MAX_BYTES} bytes`);
  return { argv: argv.slice(), env: checkedEnv, cwd, workspace, files: checkedFiles };
}

/** Who started the launcher: sudo's caller, or root when it was started as root. */
export function callerUid(env: NodeJS.ProcessEnv, uid: number): number {
  if (uid !== 0) return uid;
  const sudo = env.SUDO_UID;
  return sudo && /^\d+$/.test(sudo) ? Number(sudo) : 0;
}
