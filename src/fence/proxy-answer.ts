/**
 * The DNS proxy's answer path (see proxy.ts): an upstream answer is taken only when it
 * repeats the question asked, checked for addresses that point inward, and sent once its
 * addresses are in the sets; a cached answer goes through the same set check.
 */
import type { AnswerCache, CacheHit } from './dnscache.js';
import { serveCached } from './dnscache.js';
import { readAnswer, refusal, sameQuestion, RCODE_REFUSED, RCODE_SERVFAIL } from './dnswire.js';
import type { AnswerAddresses, Question } from './dnswire.js';
import type { InwardFilter } from './inward.js';
import type { DomainMatcher } from './policy.js';
import type { NameStats, ProxyStats } from './proxy-stats.js';
import type { Pending, ReplyTo } from './pending.js';
import type { SourceAsk } from './refusals.js';

export interface AddressSink {
  /**
   * Undefined when every address is already allowed for at least max(ttl - ageSeconds,
   * min-ttl) seconds; else a promise that settles once they are (or could not be).
   */
  ensure(
    v4: readonly { address: string; ttl: number }[],
    v6: readonly { address: string; ttl: number }[],
    ageSeconds?: number,
  ): Promise<void> | undefined;
}

type Addresses = readonly { address: string; ttl: number }[];

export interface ProxyOptions {
  matcher: DomainMatcher;
  policy: 'block' | 'audit';
  upstream: { address: string; port: number };
  sink: AddressSink;
  stats?: ProxyStats;
  timeoutMs?: number;
  log?: (line: string) => void;
  /** Finds the addresses of an answer that point inward; none checked when absent. */
  inward?: InwardFilter;
  /** The answer cache; `false` turns it off. Default: a new AnswerCache with its defaults. */
  cache?: AnswerCache | false;
  /**
   * Called for a new source of refused names (see refusals.ts: once per client socket, a
   * few a second at most), after the answer is on its way (finding who asked must not
   * delay it), with the source's key and the client socket's port.
   */
  onRefused?: SourceAsk;
  /**
   * Called with a name on the list and the addresses of an answer to it, before the answer
   * is sent (the agent's web gate keeps them: answered.ts); `ageSeconds` for a cached one.
   */
  onAnswer?: (name: string, v4: Addresses, v6: Addresses, ageSeconds: number) => void;
}

export function send(to: ReplyTo, b: Buffer): void {
  if (to.reply) to.reply(b);
  else to.sock!.send(b, to.port, to.address);
}

function addAddresses(
  stats: NameStats,
  v4: readonly { address: string }[],
  v6: readonly { address: string }[],
): void {
  for (let i = 0; i < v4.length && stats.addresses.size < 64; i++) stats.addresses.add(v4[i].address);
  for (let i = 0; i < v6.length && stats.addresses.size < 64; i++) stats.addresses.add(v6[i].address);
}

export class AnswerPath {
  constructor(
    private readonly o: ProxyOptions,
    private readonly stats: ProxyStats,
    private readonly cache: AnswerCache | undefined,
  ) {}

  /**
   * An upstream answer carrying the id `p` was sent with: taken when it repeats the
   * question asked (false, counted as forged, when not: the query still waits).
   */
  accept(msg: Buffer, p: Pending): boolean {
    const ans = sameQuestion(msg, p.query, p.questionEnd)
      ? readAnswer(msg, { name: p.name, end: p.questionEnd })
      : undefined;
    if (!ans) {
      this.stats.forgedAnswers++;
      return false;
    }
    msg.writeUInt16BE(p.origId, 0);
    this.release(ans, p, msg);
    return true;
  }

  /**
   * Answers from the cache: the client's id and question case, TTLs counted down, sent
   * once the addresses are in the sets for that long (at once when they already are).
   * False when the entry does not fit this query (then it goes upstream as usual).
   */
  fromCache(hit: CacheHit, msg: Buffer, q: Question, stats: NameStats | undefined, to: ReplyTo): boolean {
    const out = serveCached(hit, msg, q.end);
    if (!out) return false;
    const { v4, v6 } = hit.entry;
    this.o.onAnswer?.(q.name, v4, v6, hit.age);
    if (stats && stats.addresses.size === 0) addAddresses(stats, v4, v6);
    const update = v4.length || v6.length ? this.o.sink.ensure(v4, v6, hit.age) : undefined;
    // Counted once sent: one refused for want of a set update is a set failure instead.
    if (!update) {
      this.stats.cacheHits++;
      send(to, out);
    } else
      update.then(
        () => {
          this.stats.cacheHits++;
          send(to, out);
        },
        (e: Error) => this.setFailed(e, to, out),
      );
    return true;
  }

  private setFailed(e: Error, to: ReplyTo, msg: Buffer): void {
    this.stats.setFailures++;
    this.o.log?.(`set update failed: ${e.message}`);
    send(to, refusal(msg, msg.length, RCODE_SERVFAIL));
  }

  /**
   * Sends the answer once its addresses are in the sets; SERVFAIL if they could not be
   * added. Cached (when it may be) only once the addresses are in.
   */
  private release(ans: AnswerAddresses, p: Pending, msg: Buffer): void {
    const inward = this.o.inward?.check(ans);
    if (inward) {
      this.stats.rebound(p.name, inward);
      // The name goes to the report only: this log is kept by the daemon and not scrubbed.
      this.o.log?.(`an answer pointed inward: ${inward.map((a) => `${a.address} (${a.kind})`).join(', ')}`);
      if (this.o.policy === 'block') {
        // The answer's question is the query's (accept checked), so it ends where that did.
        send(p, refusal(msg, p.questionEnd, RCODE_REFUSED));
        return;
      }
    }
    if (p.stats && p.stats.addresses.size < 64) addAddresses(p.stats, ans.v4, ans.v6);
    this.o.onAnswer?.(p.name, ans.v4, ans.v6, 0);
    const update = ans.v4.length || ans.v6.length ? this.o.sink.ensure(ans.v4, ans.v6) : undefined;
    if (!update) {
      if (p.key !== undefined) this.cache?.put(p.key, msg, ans);
      send(p, msg);
      return;
    }
    update.then(
      () => {
        if (p.key !== undefined) this.cache?.put(p.key, msg, ans);
        send(p, msg);
      },
      (e: Error) => this.setFailed(e, p, msg),
    );
  }
}
