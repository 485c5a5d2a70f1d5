/**
 * A small document model rendered to both GitHub markdown and standalone HTML, so every
 * untrusted string is escaped in one place for each output.
 */
export type Block =
  | { kind: 'heading'; level: 2 | 3 | 4; text: string }
  | { kind: 'para'; text: string; strong?: boolean }
  | { kind: 'table'; headers: string[]; rows: string[][]; note?: string }
  | { kind: 'details'; summary: string; blocks: Block[] }
  | { kind: 'code'; text: string; lang?: 'yaml' }
  | { kind: 'list'; items: string[] }
  /** A GitHub alert: `> [!CAUTION]` for tampering, impersonation and leaks, `> [!WARNING]` for the rest. */
  | { kind: 'alert'; level: AlertLevel; text: string };

export type AlertLevel = 'caution' | 'warning';

/** A table without the columns that are empty in every row (the first is always kept). */
export function withoutEmptyColumns(b: { headers: string[]; rows: string[][] }): {
  headers: string[];
  rows: string[][];
} {
  const keep = b.headers.map((_, c) => c === 0 || b.rows.some((r) => (r[c] ?? '') !== ''));
  if (keep.every(Boolean)) return b;
  return {
    headers: b.headers.filter((_, c) => keep[c]),
    rows: b.rows.map((r) => r.filter((_, c) => keep[c])),
  };
}

const hex = (ch: string, n: number): string => ch.charCodeAt(0).toString(16).padStart(n, '0');

/**
 * The characters that reorder text as shown (bidi embeddings, overrides and isolates) as
 * `\uNNNN`, and C0/C1 controls as `\xNN`: a right-to-left override in a name would turn the
 * rest of a finding around.
 */
export function visibleControls(s: string): string {
  return s.replace(
    // eslint-disable-next-line no-control-regex
    /[\x00-\x08\x0b-\x1f\x7f-\x9f]|[\u202a-\u202e\u2066-\u2069]/g,
    (ch) => (ch.charCodeAt(0) > 0xff ? `\\u${hex(ch, 4)}` : `\\x${hex(ch, 2)}`),
  );
}

/**
 * Escapes text for a markdown table cell or paragraph; the summary renders HTML, so `<` too.
 * Every line ending CommonMark knows (LF, CR LF, and a lone CR, which would end a table row
 * and start a list of the agent's), and the Unicode line and paragraph separators, is a space.
 */
