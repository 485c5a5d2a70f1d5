/**
 * A command in a private mount namespace of its own (`unshare --mount`, propagation private):
 * what it mounts or unmounts there is never the host's, and goes with it when it ends.
 */

/**
 * The argv that runs `script` under `sh -c` in a new private mount namespace, with `args` as
 * its `$0`, `$1`, ... (the script ends by exec'ing what it was given, once its mounts are made).
 */
export function inPrivateMounts(script: string, args: string[]): string[] {
  return ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, ...args];
}
