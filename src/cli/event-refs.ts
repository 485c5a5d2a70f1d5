/**
 * What a `${{ }}` expression reads of the event, in every spelling GitHub accepts: dotted
 * or bracketed (`github.event['comment']['body']`), any case (context and property names
 * are case-insensitive), with spaces, inside function calls, and the whole object
 * (`toJSON(github.event)`, `toJSON(github)`). A regex over the text missed the last three.
 */

export type Taint = 'attacker' | 'event' | 'none';

export interface EventRef {
  /** Offset of the expression's `${{` in the text. */
  index: number;
  /** The reference as written, spaces removed. */
  name: string;
  taint: Taint;
}

/** Event fields whose text anyone who can open an issue, a pull request or a branch chooses. */
const ATTACKER_LEAF =
  /(?:body|title|message|ref|label|name|email|page_name|default_branch|head_branch|description)$/;
/** Fields that hold a number, an id, a SHA or a time, whoever sent the event. */
const SCALAR_LEAF =
  /^(?:number|id|node_id|\w+_id|sha|\w+_sha|before|after|\w+_at|\w+_count|run_number|run_attempt|additions|deletions|changed_files|draft|merged|forced|created|deleted|private|fork)$/;
/** Functions whose result is true or false, never the text they are given. */
const BOOLEAN_FNS = new Set(['contains', 'startswith', 'endswith']);
const COMPARE = new Set(['==', '!=', '<', '<=', '>', '>=', '!']);

interface Token {
  kind: 'ident' | 'string' | 'punct' | 'other';
  text: string;
  at: number;
}

/** Tokens of one expression; a string literal is one token, so `'}}'` in it ends nothing. */
function tokens(s: string, from: number): { list: Token[]; end: number } {
  const list: Token[] = [];
  let i = from;
  while (i < s.length) {
    const c = s[i];
    if (c === '}' && s[i + 1] === '}') return { list, end: i + 2 };
    if (/\s/.test(c)) i++;
    else if (c === "'") {
      let j = i + 1;
      // '' is a quote inside a string.
      while (j < s.length && !(s[j] === "'" && s[j + 1] !== "'")) j += s[j] === "'" ? 2 : 1;
      list.push({ kind: 'string', text: s.slice(i + 1, j).replace(/''/g, "'"), at: i });
      i = j + 1;
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][\w-]*/.exec(s.slice(i, i + 256)) ?? [c];
      list.push({ kind: 'ident', text: m[0].toLowerCase(), at: i });
      i += m[0].length;
    } else {
      const two = s.slice(i, i + 2);
      const op = ['==', '!=', '<=', '>=', '&&', '||'].includes(two) ? two : c;
      list.push({ kind: /[.[\](),*!<>=]/.test(op) ? 'punct' : 'other', text: op, at: i });
      i += op.length;
    }
  }
  return { list, end: s.length };
}

/** Where a `[` at k closes, counting nested brackets (an index may be an expression). */
function closing(list: Token[], k: number): number {
  let depth = 0;
  for (let j = k; j < list.length; j++) {
    if (list[j].text === '[') depth++;
    else if (list[j].text === ']' && --depth === 0) return j;
  }
  return list.length;
}

function taintOf(path: string[], whole: boolean): Taint {
  if (path[0] !== 'github') return 'none';
  // The whole context, or the whole event: toJSON writes every field, the body too.
  if (path.length === 1 || (path.length === 2 && path[1] === 'event')) return 'attacker';
  // `github[x]` may name the event or head_ref.
  if (path[1] === 'head_ref' || path[1] === '?') return 'attacker';
  if (path[1] !== 'event') return 'none';
  // workflow_dispatch inputs: chosen by someone with write access, not by anyone.
  if (path[2] === 'inputs') return 'event';
  const leaf = path[path.length - 1];
  if (leaf === '?') return 'attacker'; // an index chosen at run time may name any field
  if (ATTACKER_LEAF.test(leaf)) return 'attacker';
  // repository_dispatch's client_payload is whatever its sender wrote, `x_id` included.
  if (SCALAR_LEAF.test(leaf) && path[2] !== 'client_payload') return 'none';
  return whole ? 'attacker' : 'event';
}

/** Each event reference in the `${{ }}` expressions of a text, with what it lets in. */
export function eventRefs(text: string): EventRef[] {
  const found: EventRef[] = [];
  for (let start = text.indexOf('${{'); start >= 0;) {
    const { list, end } = tokens(text, start + 3);
    const calls: string[] = [];
    for (let k = 0; k < list.length; k++) {
      const t = list[k];
      if (t.text === '(') calls.push(list[k - 1]?.kind === 'ident' ? list[k - 1].text : '');
      else if (t.text === ')') calls.pop();
      if (t.kind !== 'ident' || t.text !== 'github' || list[k - 1]?.text === '.') continue;
      const path = ['github'];
      let j = k + 1;
      for (;;) {
        const next = list[j + 1];
        if (list[j]?.text === '.' && next && (next.kind === 'ident' || next.text === '*')) {
          path.push(next.text);
          j += 2;
        } else if (list[j]?.text === '[') {
          // An index never closed runs to the end of the expression.
          const close = Math.min(closing(list, j), list.length - 1);
          const inner = list.slice(j + 1, close);
          const literal = inner.length === 1 && inner[0].kind === 'string';
          path.push(literal ? inner[0].text.toLowerCase() : inner[0]?.text === '*' ? '*' : '?');
          j = close + 1;
        } else break;
      }
      const fn = calls[calls.length - 1];
      const boolean =
        BOOLEAN_FNS.has(fn ?? '') || COMPARE.has(list[k - 1]?.text ?? '') || COMPARE.has(list[j]?.text ?? '');
      const taint = boolean ? 'none' : taintOf(path, fn === 'tojson');
      if (taint !== 'none')
        found.push({
          index: start,
          name: text.slice(t.at, list[j - 1].at + list[j - 1].text.length).replace(/\s+/g, ''),
          taint,
        });
      k = j - 1;
    }
    start = text.indexOf('${{', end);
  }
  return found;
}
