/**
 * Runs a bundled action the way the runner does: `INPUT_*` variables, the file-command
 * files (GITHUB_OUTPUT, GITHUB_ENV, GITHUB_STATE, GITHUB_PATH, GITHUB_STEP_SUMMARY),
 * RUNNER_TEMP, then post with the state main saved. Used by the tests and `cordon demo`.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parentOf } from '../platform/proc-name.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface WorkflowCommand {
  command: string;
  properties: Record<string, string>;
  message: string;
}

export interface StepResult {
  code: number | null;
  stdout: string;
  stderr: string;
  commands: WorkflowCommand[];
  /** `::add-mask::` values, in the order printed. */
  masks: string[];
  outputs: Record<string, string>;
  env: Record<string, string>;
  state: Record<string, string>;
  path: string[];
  /** The whole job summary file after this step. */
  summary: string;
  durationMs: number;
}

/**
 * The jobs that made their own root in this module instance (each test file has its own),
 * so a test run can remove by name what it made (`removeJobs`).
 */
const made = new Set<Job>();

/** Removes every job root made here since the last call; returns those jobs. */
export function removeJobs(): Job[] {
  const jobs = [...made];
  for (const job of jobs) job.remove();
  return jobs;
}

/** A job: one RUNNER_TEMP, workspace and summary file shared by its steps, as on a runner. */
export class Job {
  readonly root: string;
  readonly runnerTemp: string;
  readonly workspace: string;
  readonly summaryFile: string;
  readonly home: string;
  /** Variables every step sees (the runner's plus what earlier steps exported). */
  readonly env: Record<string, string>;
  private stepCount = 0;

  constructor(opts: { root?: string; env?: Record<string, string> } = {}) {
    this.root = opts.root ?? mkdtempSync(join(tmpdir(), 'cordon-job-'));
    if (!opts.root) made.add(this);
    this.runnerTemp = join(this.root, 'runner-temp');
    this.workspace = join(this.root, 'workspace');
    this.home = join(this.root, 'home');
    for (const d of [this.runnerTemp, this.workspace, this.home]) mkdirSync(d, { recursive: true });
    this.summaryFile = join(this.runnerTemp, 'step-summary.md');
    writeFileSync(this.summaryFile, '');
    this.env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: this.home,
      CI: 'true',
      GITHUB_ACTIONS: 'true',
      RUNNER_TEMP: this.runnerTemp,
      RUNNER_OS: 'Linux',
      GITHUB_WORKSPACE: this.workspace,
      GITHUB_REPOSITORY: 'octo-org/octo-repo',
      GITHUB_REPOSITORY_OWNER: 'octo-org',
      GITHUB_SHA: '0000000000000000000000000000000000000000',
      GITHUB_REF: 'refs/heads/main',
      GITHUB_EVENT_NAME: 'workflow_dispatch',
      GITHUB_ACTOR: 'octocat',
      GITHUB_TRIGGERING_ACTOR: 'octocat',
      GITHUB_WORKFLOW: 'agent',
      GITHUB_WORKFLOW_REF: 'octo-org/octo-repo/.github/workflows/agent.yml@refs/heads/main',
      GITHUB_JOB: 'agent',
      GITHUB_RUN_ID: '4242',
      GITHUB_RUN_ATTEMPT: '1',
      GITHUB_SERVER_URL: 'https://github.com',
      GITHUB_API_URL: 'https://api.github.com',
      ...opts.env,
    };
  }

  /**
   * Removes the job's root and all in it, as root also what a step's own user made there.
   * Call it only once the job's last step (post included) has run.
   */
  remove(): void {
    rmSync(this.root, { recursive: true, force: true });
    made.delete(this);
  }

  /**
   * Runs `dist/<action>/<entry>.js`. `state` is what main saved (for post). `wrap` puts a
   * command in front of node, e.g. `['ip', 'netns', 'exec', 'ns1']`.
   */
  async run(
    action: string,
    entry: 'main' | 'post' | string,
    opts: {
      inputs?: Record<string, string>;
      env?: Record<string, string | undefined>;
      state?: Record<string, string>;
      wrap?: string[];
      timeoutMs?: number;
      cwd?: string;
      script?: string;
    } = {},
  ): Promise<StepResult> {
    const n = ++this.stepCount;
    const files = join(this.runnerTemp, '_runner_file_commands');
    mkdirSync(files, { recursive: true });
    const f = (k: string): string => {
      const p = join(files, `${k}_${n}`);
      writeFileSync(p, '');
      return p;
    };
    const outputFile = f('set_output');
    const envFile = f('set_env');
    const stateFile = f('save_state');
    const pathFile = f('add_path');
    const env: Record<string, string> = {
      ...this.env,
      GITHUB_OUTPUT: outputFile,
      GITHUB_ENV: envFile,
      GITHUB_STATE: stateFile,
      GITHUB_PATH: pathFile,
      GITHUB_STEP_SUMMARY: this.summaryFile,
      GITHUB_ACTION: `__cordon_${action}`,
    };
    for (const [k, v] of Object.entries(opts.inputs ?? {}))
      env[`INPUT_${k.replace(/ /g, '_').toUpperCase()}`] = v;
    for (const [k, v] of Object.entries(opts.state ?? {})) env[`STATE_${k}`] = v;
    for (const [k, v] of Object.entries(opts.env ?? {})) {
      if (v === undefined) delete env[k];
      else env[k] = v;
    }
    const script = opts.script ?? join(REPO_ROOT, 'dist', action, `${entry}.js`);
    const argv = [...(opts.wrap ?? []), process.execPath, script];
    const started = Date.now();
    const { code, stdout, stderr } = await spawnCollect(
      argv,
      env,
      opts.cwd ?? this.workspace,
      opts.timeoutMs ?? 60000,
    );
    const result: StepResult = {
      code,
      stdout,
      stderr,
      commands: parseCommands(stdout),
      masks: [],
      outputs: parseFileCommands(readFileSync(outputFile, 'utf8')),
      env: parseFileCommands(readFileSync(envFile, 'utf8')),
      state: parseFileCommands(readFileSync(stateFile, 'utf8')),
      path: readFileSync(pathFile, 'utf8').split('\n').filter(Boolean),
      summary: readFileSync(this.summaryFile, 'utf8'),
      durationMs: Date.now() - started,
    };
    result.masks = result.commands.filter((c) => c.command === 'add-mask').map((c) => c.message);
    // What a step exports, later steps see; as on the runner.
    Object.assign(this.env, result.env);
    if (result.path.length) this.env.PATH = `${result.path.join(':')}:${this.env.PATH}`;
    return result;
  }
}

