/**
 * The runner's workflow-command and file-command contract, written out here instead of
 * pulling in @actions/core: the whole of it is a few dozen lines, and each action's cold
 * start pays for every kilobyte it loads.
 */
import { appendFileSync, existsSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { EOL } from 'node:os';

export type Env = Record<string, string | undefined>;

export interface AnnotationProperties {
  title?: string;
  file?: string;
  line?: number;
}

function escapeData(s: string): string {
  return s.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

function escapeProperty(s: string): string {
  return escapeData(s).replace(/:/g, '%3A').replace(/,/g, '%2C');
}

/** Writes `::name k=v::message` to stdout, escaped as the runner expects. */
export function issueCommand(
  name: string,
  props: Record<string, string | number | undefined>,
  message: string,
): void {
  const parts = Object.entries(props)
    .filter(([, v]) => v !== undefined && v !== '')
    .map(([k, v]) => `${k}=${escapeProperty(String(v))}`);
  const head = parts.length ? `${name} ${parts.join(',')}` : name;
  process.stdout.write(`::${head}::${escapeData(message)}${EOL}`);
}

/** Formats `name<<delimiter` blocks for GITHUB_OUTPUT, GITHUB_ENV and GITHUB_STATE. */
export function fileCommandBlock(name: string, value: string): string {
  const delimiter = `ghadelimiter_${randomUUID()}`;
  if (name.includes(delimiter) || value.includes(delimiter)) {
    throw new Error('unexpected delimiter collision');
  }
  return `${name}<<${delimiter}${EOL}${value}${EOL}${delimiter}${EOL}`;
}

export class Runner {
  constructor(readonly env: Env = process.env) {}

  private fileCommand(variable: string, name: string, value: string, legacy?: () => void): void {
    const path = this.env[variable];
    if (path) {
      appendFileSync(path, fileCommandBlock(name, value), { encoding: 'utf8' });
    } else if (legacy) {
      legacy();
    }
  }

  setOutput(name: string, value: string): void {
    this.fileCommand('GITHUB_OUTPUT', name, value, () => issueCommand('set-output', { name }, value));
  }

  exportVariable(name: string, value: string): void {
    this.env[name] = value;
    this.fileCommand('GITHUB_ENV', name, value, () => issueCommand('set-env', { name }, value));
  }

  saveState(name: string, value: string): void {
    this.fileCommand('GITHUB_STATE', name, value, () => issueCommand('save-state', { name }, value));
  }

  getState(name: string): string {
    return this.env[`STATE_${name}`] ?? '';
  }

  addPath(dir: string): void {
    const path = this.env.GITHUB_PATH;
    if (path) appendFileSync(path, `${dir}${EOL}`, 'utf8');
    this.env.PATH = `${dir}:${this.env.PATH ?? ''}`;
  }

  /** Registers a value with the runner's own masker; it must precede any use of the value. */
  setSecret(value: string): void {
    issueCommand('add-mask', {}, value);
  }

  info(message: string): void {
    process.stdout.write(message + EOL);
  }

  debug(message: string): void {
    issueCommand('debug', {}, message);
  }

  notice(message: string, props: AnnotationProperties = {}): void {
    issueCommand('notice', { ...props }, message);
  }

  warning(message: string, props: AnnotationProperties = {}): void {
    issueCommand('warning', { ...props }, message);
  }

  error(message: string, props: AnnotationProperties = {}): void {
    issueCommand('error', { ...props }, message);
  }

  setFailed(message: string): void {
    process.exitCode = 1;
    this.error(message);
  }

  group<T>(title: string, fn: () => T): T {
    process.stdout.write(`::group::${escapeData(title)}${EOL}`);
    try {
      return fn();
    } finally {
      process.stdout.write(`::endgroup::${EOL}`);
    }
  }

  /** Appends markdown to the job summary; returns false when the runner gives no summary file. */
  appendSummary(markdown: string): boolean {
    const path = this.env.GITHUB_STEP_SUMMARY;
    if (!path || !existsSync(path)) return false;
    appendFileSync(path, markdown, 'utf8');
    return true;
  }

  /** `$RUNNER_TEMP`, or the system temp dir outside a runner. */
  get tempDir(): string {
    return this.env.RUNNER_TEMP || this.env.TMPDIR || '/tmp';
  }
}
