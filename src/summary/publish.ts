/**
 * The summary's "Published" part: what `actions/publish` pushed (branch, commit, how many
 * commits, the remote's repository) or why it refused. Only the fields publish writes are
 * read, each as its own kind of value: a line of another shape (a forged one, a field that
 * looks like a token) shows nothing it was not meant to.
 */
import type { LedgerEvent } from '../ledger/ledger.js';
import { dataOf, eventsOf, type PublishPushed, type PublishRefused } from '../ledger/events.js';
import { scrubShapes } from '../platform/redact.js';
import { visibleControls, type Block } from './doc.js';

/** The longest reason shown: publish records at most 2000 characters. */
const REASON_MAX = 2000;

/**
 * Text from a ledger line, one line: line breaks as spaces, controls and bidi characters
 * visible (`\xNN`, `\uNNNN`) in every form, HTML included; the renderers escape the rest.
 */
export function shownText(v: unknown, max: number): string {
  if (typeof v !== 'string') return '';
  const flat = visibleControls(v.replace(/\r\n|[\r\n\u2028\u2029\x85]/g, ' '));
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** A commit id as written (40 or 64 hex digits), or nothing. */
function commitOf(v: unknown): string | undefined {
  return typeof v === 'string' && /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/.test(v) ? v : undefined;
}

/**
 * The remote's repository: host and path of the URL publish pushed to, without `.git`, a
 * user, a password, a query or a fragment; `(not a URL)` for anything else.
 */
export function repositoryOf(remote: unknown): string {
  if (typeof remote !== 'string') return '';
  let u: URL;
  try {
    u = new URL(remote);
  } catch {
    return '(not a URL)';
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return '(not a URL)';
  return shownText(`${u.host}${decodeURIComponentSafe(u.pathname).replace(/\.git$/, '')}`, 300);
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/**
 * What became of publish's own token: `revoked`, or why not (scrubbed of anything shaped
 * like a credential). Any other value is not shown: publish writes nothing else there.
 */
export function tokenState(v: unknown): { text: string; bad: boolean } | undefined {
  if (v === undefined) return undefined;
  if (v === 'revoked') return { text: 'revoked (a call with it answered 401)', bad: false };
  if (typeof v === 'string' && v.startsWith('not revoked'))
    return {
      text: `NOT confirmed revoked: ${shownText(scrubShapes(v.slice(11).replace(/^:\s*/, '')), 300)}`,
      bad: true,
    };
  return { text: '(not a state publish records: not shown)', bad: true };
}

/** publish.pushed as the summary and attribution.json show it: its fields, nothing else. */
export function shownPushed(p: Partial<Record<keyof PublishPushed, unknown>>): Record<string, unknown> {
  const commit = commitOf(p.commit);
  return {
    branch: shownText(p.branch, 300),
    ...(commit ? { commit } : {}),
    ...(typeof p.commits === 'number' && Number.isSafeInteger(p.commits) && p.commits >= 0
      ? { commits: p.commits }
      : {}),
    repository: repositoryOf(p.remote),
    ...(p.token !== undefined ? { token: tokenState(p.token)?.text } : {}),
  };
}

/** publish.refused as the summary and attribution.json show it: its fields, nothing else. */
export function shownRefused(r: Partial<Record<keyof PublishRefused, unknown>>): Record<string, unknown> {
  const commit = commitOf(r.commit);
  return {
    branch: shownText(r.branch, 300),
    ...(commit ? { commit } : {}),
    reason: shownText(r.reason, REASON_MAX),
    ...(r.token !== undefined ? { token: tokenState(r.token)?.text } : {}),
  };
}

/** A publish event as attribution.json shows it (see shownPushed, shownRefused); undefined for another. */
export function shownPublishEvent(e: LedgerEvent): LedgerEvent | undefined {
  const pushed = dataOf(e, 'publish.pushed');
  if (pushed) return { ...e, data: shownPushed(pushed) };
  const refused = dataOf(e, 'publish.refused');
  if (refused) return { ...e, data: shownRefused(refused) };
  return undefined;
}

/** "Published": a table of the pushes, a paragraph per refusal; nothing when publish did not run. */
export function publishSection(events: LedgerEvent[]): Block[] {
  const pushed = eventsOf(events, 'publish.pushed');
  const refused = eventsOf(events, 'publish.refused');
  if (!pushed.length && !refused.length) return [];
  const blocks: Block[] = [{ kind: 'heading', level: 3, text: 'Published' }];
  if (pushed.length)
    blocks.push({
      kind: 'table',
      headers: ['Pushed to branch', 'Commit', 'Commits', 'Repository', "publish's token"],
      rows: pushed.map((p) => {
        const s = shownPushed(p);
        return [
          String(s.branch),
          typeof s.commit === 'string' ? s.commit.slice(0, 12) : '(not a commit id)',
          typeof s.commits === 'number' ? String(s.commits) : '?',
          String(s.repository),
          typeof s.token === 'string' ? s.token : '',
        ];
      }),
    });
  for (const p of pushed) {
    const t = tokenState(p.token);
    if (t?.bad)
      blocks.push({
        kind: 'para',
        text: `publish's token for ${shownText(p.branch, 300)} was not confirmed revoked: it can write to the repository until it expires; revoke it from the App's settings.`,
        strong: true,
      });
  }
  for (const r of refused) {
    const s = shownRefused(r);
    const at = typeof s.commit === 'string' ? ` (HEAD ${s.commit.slice(0, 12)})` : '';
    const token = typeof s.token === 'string' ? ` publish's token: ${s.token}.` : '';
    blocks.push({
      kind: 'para',
      text: `Refused: nothing was pushed to branch ${String(s.branch)}${at}: ${String(s.reason)}.${token}`,
      strong: true,
    });
  }
  return blocks;
}
