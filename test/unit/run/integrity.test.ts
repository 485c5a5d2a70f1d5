import { afterAll, describe, expect, test } from '@jest/globals';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ledger } from '../../../src/ledger/ledger.js';
import { SecretRegistry } from '../../../src/platform/mask.js';
import { createCgroup } from '../../../src/actions/run/cgroup.js';
import { cgroup2Mount, killCgroup } from '../../../src/platform/cgroup2.js';
import { makeFreshHome } from '../../../src/actions/run/home.js';
import { renderSummaryMarkdown } from '../../../src/summary/render.js';
import { checkRunWindow, ranges, verdictFor } from '../../../src/ledger/verify.js';
import { appendAny, appendAnyWithSnapshot } from '../../harness/ledger.js';
import { tempDir } from '../../harness/tmp.js';

const dirs: string[] = [];
function temp(): string {
  const d = tempDir('cordon-integrity-');
  dirs.push(d);
  return d;
}
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function ledgerIn(dir: string, action = 'run'): Ledger {
  return new Ledger(join(dir, 'ledger.jsonl'), { action, registry: new SecretRegistry(() => {}) });
}

describe('cgroup', () => {
  test('reads the cgroup2 mount point from a mounts file (hybrid and pure layouts)', () => {
    const d = temp();
    writeFileSync(
      join(d, 'hybrid'),
      'tmpfs /sys/fs/cgroup tmpfs ro 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\ncgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0\n',
    );
    writeFileSync(join(d, 'pure'), 'cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n');
    writeFileSync(join(d, 'none'), 'proc /proc proc rw 0 0\n');
    expect(cgroup2Mount(join(d, 'hybrid'))).toBe('/sys/fs/cgroup/unified');
    expect(cgroup2Mount(join(d, 'pure'))).toBe('/sys/fs/cgroup');
    expect(cgroup2Mount(join(d, 'none'))).toBeUndefined();
  });

  test('without root, or without cgroup2, falls back to a process group and says why', () => {
    const notRoot = createCgroup({ mount: '/sys/fs/cgroup', uid: 1001 });
    expect(notRoot.kind).toBe('process-group');
    expect(notRoot.reason).toMatch(/not root.*setsid/);
    const d = temp();
    writeFileSync(join(d, 'none'), 'proc /proc proc rw 0 0\n');
    if (process.getuid?.() === 0) {
      const real = createCgroup();
      expect(real.kind).toBe(cgroup2Mount() ? 'cgroup' : 'process-group');
      if (real.path) expect(killCgroup(real.path)).toEqual({ alive: 0, left: 0, removed: true });
    }
    const made = createCgroup({ uid: 0, mount: d });
    // A plain directory is no cgroup: no cgroup.procs appears in a new child.
    expect(made.kind).toBe('process-group');
    expect(made.reason).toMatch(/could not create a cgroup/);
  });
});

describe('fresh HOME', () => {
  test('holds only a .gitconfig with the identity and safe.directory, and names what it left out', () => {
    const real = temp();
    writeFileSync(join(real, '.netrc'), 'x');
    const h = makeFreshHome({
      dir: temp(),
      realHome: real,
      workspace: '/work/"quoted" space',
      identity: { name: 'bot[bot]', email: 'b@x' },
    });
    expect(h.withheld).toEqual(['~/.netrc']);
    const cfg = readFileSync(join(h.path, '.gitconfig'), 'utf8');
    expect(cfg).toContain('name = "bot[bot]"');
    expect(cfg).toContain('directory = "/work/\\"quoted\\" space"');
    h.remove();
  });
});

