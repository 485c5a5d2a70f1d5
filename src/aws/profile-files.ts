/**
 * The shared config/credentials pair `export: profile` writes under `$RUNNER_TEMP/cordon/aws/`.
 * Each step owns one named section; writing replaces that section and keeps the others, so
 * two `aws` steps with different profile names share the files, and post removes only its own.
 */
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

export function profileDir(runnerTemp: string): string {
  return join(runnerTemp, 'cordon', 'aws');
}

export function profilePaths(runnerTemp: string): { dir: string; config: string; credentials: string } {
  const dir = profileDir(runnerTemp);
  return { dir, config: join(dir, 'config'), credentials: join(dir, 'credentials') };
}

/** `[default]` in both files; `[profile x]` in config and `[x]` in credentials otherwise. */
export function sectionHeader(file: 'config' | 'credentials', profile: string): string {
  return file === 'config' && profile !== 'default' ? `[profile ${profile}]` : `[${profile}]`;
}

/** Splits INI text into sections keyed by their header line; text before the first header is kept under ''. */
function sections(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let current = '';
  for (const line of text.split('\n')) {
    if (/^\s*\[.*\]\s*$/.test(line)) current = line.trim();
    if (!out.has(current)) out.set(current, []);
    out.get(current)?.push(line);
  }
  return out;
}

function render(map: Map<string, string[]>): string {
  return [...map.values()]
    .map((lines) => lines.join('\n').trim())
    .filter((s) => s !== '')
    .join('\n\n');
}

/** Writes or replaces one section, with mode 0600 on the file and 0700 on the folder. */
export function writeSection(path: string, header: string, body: Record<string, string>): void {
  mkdirSync(join(path, '..'), { recursive: true, mode: 0o700 });
  const map = existsSync(path) ? sections(readFileSync(path, 'utf8')) : new Map<string, string[]>();
  map.set(header, [header, ...Object.entries(body).map(([k, v]) => `${k} = ${v}`)]);
  writeFileSync(path, render(map) + '\n', { mode: 0o600 });
  chmodSync(path, 0o600);
}

/**
 * Removes one section; deletes the file when nothing else is left in it, and the folder when
 * it is empty. Returns whether the file itself was deleted.
 */
export function removeSection(path: string, header: string): boolean {
  if (!existsSync(path)) return false;
  const map = sections(readFileSync(path, 'utf8'));
  map.delete(header);
  const rest = render(map);
  if (rest === '') {
    unlinkSync(path);
    const dir = join(path, '..');
    if (existsSync(dir) && readdirSync(dir).length === 0) rmdirSync(dir);
    return true;
  }
  writeFileSync(path, rest + '\n', { mode: 0o600 });
  return false;
}
