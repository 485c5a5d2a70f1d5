/**
 * github-token's one git write (the bot identity in the global configuration) runs through
 * the hardened git: outside the workspace, with none of the step's variables.
 */
import { describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { realGit } from '../../../src/actions/github-token/token-step.js';
import { tempDir } from '../../harness/tmp.js';

describe('github-token sets the git identity through the hardened git', () => {
  test("the identity lands in the global file; the step's variables and the workspace's configuration do not reach git", () => {
    const home = tempDir('cordon-idgit-home-');
    const workspace = tempDir('cordon-idgit-ws-');
    const marker = join(workspace, 'ran');
    const trace = join(workspace, 'trace.json');
    // A workspace the agent had: a program for git to run, and the step's cwd there.
    execFileSync('git', ['init', '-q', workspace]);
    writeFileSync(join(workspace, 'hook.sh'), `#!/bin/sh\nenv > ${marker}\n`, { mode: 0o755 });
    execFileSync('git', ['-C', workspace, 'config', 'core.fsmonitor', join(workspace, 'hook.sh')]);
    const step = {
      HOME: home,
      PATH: process.env.PATH,
      PWD: workspace,
      GIT_DIR: join(workspace, '.git'),
      GIT_TRACE2_EVENT: trace,
      'INPUT_PRIVATE-KEY': 'app-private-key-value-7e1c',
    };
    const cwd = process.cwd();
    process.chdir(workspace);
    try {
      realGit(['config', '--global', 'user.name', 'cordon-agent[bot]'], step);
      realGit(['config', '--global', 'user.email', '1+cordon-agent[bot]@users.noreply.github.com'], step);
    } finally {
      process.chdir(cwd);
    }
    const global = readFileSync(join(home, '.gitconfig'), 'utf8');
    expect(global).toContain('name = cordon-agent[bot]');
    expect(global).toContain('email = 1+cordon-agent[bot]@users.noreply.github.com');
    // GIT_DIR did not point the write at the workspace's repository.
    expect(readFileSync(join(workspace, '.git', 'config'), 'utf8')).not.toContain('cordon-agent');
    expect(existsSync(trace)).toBe(false);
    expect(existsSync(marker)).toBe(false);
  });

  test("the step's GIT_CONFIG_GLOBAL names the file written (where the user's later git reads it)", () => {
    const home = tempDir('cordon-idgit-home-');
    const file = join(tempDir('cordon-idgit-cfg-'), 'gitconfig');
    realGit(['config', '--global', 'user.name', 'cordon-agent[bot]'], {
      HOME: home,
      GIT_CONFIG_GLOBAL: file,
    });
    expect(readFileSync(file, 'utf8')).toContain('name = cordon-agent[bot]');
    expect(existsSync(join(home, '.gitconfig'))).toBe(false);
  });
});