export function mdEscape(s: string): string {
  return visibleControls(s.replace(/\r\n|[\r\n\u2028\u2029\x85]/g, ' '))
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/([\\`*_[\]|#~!])/g, '\\$1')
    .replace(/@/g, '&#64;');
}

export function htmlEscape(s: string): string {
  return s
    .replace(/[\u202a-\u202e\u2066-\u2069]/g, (ch) => `\\u${hex(ch, 4)}`)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

export function renderMarkdown(blocks: Block[]): string {
  const out: string[] = [];
  for (const b of blocks) {
    switch (b.kind) {
      case 'heading':
        out.push(`${'#'.repeat(b.level)} ${mdEscape(b.text)}\n`);
        break;
      case 'para':
        out.push(b.strong ? `**${mdEscape(b.text)}**\n` : `${mdEscape(b.text)}\n`);
        break;
      case 'list':
        out.push(b.items.map((i) => `- ${mdEscape(i)}`).join('\n') + '\n');
        break;
      case 'code': {
        const fence = '`'.repeat(Math.max(3, longestRun(b.text, '`') + 1));
        out.push(`${fence}${b.lang ?? ''}\n${b.text}\n${fence}\n`);
        break;
      }
      case 'table': {
        const t = withoutEmptyColumns(b);
        out.push(
          [
            `| ${t.headers.map(mdEscape).join(' | ')} |`,
            `| ${t.headers.map(() => '---').join(' | ')} |`,
            ...t.rows.map((r) => `| ${r.map((c) => (c === '' ? ' ' : mdEscape(c))).join(' | ')} |`),
          ].join('\n') + '\n',
        );
        if (b.note) out.push(`_${mdEscape(b.note)}_\n`);
        break;
      }
      case 'alert':
        // One line of escaped text: no `>` or line break in it can end the quote or start another alert.
        out.push(`> [!${b.level.toUpperCase()}]\n> ${mdEscape(b.text)}\n`);
        break;
      case 'details':
        out.push(
          `<details><summary>${mdEscape(b.summary)}</summary>\n\n${renderMarkdown(b.blocks)}\n</details>\n`,
        );
        break;
    }
  }
  return out.join('\n');
}

function longestRun(s: string, ch: string): number {
  let best = 0;
  let cur = 0;
  for (const c of s) {
    cur = c === ch ? cur + 1 : 0;
    if (cur > best) best = cur;
  }
  return best;
}

export function renderHtmlBlocks(blocks: Block[]): string {
  return blocks
    .map((b) => {
      switch (b.kind) {
        case 'heading':
          return `<h${b.level}>${htmlEscape(b.text)}</h${b.level}>`;
        case 'para':
          return b.strong ? `<p><strong>${htmlEscape(b.text)}</strong></p>` : `<p>${htmlEscape(b.text)}</p>`;
        case 'list':
          return `<ul>${b.items.map((i) => `<li>${htmlEscape(i)}</li>`).join('')}</ul>`;
        case 'code':
          return `<pre><code>${htmlEscape(b.text)}</code></pre>`;
        case 'table': {
          const t = withoutEmptyColumns(b);
          return (
            `<table><thead><tr>${t.headers.map((h) => `<th>${htmlEscape(h)}</th>`).join('')}</tr></thead><tbody>` +
            t.rows.map((r) => `<tr>${r.map((c) => `<td>${htmlEscape(c)}</td>`).join('')}</tr>`).join('') +
            `</tbody></table>` +
            (b.note ? `<p><em>${htmlEscape(b.note)}</em></p>` : '')
          );
        }
        case 'alert':
          return `<div class="alert alert-${b.level}"><p class="alert-title">${b.level === 'caution' ? 'Caution' : 'Warning'}</p><p>${htmlEscape(b.text)}</p></div>`;
        case 'details':
          return `<details><summary>${htmlEscape(b.summary)}</summary>${renderHtmlBlocks(b.blocks)}</details>`;
      }
      return '';
    })
    .join('\n');
}

export function renderHtmlPage(title: string, blocks: Block[]): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${htmlEscape(title)}</title>
<style>
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;color:#1f2328;line-height:1.5}
table{border-collapse:collapse;margin:.5em 0 1em;max-width:100%}td{overflow-wrap:anywhere}th,td{border:1px solid #d1d9e0;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f6f8fa}h2{border-bottom:1px solid #d1d9e0;padding-bottom:.3em}pre{background:#f6f8fa;padding:1em;overflow:auto}
details{margin:.5em 0}summary{cursor:pointer;font-weight:600}
.alert{border-left:.25em solid;padding:.5em 1em;margin:0 0 1em}.alert p{margin:.25em 0}.alert-title{font-weight:600}
.alert-caution{border-color:#cf222e;background:#ffebe9}.alert-caution .alert-title{color:#cf222e}
.alert-warning{border-color:#9a6700;background:#fff8c5}.alert-warning .alert-title{color:#9a6700}
</style></head><body>
${renderHtmlBlocks(blocks)}
</body></html>
`;
}

/** Caps every table at `maxRows`, noting what was cut, so a huge run degrades instead of vanishing. */
export function capTables(blocks: Block[], maxRows: number): Block[] {
  return blocks.map((b) => {
    if (b.kind === 'table' && b.rows.length > maxRows) {
      const cut = b.rows.length - maxRows;
      return {
        ...b,
        rows: b.rows.slice(0, maxRows),
        note: `${cut} more row(s) not shown here; all are in attribution.json`,
      };
    }
    if (b.kind === 'details') return { ...b, blocks: capTables(b.blocks, maxRows) };
    return b;
  });
}

/** Plain text for a terminal: aligned tables, no markup. */
export function renderText(blocks: Block[], width = 120): string {
  const out: string[] = [];
  const clip = (s: string, n: number): string => (s.length > n ? `${s.slice(0, n - 1)}…` : s);
  const oneLine = (s: string): string =>
    visibleControls(s.replace(/[\r\n\t\u2028\u2029\x85]+/g, ' ')).replace(/\p{Cc}/gu, '?');
  for (const b of blocks) {
    switch (b.kind) {
      case 'heading':
        out.push('', b.level === 2 ? `== ${oneLine(b.text)} ==` : `-- ${oneLine(b.text)} --`);
        break;
      case 'para':
        out.push(b.strong ? `>> ${oneLine(b.text)}` : oneLine(b.text));
        break;
      case 'list':
        for (const i of b.items) out.push(`  - ${oneLine(i)}`);
        break;
      case 'code':
        out.push(...b.text.split('\n').map((l) => `    ${oneLine(l)}`));
        break;
      case 'alert':
        out.push(`!! ${b.level.toUpperCase()}: ${oneLine(b.text)}`);
        break;
      case 'table': {
        const t = withoutEmptyColumns(b);
        const rows = [t.headers, ...t.rows].map((r) => r.map(oneLine));
        const cols = t.headers.length;
        const widths = Array.from({ length: cols }, (_, c) =>
          Math.max(...rows.map((r) => (r[c] ?? '').length)),
        );
        // Shrink the widest column first until the table fits, never below 10 characters.
        for (let guard = 0; guard < 10000 && widths.reduce((a, w) => a + w + 3, 0) > width; guard++) {
          const widest = widths.indexOf(Math.max(...widths));
          if (widths[widest] <= 10) break;
          widths[widest]--;
        }
        const fmt = (r: string[]): string =>
          r
            .map((c, i) => clip(c ?? '', widths[i]).padEnd(widths[i]))
            .join(' | ')
            .trimEnd();
        out.push(fmt(rows[0]), widths.map((w) => '-'.repeat(w)).join('-+-'), ...rows.slice(1).map(fmt));
        if (b.note) out.push(`(${oneLine(b.note)})`);
        break;
      }
      case 'details':
        out.push(`[${oneLine(b.summary)}]`, renderText(b.blocks, width));
        break;
    }
  }
  return out.join('\n');
}
