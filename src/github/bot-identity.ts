/**
 * The bot identity a `token.issued` line names, held to the form GitHub gives an App: login
 * `<slug>[bot]`, address `<id>+<slug>[bot]@users.noreply.<host>` (github-token writes what
 * GitHub answered, nothing else). Commit attribution takes only such an identity as the
 * agent's: a line outside every window cannot be told from Cordon's (T32), and one naming a
 * person's address as the bot's would make that person's commits the agent's (T27). No
 * person's login or address ends in `[bot]`.
 */
import type { Env } from '../platform/runner.js';

/** `github.com` for GitHub (and its loopback stand-ins), else the GHES host's own noreply domain. */
export function noreplyHost(apiUrl: string): string {
  const host = new URL(apiUrl).hostname;
  if (host === 'api.github.com' || host === '127.0.0.1' || host === 'localhost') return 'github.com';
  return host;
}

/** The hosts a bot's noreply address may name in this job: github.com, and the job's GHES host. */
export function noreplyHosts(env: Env): string[] {
  const hosts = new Set(['github.com']);
  for (const url of [env.GITHUB_API_URL, env.GITHUB_SERVER_URL]) {
    try {
      if (url) hosts.add(noreplyHost(url).toLowerCase());
    } catch {
      // Not a URL: only github.com's form is taken.
    }
  }
  return [...hosts];
}

/** An App's slug as GitHub makes it from the App's name: letters, digits, `-` and `_`. */
const SLUG = /^[a-z0-9][a-z0-9_-]{0,99}$/i;

/** Most characters of a claimed value a finding shows. */
const SHOWN = 80;

/**
 * A value from a line, quoted, its control characters as `\xNN` and the invisible ones that
 * reorder or hide text (bidi overrides and isolates, marks, zero-width) as `\uNNNN`: a
 * right-to-left override in a forged address would otherwise turn the rest of the finding
 * around as shown. Cut to SHOWN characters.
 */
export function shown(v: unknown): string {
  const s = typeof v === 'string' ? v : (JSON.stringify(v) ?? String(v));
  const cut = [...s].slice(0, SHOWN).join('');
  const hex = (ch: string, n: number): string => ch.charCodeAt(0).toString(16).padStart(n, '0');
  const safe = cut.replace(
    // eslint-disable-next-line no-control-regex
    /[\x00-\x1f\x7f-\x9f"\\]|[\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/g,
    (ch) =>
      ch === '"' || ch === '\\'
        ? `\\${ch}`
        : ch.charCodeAt(0) > 0xff
          ? `\\u${hex(ch, 4)}`
          : `\\x${hex(ch, 2)}`,
  );
  return `"${safe}${cut.length < s.length ? '...' : ''}"`;
}

export interface AgentIdentity {
  name: string;
  emails: string[];
}

/**
 * The git identity of the App bot a `token.issued` names (lower-cased addresses), or what it
 * names that is not GitHub's form for one. `hosts`: see `noreplyHosts`.
 */
export function botIdentity(
  data: unknown,
  hosts: readonly string[],
): { identity: AgentIdentity } | { refused: string } {
  const t = (typeof data === 'object' && data !== null ? data : {}) as Record<string, unknown>;
  const { app, bot, botId, gitUserName, gitUserEmail } = t;
  if (typeof app !== 'string' || !SLUG.test(app))
    return { refused: `names ${shown(app)} as the App, not an App's slug` };
  const login = `${app}[bot]`.toLowerCase();
  if (typeof bot !== 'string' || bot.toLowerCase() !== login)
    return { refused: `names ${shown(bot)} as the bot of App ${app}, whose bot is ${app}[bot]` };
  if (botId !== undefined && !(Number.isSafeInteger(botId) && (botId as number) > 0))
    return { refused: `names ${shown(botId)} as the bot's user id, not a positive number` };
  if (gitUserName !== undefined && (typeof gitUserName !== 'string' || gitUserName.toLowerCase() !== login))
    return { refused: `names ${shown(gitUserName)} as the bot's git name, not ${bot}` };
  const form = (host: string): string => `${String(botId)}+${login}@users.noreply.${host}`;
  if (
    gitUserEmail !== undefined &&
    (botId === undefined ||
      typeof gitUserEmail !== 'string' ||
      !hosts.some((h) => form(h) === gitUserEmail.toLowerCase()))
  )
    return {
      refused: `names ${shown(gitUserEmail)} as the bot's address, not GitHub's for it (${botId === undefined ? `<id>+${bot}` : `${String(botId)}+${bot}`}@users.noreply.github.com)`,
    };
  const emails = new Set<string>();
  if (typeof gitUserEmail === 'string') emails.add(gitUserEmail.toLowerCase());
  if (botId !== undefined) emails.add(form('github.com'));
  emails.add(`${login}@users.noreply.github.com`);
  return { identity: { name: typeof gitUserName === 'string' ? gitUserName : bot, emails: [...emails] } };
}
