/**
 * A workflow file as a plain tree with source positions, aliases and merge keys (`<<:`)
 * resolved. Whatever an alias brings in is placed at the alias (the use site), since that
 * is the line the reader has to change. Resolution is bounded: at most MAX_NODES nodes
 * and MAX_DEPTH levels, so a "billion laughs" file stops early with one problem instead of
 * growing without end.
 */
import {
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  type Document,
  type Node,
} from 'yaml';

export interface Pos {
  line: number;
  column: number;
}

export type View =
  | ({ kind: 'map'; entries: Map<string, { key: Pos; value: View }> } & Pos)
  | ({ kind: 'seq'; items: View[] } & Pos)
  | ({
      kind: 'scalar';
      /** The value as a string ('' for null). */
      text: string;
      /** Source line of the value's line `k` (1-based); the value's own line when unknown. */
      lineOf: (k: number) => Pos;
    } & Pos);

export interface ParsedYaml {
  root?: View;
  errors: { line: number; column: number; message: string }[];
}

export const MAX_NODES = 100_000;
export const MAX_DEPTH = 64;

class Budget {
  nodes = 0;
  exceeded = false;
}

/** The column of the first non-blank character of a 1-based source line. */
function indentOf(lines: string[], line: number): number {
  const text = lines[line - 1] ?? '';
  return text.length - text.trimStart().length + 1;
}

function scalarText(v: unknown): string {
  if (v === null || v === undefined) return '';
  return typeof v === 'string' ? v : String(v);
}

export function parseYaml(text: string): ParsedYaml {
  const lc = new LineCounter();
  let doc: Document.Parsed;
  try {
    doc = parseDocument(text, { lineCounter: lc, merge: true, keepSourceTokens: false });
  } catch (e) {
    // Deep flow nesting can exhaust the parser's stack: one problem, not a crash.
    return { errors: [{ line: 1, column: 1, message: `cannot parse: ${(e as Error).message}` }] };
  }
  const errors = doc.errors.map((e) => ({
    line: e.linePos?.[0]?.line ?? 1,
    column: e.linePos?.[0]?.col ?? 1,
    message: e.message.split('\n')[0],
  }));
  const lines = text.split('\n');
  const budget = new Budget();
  const pos = (node: Node | null | undefined): Pos | undefined => {
    const at = node?.range?.[0];
    if (at === undefined) return undefined;
    const p = lc.linePos(at);
    return { line: p.line, column: p.col };
  };

  const convert = (
    node: unknown,
    depth: number,
    useSite: Pos | undefined,
    fallback: Pos,
  ): View | undefined => {
    if (++budget.nodes > MAX_NODES || depth > MAX_DEPTH) {
      budget.exceeded = true;
      return undefined;
    }
    if (isAlias(node)) {
      const target = node.resolve(doc);
      return convert(target, depth + 1, useSite ?? pos(node) ?? fallback, fallback);
    }
    const here = useSite ?? pos(node as Node) ?? fallback;
    if (isMap(node)) {
      const entries = new Map<string, { key: Pos; value: View }>();
      const merged: [string, { key: Pos; value: View }][] = [];
      for (const pair of node.items) {
        if (!isPair(pair)) continue;
        const keyPos = useSite ?? pos(pair.key as Node) ?? here;
        if (isScalar(pair.key) && typeof pair.key.value === 'symbol') {
          // `<<: *base` or `<<: [*a, *b]`: the earlier source wins, and the map's own keys win over all.
          const src = convert(pair.value, depth + 1, useSite ?? keyPos, keyPos);
          const sources = src?.kind === 'seq' ? src.items : src ? [src] : [];
          for (const s of sources)
            if (s.kind === 'map')
              for (const [k, v] of s.entries) if (!merged.some(([m]) => m === k)) merged.push([k, v]);
          continue;
        }
        const key = isScalar(pair.key) ? scalarText(pair.key.value) : '';
        const value = convert(pair.value, depth + 1, useSite, keyPos);
        if (value) entries.set(key, { key: keyPos, value });
      }
      for (const [k, v] of merged) if (!entries.has(k)) entries.set(k, v);
      return { kind: 'map', entries, ...here };
    }
    if (isSeq(node)) {
      const items: View[] = [];
      for (const item of node.items) {
        const v = convert(item, depth + 1, useSite, here);
        if (v) items.push(v);
      }
      return { kind: 'seq', items, ...here };
    }
    const value = isScalar(node) ? node.value : null;
    const literal = !useSite && isScalar(node) && node.type === 'BLOCK_LITERAL';
    return {
      kind: 'scalar',
      text: scalarText(value),
      ...here,
      // A literal block keeps its lines as written: value line k sits k lines below the `|`.
      lineOf: (k) =>
        literal
          ? { line: here.line + k, column: indentOf(lines, here.line + k) }
          : { line: here.line, column: here.column },
    };
  };

  const root = doc.contents ? convert(doc.contents, 0, undefined, { line: 1, column: 1 }) : undefined;
  if (budget.exceeded)
    errors.push({
      line: 1,
      column: 1,
      message: `the file nests deeper than ${MAX_DEPTH} levels or expands (through its aliases) to more than ${MAX_NODES} nodes; only that much was read`,
    });
  return { root, errors };
}

/** The map entry `key` of `v`, if `v` is a map. */
export function field(v: View | undefined, key: string): View | undefined {
  return v?.kind === 'map' ? v.entries.get(key)?.value : undefined;
}

export function text(v: View | undefined): string | undefined {
  return v?.kind === 'scalar' ? v.text : undefined;
}
