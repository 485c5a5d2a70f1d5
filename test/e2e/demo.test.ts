import { describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { REPO_ROOT, spawnCollect } from '../../src/devkit/run-action.js';
import { tempDir } from '../harness/tmp.js';
import { chromiumOrSkip, expectAlertsAboveTables, layout } from '../harness/chromium.js';

/**
 * The Node that GitHub's runners run the actions with (`using: node24`), fetched by
 * scripts/fetch-node24.sh: the whole job runs under it too, every action and the egress
 * daemon alike (they run with the Node that started them).
 */
function node24(): string | undefined {
  const r = spawnSync(join(REPO_ROOT, 'scripts/fetch-node24.sh'), { encoding: 'utf8', timeout: 180000 });
  if (r.status === 0) return join(REPO_ROOT, r.stdout.trim());
  const why = `Node 24 could not be fetched (scripts/fetch-node24.sh: ${(r.stderr || r.error?.message || '').trim()})`;
  if (process.env.CI === 'true')
    throw new Error(`${why}; CI must run the actions under the runner's Node 24`);
  console.log(`skipping the demo under Node 24: ${why}`);
  return undefined;
}

const nodes: [string, string][] = [[`the machine's Node (${process.version})`, process.execPath]];
const n24 = node24();
if (n24) nodes.push(["the runner's Node 24", n24]);

describe.each(nodes)('cordon demo (README command one) under %s', (_what, node) => {
  test('runs a whole fenced agent job and prints the summary it produced', async () => {
    const out = tempDir('cordon-demo-');
    const r = await spawnCollect(
      [node, join(REPO_ROOT, 'bin/cordon.js'), 'demo', '--out', out],
      // Node 24 first on PATH too (its directory holds only node): the demo's agent is a
      // `node` of its own. The machine's PATH as it is otherwise (python3 for moto comes first).
      {
        PATH:
          node === process.execPath ? (process.env.PATH ?? '') : `${dirname(node)}:${process.env.PATH ?? ''}`,
        HOME: out,
      },
      REPO_ROOT,
      240000,
    );
    expect(r.stderr).not.toContain('demo failed');
    expect(r.code).toBe(0);
    // Identity, credentials with expiry, the scrubbed secret, the bot's commit.
    expect(r.stdout).toContain('GitHub App bot   | cordon-demo-agent[bot]');
    expect(r.stdout).toContain('AWS role session');
    expect(r.stdout).toMatch(/AWS +\| arn:aws:iam::1234.*\| 20\d\d-\d\d-\d\d/);
    expect(r.stdout).toContain('agent: calling the model API with key ***');
    expect(r.stdout).toMatch(/by the agent +\| Agent: update READ/);
    expect(r.stdout).toContain('Record intact');
    // Node >= 22 names its main thread MainThread; processes are still named by program.
    expect(r.stdout).not.toContain('MainThread');
    expect(r.stdout).not.toContain('demo-sk-7Qx9Lr2VbN4pT8wZ');
    // As root (CI), the fence is up: the allowed host answers, the others are refused and recorded.
    if (process.getuid?.() === 0) {
      expect(r.stdout).toContain('agent: http://api.demo.test/ -> hello from 203.0.113.10');
      expect(r.stdout).toContain('agent: http://exfil.evil.test/ -> refused (ENOTFOUND)');
      expect(r.stdout).toMatch(/agent: http:\/\/203\.0\.113\.50\/ -> refused \(E/);
      expect(r.stdout).toMatch(/exfil\.evil\.test +\| \d+ +\|.*\| refused/);
      expect(r.stdout).toMatch(/203\.0\.113\.50 +\| tcp\/80/);
    } else {
      expect(r.stdout).toContain('the egress fence is skipped: not running as root');
    }
    const md = readFileSync(join(out, 'summary.md'), 'utf8');
    expect(md).toContain('### Commits the agent authored');
    // The status line first, then the findings as alerts; the command itself, scrubbed, with its hash.
    expect(md.split('\n')[2]).toMatch(/^\*\*Cordon: \d+ findings? needs? a human — record intact, /);
    expect(md).toMatch(
      /\| echo "agent: calling the model API with key \$DEMO\\_API\\_KEY" ⏎ echo .*… \| [0-9a-f]{16} \|/,
    );
    if (process.getuid?.() === 0) {
      expect(md).toContain('> [!WARNING]\n> 1 name, 1 destination blocked');
      // Who asked, even when the process was gone before the daemon looked.
      expect(md).toMatch(/\| exfil\.evil\.test \| \d+ \| (the agent's user|node \(pid)/);
      expect(md).toMatch(/\| 203\.0\.113\.50 \| tcp\/80 \| \d+ \| (the agent's user|node \(pid)/);
      expect(md).toMatch(
        /```yaml\nallowed-domains: \|\n {2}api\.demo\.test {2}# allowed already\n {2}exfil\.evil\.test {2}# blocked; asked by /,
      );
    }
    const html = join(out, 'summary.html');
    expect(readFileSync(html, 'utf8')).toContain('<table>');
    const chromium = chromiumOrSkip();
    if (chromium) expectAlertsAboveTables(await layout(chromium, html));
    for (const f of ['summary.md', 'summary.html', 'ledger.jsonl']) {
      expect(readFileSync(join(out, f), 'utf8')).not.toContain('demo-sk-7Qx9Lr2VbN4pT8wZ');
    }
    // Kept when an expectation fails, to look at.
    rmSync(out, { recursive: true, force: true });
  }, 250000);
});