/**
 * Every process under `pid` (children, theirs, ...), from /proc, bounded: what a step left
 * running that still hangs from it. Reparented ones (a daemon that detached and whose
 * parent exited) are no longer under it and are not listed.
 */
export function descendantsOf(pid: number, proc = '/proc'): number[] {
  const children = new Map<number, number[]>();
  let names: string[] = [];
  try {
    names = readdirSync(proc);
  } catch {
    return [];
  }
  for (const name of names.slice(0, 100000)) {
    if (!/^\d+$/.test(name)) continue;
    const ppid = parentOf(Number(name), proc);
    if (ppid === 0) continue; // Gone meanwhile.
    const list = children.get(ppid) ?? [];
    list.push(Number(name));
    children.set(ppid, list);
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length && out.length < 100000) {
    for (const c of children.get(queue.shift()!) ?? []) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

export function spawnCollect(
  argv: string[],
  env: Record<string, string>,
  cwd: string,
  timeoutMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(argv[0], argv.slice(1), { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    let done = false;
    let graceTimer: NodeJS.Timeout | undefined;
    const settle = (code: number | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (graceTimer) clearTimeout(graceTimer);
      resolvePromise({
        code,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    };
    // Past its time the step is killed, and what it printed is still handed back (with a
    // line that says so), even when a process it left holds its pipes open.
    const timer = setTimeout(() => {
      err.push(Buffer.from(`\n[harness] killed after ${timeoutMs} ms\n`));
      // The whole tree, as the runner does on a timeout: a process the step left must not
      // outlive the test that started it.
      const tree = child.pid === undefined ? [] : descendantsOf(child.pid);
      child.kill('SIGKILL');
      for (const pid of tree) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
      graceTimer = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        settle(null);
      }, 2000);
    }, timeoutMs);
    child.on('error', (e) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => settle(code));
  });
}

function unescapeData(s: string): string {
  return s.replace(/%0D/g, '\r').replace(/%0A/g, '\n').replace(/%25/g, '%');
}

function unescapeProperty(s: string): string {
  return unescapeData(s).replace(/%3A/g, ':').replace(/%2C/g, ',');
}

/**
 * Parses `::command k=v,k2=v2::message` lines as the runner does, `::stop-commands::TOKEN`
 * included: from it until a `::TOKEN::` line no command is taken.
 */
export function parseCommands(stdout: string): WorkflowCommand[] {
  const out: WorkflowCommand[] = [];
  let stopped: string | undefined;
  // Lines end as the runner's reader ends them: LF, CR LF, or a lone CR.
  for (const line of stdout.split(/\r\n|\r|\n/)) {
    const m = /^::([A-Za-z0-9_-]+)(?: ([^:]*))?::(.*)$/.exec(line.trimStart());
    if (!m) continue;
    if (stopped !== undefined) {
      if (m[1].toLowerCase() === stopped.toLowerCase()) stopped = undefined;
      continue;
    }
    if (m[1] === 'stop-commands' && m[3]) {
      stopped = m[3];
      continue;
    }
    const properties: Record<string, string> = {};
    for (const kv of (m[2] ?? '').split(',').filter(Boolean)) {
      const at = kv.indexOf('=');
      if (at > 0) properties[kv.slice(0, at)] = unescapeProperty(kv.slice(at + 1));
    }
    out.push({ command: m[1], properties, message: unescapeData(m[3]) });
  }
  return out;
}

/** Parses GITHUB_OUTPUT/GITHUB_ENV/GITHUB_STATE content (`k=v` and `k<<DELIM` blocks). */
export function parseFileCommands(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line === '') continue;
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line);
    if (heredoc) {
      const [, name, delim] = heredoc;
      const body: string[] = [];
      for (i++; i < lines.length && lines[i] !== delim; i++) body.push(lines[i]);
      if (i >= lines.length) throw new Error(`unterminated ${name} block in file command`);
      out[name] = body.join('\n');
      continue;
    }
    const at = line.indexOf('=');
    if (at > 0) out[line.slice(0, at)] = line.slice(at + 1);
  }
  return out;
}
