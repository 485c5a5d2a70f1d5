/**
 * The shell scripts and git config the broker's parent writes for the agent's command
 * (see `writeHelperScripts`); `startBroker` puts them on its PATH and GIT_CONFIG_GLOBAL.
 */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Env } from '../platform/runner.js';

/** A shell word in single quotes. */
function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A git config value in double quotes, so `#`, `;` and spaces survive. */
function gitValue(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/**
 * Writes the programs the agent's command calls to get a current GitHub token from the
 * broker (each runs dist/broker/helper.js, which asks the broker over loopback):
 *  - `bin/cordon-gh-token`: prints a current installation token, for scripts;
 *  - `bin/gh`: runs the real `gh` (the next one on PATH) with GH_TOKEN set to a current
 *    token on every call, so a long job never holds an expired one;
 *  - `gitconfig` (for GIT_CONFIG_GLOBAL): includes the user's own ~/.gitconfig and makes the
 *    helper git's only credential helper for the GitHub server.
 * Without GitHub only the (empty) bin folder is made. Nothing secret is written: the
 * scripts ask for the token when they run.
 */
export function writeHelperScripts(
  dir: string,
  node: string,
  helper: string,
  env: Env,
  github: boolean,
): {
  binDir: string;
  gitConfigPath?: string;
} {
  const binDir = join(dir, 'bin');
  mkdirSync(binDir, { recursive: true, mode: 0o700 });
  const call = `${shq(node)} ${shq(helper)}`;
  if (!github) return { binDir };
  writeFileSync(
    join(binDir, 'cordon-gh-token'),
    `#!/bin/sh\n# Prints a current GitHub installation token from the Cordon broker.\nexec ${call} gh-token\n`,
  );
  writeFileSync(
    join(binDir, 'gh'),
    [
      '#!/bin/sh',
      '# gh with a current installation token from the Cordon broker on every call.',
      `here=${shq(binDir)}`,
      'real=',
      'IFS=:',
      'for d in $PATH; do',
      '  [ "$d" = "$here" ] && continue',
      '  if [ -x "$d/gh" ]; then real="$d/gh"; break; fi',
      'done',
      'unset IFS',
      '[ -n "$real" ] || { echo "cordon: gh is not installed" >&2; exit 127; }',
      `GH_TOKEN=$(${call} gh-token) || exit 1`,
      'export GH_TOKEN',
      'exec "$real" "$@"',
      '',
    ].join('\n'),
  );
  for (const f of ['cordon-gh-token', 'gh']) chmodSync(join(binDir, f), 0o700);
  const server = (env.GITHUB_SERVER_URL || 'https://github.com').replace(/\/+$/, '');
  const home = env.HOME;
  const gitConfigPath = join(dir, 'gitconfig');
  writeFileSync(
    gitConfigPath,
    [
      ...(home ? ['[include]', `\tpath = ${gitValue(join(home, '.gitconfig'))}`] : []),
      `[credential ${gitValue(server)}]`,
      // The empty value clears helpers configured before (a stored token would win otherwise).
      '\thelper =',
      `\thelper = ${gitValue(`!${call} git-credential`)}`,
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  return { binDir, gitConfigPath };
}
