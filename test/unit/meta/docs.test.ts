import { describe, expect, test } from '@jest/globals';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { REPO_ROOT } from '../../../src/devkit/run-action.js';

const read = (path: string): string => readFileSync(join(REPO_ROOT, path), 'utf8');
const actions = readdirSync(join(REPO_ROOT, 'actions'));

/** GitHub's heading anchor: lower case, punctuation dropped, spaces to dashes. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** Every `](#anchor)` in a page names one of its headings. */
function brokenAnchors(text: string): string[] {
  const anchors = new Set([...text.matchAll(/^#+ (.+)$/gm)].map((m) => slug(m[1])));
  return [...text.matchAll(/\]\(#([^)]+)\)/g)].map((m) => m[1]).filter((a) => !anchors.has(a));
}

describe('the README', () => {
  const readme = read('README.md');

  test('is a front door: under 30 kB, the reference lives in docs/', () => {
    expect(Buffer.byteLength(readme)).toBeLessThan(30 * 1024);
  });

  test('keeps the two set-up commands exactly (CI runs the second, the demo test the first)', () => {
    const lines = readme.split('\n');
    expect(lines).toContain(
      'npm ci && node bin/cordon.js demo   # 1. run a whole fenced agent job locally and print its summary',
    );
    expect(lines).toContain(
      'npm test                            # 2. run the tests (first installs what they need, as root)',
    );
  });

  test('CI runs the second command exactly, after checking dist/ and linting; the package list is one', () => {
    const ci = read('.ci/run').split('\n');
    const second = readme
      .split('\n')
      .find((l) => l.includes('# 2. run the tests'))!
      .split('#')[0]
      .trim();
    const last = ci.filter((l) => l && !l.startsWith('#')).pop();
    expect(last).toBe(second);
    expect(ci.findIndex((l) => l.includes('check-dist'))).toBeLessThan(ci.indexOf(second));
    expect(ci.indexOf('npm run lint')).toBeLessThan(ci.indexOf(second));
    // The packages are installed by the second command's pretest, from src/devkit/machine.ts only.
    expect(ci.join('\n')).not.toMatch(/apt-get|nftables/);
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
    expect(pkg.scripts.pretest).toBe('tsx scripts/setup-test-machine.ts');
  });

  test('links to the docs/ page of every action, and every link it has resolves', () => {
    const links = [...readme.matchAll(/\]\(([^)#]+)(#[^)]*)?\)/g)]
      .map((m) => m[1])
      .filter((l) => !/^[a-z]+:/.test(l));
    for (const action of actions) expect(links).toContain(`docs/${action}.md`);
    for (const page of ['threat-model', 'troubleshooting', 'contributing'])
      expect(links).toContain(`docs/${page}.md`);
    expect(links.filter((l) => !existsSync(join(REPO_ROOT, l)))).toEqual([]);
  });
});

/** agent's inputs are those of the actions it wraps, documented on their pages. */
const PAGES: Record<string, string[]> = { agent: ['agent', 'start', 'github-token', 'egress', 'run'] };

describe('the docs/ pages', () => {
  test.each(actions)('every input and output of actions/%s is named on its page', (action) => {
    const meta = parse(read(`actions/${action}/action.yml`)) as {
      inputs?: Record<string, unknown>;
      outputs?: Record<string, unknown>;
    };
    const text = (PAGES[action] ?? [action]).map((p) => read(`docs/${p}.md`)).join('\n');
    const named = (n: string): boolean => {
      // github-token's permission-* inputs are one row, `permission-<name>`, listing each name.
      const perm = /^permission-(organization-)?(.+)$/.exec(n);
      if (perm && text.includes('`permission-<name>`'))
        return perm[1]
          ? text.includes('`organization-*`') && text.includes(perm[2])
          : text.includes(`\`${perm[2]}\``);
      return text.includes(`\`${n}\``);
    };
    const names = [...Object.keys(meta.inputs ?? {}), ...Object.keys(meta.outputs ?? {})];
    expect(names.filter((n) => !named(n))).toEqual([]);
  });

  test.each(readdirSync(join(REPO_ROOT, 'docs')).filter((f) => f.endsWith('.md')))(
    'docs/%s: every link to a heading of the page names one, every link to a file resolves',
    (page) => {
      const text = read(`docs/${page}`);
      expect(brokenAnchors(text)).toEqual([]);
      const files = [...text.matchAll(/\]\(([^)#]+)(#[^)]*)?\)/g)]
        .map((m) => m[1])
        .filter((l) => !/^[a-z]+:/.test(l));
      expect(files.filter((f) => !existsSync(join(REPO_ROOT, 'docs', f)))).toEqual([]);
    },
  );
});

interface Threat {
  id: number;
  title: string;
  body: string;
}

function threats(): Threat[] {
  const text = read('docs/threat-model.md');
  const heads = [...text.matchAll(/^### T(\d+)\. (.+)$/gm)];
  return heads.map((m, i) => {
    const end = heads[i + 1]?.index ?? text.length;
    // The section ends at the next threat or the next group heading.
    const rest = text.slice(m.index! + m[0].length, end);
    const group = rest.search(/^## /m);
    return { id: Number(m[1]), title: m[2], body: group < 0 ? rest : rest.slice(0, group) };
  });
}

describe('docs/threat-model.md', () => {
  const all = threats();

  test('numbers its threats T1, T2, ... in order, each with an attack, what holds it and what stays open', () => {
    expect(all.length).toBeGreaterThan(20);
    expect(all.map((t) => t.id)).toEqual(all.map((_t, i) => i + 1));
    for (const t of all) {
      expect(t.title).toMatch(/ \((held|partly held|open)\)$/);
      for (const part of ['**Attack.**', '**What holds it.**', '**Tests.**', '**Open.**'])
        expect([t.id, t.body.includes(part)]).toEqual([t.id, true]);
    }
  });

  test('every threat names a test file that exists; only an open one may say no test holds it', () => {
    for (const t of all) {
      const files = [...t.body.matchAll(/`(test\/[^`]+\.test\.ts)`/g)].map((m) => m[1]);
      if (files.length === 0) {
        expect([t.id, t.title.endsWith('(open)'), t.body.includes('**Tests.** None.')]).toEqual([
          t.id,
          true,
          true,
        ]);
        continue;
      }
      expect([t.id, files.filter((f) => !existsSync(join(REPO_ROOT, f)))]).toEqual([t.id, []]);
    }
    // Most threats are held by a test; the ones with none are few and say so.
    expect(all.filter((t) => !/`test\//.test(t.body)).length).toBeLessThanOrEqual(3);
  });

  test('every test it names by name is in the file it names', () => {
    const missing: string[] = [];
    for (const t of all) {
      for (const line of t.body.split('\n').filter((l) => l.startsWith('- `test/'))) {
        const file = /`([^`]+)`/.exec(line)![1];
        const source = read(file);
        for (const [, name] of line.matchAll(/"([^"]+)"/g))
          // A name built with test.each holds its printf placeholder (%i, %s) as written.
          if (!source.includes(name)) missing.push(`T${t.id} ${file}: ${name}`);
      }
    }
    expect(missing).toEqual([]);
  });
});