describe('run window check and verdict', () => {
  function setup(): { ledger: Ledger; held: string[]; nonce: string; dir: string } {
    const dir = temp();
    const start = ledgerIn(dir, 'start');
    const nonce = start.open() as string;
    start.append('run.recorded', {}, nonce);
    const { hashes } = appendAnyWithSnapshot(ledgerIn(dir), 'run.started', {});
    return { ledger: ledgerIn(dir), held: hashes, nonce, dir };
  }

  test('broker lines written during the run are shown apart, not tampering', () => {
    const { ledger, held, nonce } = setup();
    appendAny(ledger, 'credentials.refreshed', {});
    const w = checkRunWindow(held, ledger.read());
    expect(w.ok).toBe(true);
    expect(w.duringRun).toEqual([
      expect.objectContaining({ line: 3, type: 'credentials.refreshed', chained: true }),
    ]);
    ledger.append('ledger.verified', { by: 'run', upTo: 2, duringRun: w.duringRun });
    const v = verdictFor(ledger.read(), { nonce });
    expect(v.status).toBe('intact');
    expect(v.duringRun?.map((d) => d.line)).toEqual([3]);
  });

  test('a chained line of a kind Cordon never writes during a run is tampering', () => {
    const { ledger, held } = setup();
    appendAny(ledger, 'commits.observed', { commits: [] });
    const w = checkRunWindow(held, ledger.read());
    expect(w.ok).toBe(false);
    expect(w.inserted).toEqual([3]);
    expect(w.details[0]).toMatch(/Cordon writes no such event then/);
  });

  test('hostile: a secret as the type of a line written during the run is scrubbed whole before it is cut, and the verdict is recorded', () => {
    const { ledger, held, dir } = setup();
    const registry = new SecretRegistry(() => {});
    const value = `during-run-secret-${'Zq81xT'.repeat(12)}`;
    registry.register(value, { name: 'API_KEY' });
    appendAny(ledger, value, {});
    const w = checkRunWindow(held, ledger.read(), 'run', (t) => registry.scrub(t));
    expect(w.ok).toBe(false);
    expect(w.duringRun).toEqual([expect.objectContaining({ line: 3, type: '***' })]);
    const text = JSON.stringify(w);
    // Neither the value nor the 60 characters the details cut a type to.
    expect(text).not.toContain(value.slice(0, 30));
    const guarded = new Ledger(join(dir, 'ledger.jsonl'), { action: 'run', registry });
    expect(() => guarded.append('ledger.tampered', w)).not.toThrow();
    // Unscrubbed, the line is refused whole: what kept ledger.tampered and run.finished out.
    const raw = checkRunWindow(held, ledger.read());
    expect(() => guarded.append('ledger.tampered', raw)).toThrow(/refused to record event ledger.tampered/);
  });

  test('a run that never verified (killed) leaves the record altered; a forged verification does not close the window', () => {
    const { ledger, nonce, held } = setup();
    expect(verdictFor(ledger.read(), { nonce }).details.join()).toMatch(/no verification after it/);
    ledger.append('ledger.verified', { by: 'run', upTo: 2, duringRun: [] });
    const w = checkRunWindow(held, ledger.read());
    ledger.append('ledger.tampered', { ...w });
    const v = verdictFor(ledger.read(), { nonce });
    expect(v.status).toBe('altered');
    expect(v.details.join('\n')).toMatch(/line 3 \(ledger.verified, as run\)/);
    expect(v.duringRun?.map((d) => d.line)).toEqual([3]);
  });

  test('ranges', () => {
    expect(ranges([3, 4, 5, 9, 11, 12])).toEqual([
      [3, 5],
      [9, 9],
      [11, 12],
    ]);
  });
});

describe('summary of containment and withheld credentials', () => {
  test('weaker containment is said plainly, with the reason; withheld names and killed processes are listed', () => {
    const dir = temp();
    const l = ledgerIn(dir);
    const nonce = l.open() as string;
    l.append(
      'run.started',
      {
        commandSha256: 'ab'.repeat(32),
        shell: 'bash -e',
        secrets: [],
        envRemoved: [],
        home: 'fresh',
        withheld: ['~/.aws', 'env:KUBECONFIG', '.git/config:http.https://github.com/.extraheader'],
        containment: 'process-group',
        containmentReason: 'run is not root',
      },
      nonce,
    );
    l.append('ledger.verified', { by: 'run', upTo: 1, duringRun: [] });
    l.append('run.finished', { exitCode: 0, durationMs: 5, bytesScrubbed: 0, leaks: [], processesAlive: 2 });
    const lines = l.read();
    const md = renderSummaryMarkdown({ lines, verdict: verdictFor(lines, { nonce }) });
    expect(md).toContain('Record intact');
    expect(md).toContain('Containment was weaker');
    expect(md).toContain('run is not root');
    expect(md).toContain('~/.aws, env:KUBECONFIG, .git/config:http.https://github.com/.extraheader');
    expect(md).toContain('2 process(es) the command left running were killed');
  });
});
