/**
 * Lays out an HTML page in headless Chromium (Debian's `chromium`, which .ci/run installs)
 * and reads back where its alert boxes and tables landed: a copy of the page gets a script
 * that writes their rectangles into document.title, and `--dump-dom` prints the page.
 */
import { expect } from '@jest/globals';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './tmp.js';

export const CHROMIUM = '/usr/bin/chromium';
const TIMEOUT_MS = 60000;

/** Top and bottom of a box, in page coordinates. */
export interface Box {
  top: number;
  bottom: number;
}

/**
 * Undefined (with the reason logged) when chromium is missing outside CI; under CI=true a
 * missing chromium fails the test: CI installs it.
 */
export function chromiumOrSkip(): string | undefined {
  if (existsSync(CHROMIUM)) return CHROMIUM;
  const why = `${CHROMIUM} is missing (apt-get install -y --no-install-recommends chromium)`;
  if (process.env.CI === 'true') throw new Error(`${why}; CI must render the summary page`);
  console.log(`skipping the layout check: ${why}`);
  return undefined;
}

const PROBE = `<script>
const boxes = (sel) => [...document.querySelectorAll(sel)]
  .map((e) => e.getBoundingClientRect())
  .filter((b) => b.height > 0)
  .map((b) => ({ top: b.top + scrollY, bottom: b.bottom + scrollY }));
document.title = 'BOXES ' + JSON.stringify({ alerts: boxes('.alert'), tables: boxes('table') });
</script>`;

/** The laid-out boxes of the page's `.alert`s and visible `table`s. */
export async function layout(chromium: string, page: string): Promise<{ alerts: Box[]; tables: Box[] }> {
  const dir = tempDir('cordon-chromium-');
  const copy = join(dir, 'page.html');
  writeFileSync(copy, readFileSync(page, 'utf8').replace('</body>', `${PROBE}\n</body>`));
  const child = spawn(
    chromium,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      '--disable-sync',
      `--user-data-dir=${join(dir, 'profile')}`,
      '--dump-dom',
      `file://${copy}`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, HOME: dir } },
  );
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`chromium took over ${TIMEOUT_MS} ms: ${err}`)),
        TIMEOUT_MS,
      );
      child.on('error', reject);
      child.on('close', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    const m = out.match(/<title>BOXES (.*?)<\/title>/s);
    if (!m) throw new Error(`chromium (exit ${code}) printed no layout: ${err}`);
    const json = m[1]
      .replace(/&quot;/g, '"')
      .replace(/&lt;/g, '<')
      .replace(/&gt;/g, '>')
      .replace(/&amp;/g, '&');
    return JSON.parse(json) as { alerts: Box[]; tables: Box[] };
  } finally {
    // Its whole process group (renderer, zygote, ...), however the check ended.
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

/** Every alert ends above where every table starts; at least one of each. */
export function expectAlertsAboveTables(boxes: { alerts: Box[]; tables: Box[] }): void {
  expect(boxes.alerts.length).toBeGreaterThan(0);
  expect(boxes.tables.length).toBeGreaterThan(0);
  const lowestAlert = Math.max(...boxes.alerts.map((a) => a.bottom));
  const highestTable = Math.min(...boxes.tables.map((t) => t.top));
  expect(lowestAlert).toBeLessThanOrEqual(highestTable);
}
