import { describe, expect, test } from '@jest/globals';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  AGENT_CT_MARK,
  ANSWERED_CT_MARK,
  DNS_FLOOD_PER_UID,
  TRACES_PER_SECOND,
  applyRuleset,
  parseUidDrops,
  renderRuleset,
} from '../../../src/fence/firewall.js';
import { parseBlocked, parseTracedDest } from '../../../src/fence/nftshell.js';
import { parseCidrs } from '../../../src/fence/policy.js';
import { tempDir } from '../../harness/tmp.js';

/** A chain's rules, trimmed, from the rendered text. */
function chain(text: string, name: string): string[] {
  const lines = text.split('\n');
  const start = lines.indexOf(`  chain ${name} {`);
  return lines.slice(start + 1, lines.indexOf('  }', start)).map((l) => l.trim());
}

describe('ruleset', () => {
  const base = {
    staticAllowed: parseCidrs('192.0.2.0/24 2001:db8::/32'),
    dnsUid: 997,
    upstreams: ['198.51.100.53', '2001:db8::53'],
    agent: { uidMin: 61000, uidMax: 61183, dnsPort: 5354 },
  };

  test('block mode: drop policy on output and forward, upstream DNS only for the proxy uid, reject not drop', () => {
    const r = renderRuleset({ ...base, policy: 'block' });
    expect(r.startsWith('table inet cordon {}\ndelete table inet cordon\n')).toBe(true);
    expect(r).toMatch(/chain output \{\n\s+type filter hook output priority filter; policy drop;/);
    expect(r).toMatch(/chain forward \{\n\s+type filter hook forward priority filter; policy drop;/);
    expect(r).toContain(
      'meta skuid 997 meta l4proto { tcp, udp } th dport 53 ip daddr { 198.51.100.53 } accept',
    );
    expect(r).toContain(
      'meta skuid 997 meta l4proto { tcp, udp } th dport 53 ip6 daddr { 2001:db8::53 } accept',
    );
    expect(r).not.toMatch(/^\s+ip daddr 198\.51\.100\.53 accept/m);
    expect(r).toContain('elements = { 192.0.2.0/24 }');
    expect(r).toContain('elements = { 2001:db8::/32 }');
    expect(r).toContain('reject with tcp reset');
    expect(r).toContain('reject with icmpv6 type admin-prohibited');
    expect(r).toContain('nd-neighbor-solicit');
    expect(r).toContain('meta iifkind "bridge" meta l4proto { tcp, udp } th dport 53 redirect to :53');
  });

  test('audit mode accepts after recording', () => {
    const r = renderRuleset({ ...base, policy: 'audit' });
    expect(r).toContain('policy accept;');
    expect(r).not.toContain('policy drop;');
    expect(r).not.toContain('reject');
    expect(r).toMatch(/update @blocked4[^\n]+\n[^\n]+\n[^\n]+\n[^\n]+\n\s+accept/);
  });

  test("the agent's uids go to their own chain, after the proxy's upstream rule and before the runner's", () => {
    const r = renderRuleset({ ...base, policy: 'block' });
    const output = chain(r, 'output');
    const agent = output.indexOf('meta skuid 61000-61183 goto agent_decide');
    expect(agent).toBeGreaterThan(output.findIndex((l) => l.startsWith('meta skuid 997 ')));
    expect(agent).toBeLessThan(output.indexOf('jump decide'));
    // goto, not jump: nothing of the agent's comes back to the runner's decide chain.
    expect(r).not.toContain('jump agent_decide');
    const decide = chain(r, 'agent_decide').join('\n');
    // Only the agent's DNS sets and the static networks; never the runner's allow sets.
    expect(decide).toContain('ip daddr @agent4 accept');
    expect(decide).toContain('ip6 daddr @agent6 accept');
    expect(decide).toContain('ip daddr @static4 accept');
    expect(decide).toContain('ip6 daddr @static6 accept');
    expect(decide).not.toMatch(/@allow[46]/);
    expect(decide).toContain('ip daddr 127.0.0.1 meta l4proto { tcp, udp } th dport 5354 accept');
    expect(decide).toContain('ip6 daddr ::1 meta l4proto { tcp, udp } th dport 5354 accept');
    // DNS and DoT by port on every transport with ports, not TCP and UDP alone (UDP-Lite got through).
    expect(decide).toContain(
      'meta l4proto { tcp, udp, udplite, sctp, dccp } th dport { 53, 853 } goto agent_refuse',
    );
    expect(chain(r, 'decide')).toContain(
      'meta l4proto { tcp, udp, udplite, sctp, dccp } th dport { 53, 853 } goto refuse',
    );
    expect(chain(r, 'agent_decide').pop()).toBe('goto agent_refuse');
    const refuse = chain(r, 'agent_refuse').join('\n');
    expect(refuse).toContain('update @agentblocked4 { ip daddr . meta l4proto . th dport }');
    expect(refuse).toContain('update @agentblocked6 { ip6 daddr . meta l4proto . th dport }');
    expect(refuse).not.toMatch(/@blocked[46]/);
    expect(refuse).toContain('reject with tcp reset');
    expect(r).toMatch(
      /set agentblocked4 \{ type ipv4_addr \. inet_proto \. inet_service; flags dynamic,timeout;/,
    );
    expect(r).toContain('set agent4 { type ipv4_addr; flags timeout; }');
    expect(r).toContain('set agent6 { type ipv6_addr; flags timeout; }');
    // The agent's DNS, to any address and port 53, goes to its own proxy.
    expect(r).toMatch(
      /chain agent_dns \{\n\s+type nat hook output priority -100; policy accept;\n\s+meta skuid 61000-61183 meta l4proto \{ tcp, udp \} th dport 53 redirect to :5354\n/,
    );
  });

  test("the agent's replies on a connection opened from outside go to its own chain, before established traffic is let out", () => {
    const output = chain(renderRuleset({ ...base, policy: 'block' }), 'output');
    const reply = output.indexOf('meta skuid 61000-61183 ct direction reply goto agent_decide');
    expect(reply).toBeGreaterThan(output.indexOf('oif "lo" accept'));
    expect(reply).toBeLessThan(output.indexOf('ct state established,related accept'));
  });

  test("hostile: a flow the agent did not open (the runner's, its local port reused) is judged by the agent's chain, not let through as established", () => {
    for (const policy of ['block', 'audit'] as const) {
      const output = chain(renderRuleset({ ...base, policy }), 'output');
      const mark = `0x${AGENT_CT_MARK.toString(16).padStart(8, '0')}`;
      // Only one bit of the mark, the others kept.
      expect(AGENT_CT_MARK & (AGENT_CT_MARK - 1)).toBe(0);
      // Marked on its first packet (the kernel's entry is new, not yet confirmed): a flow the
      // runner's socket opened is confirmed when the agent's packet comes, and stays unmarked.
      const marks = output.indexOf(
        `meta skuid 61000-61183 ct status & confirmed == 0 ct mark set ct mark | ${mark}`,
      );
      const borrowed = output.indexOf(
        `meta skuid 61000-61183 ct direction original ct state established,related ct mark & ${mark} == 0 goto agent_decide`,
      );
      // After the DNS rate limit, before loopback and established traffic are let through.
      expect(marks).toBe(2);
      expect(borrowed).toBe(3);
      expect(output.indexOf('oif "lo" accept')).toBe(4);
      expect(borrowed).toBeLessThan(output.indexOf('ct state established,related accept'));
      expect(output.filter((l) => l.includes(mark))).toHaveLength(2);
    }
  });

  test("hostile: block mode: a TCP packet in the reply direction with no socket owner leaves only on a connection a socket outside the agents' range answered (a SYN-ACK or a reset aside)", () => {
    const output = chain(renderRuleset({ ...base, policy: 'block' }), 'output');
    const mark = `0x${ANSWERED_CT_MARK.toString(16).padStart(8, '0')}`;
    expect(ANSWERED_CT_MARK & (ANSWERED_CT_MARK - 1)).toBe(0);
    expect(ANSWERED_CT_MARK & AGENT_CT_MARK).toBe(0);
    const agentReply = output.indexOf('meta skuid 61000-61183 ct direction reply goto agent_decide');
    const answered = output.indexOf(
      `ct direction reply ct mark & ${mark} == 0 meta skuid != 61000-61183 ct mark set ct mark | ${mark}`,
    );
    const ownerless = output.indexOf(
      `ct direction reply ct mark & ${mark} == 0 meta l4proto tcp tcp flags & (syn | rst) == 0 drop`,
    );
    // The agent's own replies go to its chain first; then a known owner marks the connection;
    // then what has no owner on an unmarked one is dropped, all before established is let out.
    expect(agentReply).toBeGreaterThan(0);
    expect(answered).toBe(agentReply + 1);
    expect(ownerless).toBe(agentReply + 2);
    expect(output[ownerless + 1]).toBe('ct state established,related accept');
    // Audit mode lets everything out anyway.
    expect(renderRuleset({ ...base, policy: 'audit' })).not.toContain(mark);
  });

  test("block mode: the agent's reply to a host on its list marks the connection answered, so its closed socket's data reaches that host; a reply to another does not", () => {
    const decide = chain(renderRuleset({ ...base, policy: 'block' }), 'agent_decide');
    const mark = `0x${ANSWERED_CT_MARK.toString(16).padStart(8, '0')}`;
    for (const [family, set] of [
      ['ip', 'agent4'],
      ['ip', 'static4'],
      ['ip6', 'agent6'],
      ['ip6', 'static6'],
    ]) {
      const marks = decide.indexOf(
        `ct direction reply ${family} daddr @${set} ct mark set ct mark | ${mark}`,
      );
      // Only where the same packet is then let out: after every refusal that could come first.
      expect(marks).toBeGreaterThan(
        decide.findIndex((l) => l.includes('th dport { 53, 853 } goto agent_refuse')),
      );
      expect(marks).toBeLessThan(decide.indexOf(`${family} daddr @${set} accept`));
      expect(
        decide.slice(marks + 1, decide.indexOf(`${family} daddr @${set} accept`)).join('\n'),
      ).not.toContain('goto agent_refuse');
    }
    expect(decide.filter((l) => l.includes(mark))).toHaveLength(4);
    expect(chain(renderRuleset({ ...base, policy: 'block' }), 'agent_refuse').join('\n')).not.toContain(mark);
  });

  test("audit mode: the agent's chain records and accepts", () => {
    const r = renderRuleset({ ...base, policy: 'audit' });
    expect(r).toMatch(
      /chain agent_refuse \{\n[^\n]+\n[^\n]+\n[^\n]+\n[^\n]+update @agentblocked4[^\n]+\n[^\n]+\n[^\n]+\n[^\n]+\n\s+accept\n/,
    );
    expect(r).toContain('redirect to :5354');
  });

  test("a user's DNS rate is limited at output, first, for every uid but root's and the proxy's", () => {
    const r = renderRuleset({ ...base, policy: 'block' });
    // First in output: before loopback and established UDP are let through.
    expect(chain(r, 'output')[1]).toBe(
      'meta l4proto { tcp, udp } th dport { 53, 5354 } meta skuid != { 0, 997 } jump dns_uid',
    );
    expect(chain(r, 'dns_uid')).toEqual([
      'meta l4proto tcp ct state != new return',
      `update @dnsuid { meta skuid limit rate over ${DNS_FLOOD_PER_UID}/second burst ${DNS_FLOOD_PER_UID} packets } update @dnsuiddrops { meta skuid } drop`,
    ]);
    expect(r).toContain('set dnsuiddrops { typeof meta skuid; flags dynamic; size 65536; counter; }');
  });

  test("block mode: the agent's port 80/443 connections to answered addresses go to the web gate, recorded after NAT; audit mode: none", () => {
    const web = { http: 40080, https: 40443 };
    const r = renderRuleset({ ...base, policy: 'block', agent: { ...base.agent, web } });
    expect(chain(r, 'agent_dns')).toContain(
      'meta skuid 61000-61183 tcp dport { 80, 443 } oif != "lo" goto agent_web',
    );
    // allowed-ips and addresses never answered to the agent are not gated (the filter decides).
    expect(chain(r, 'agent_web')).toEqual([
      'ip daddr @static4 return',
      'ip6 daddr @static6 return',
      'ip daddr != @agent4 return',
      'ip6 daddr != @agent6 return',
      'tcp dport 80 redirect to :40080',
      'tcp dport 443 redirect to :40443',
    ]);
    expect(chain(r, 'agent_web_origin').slice(1)).toEqual([
      'meta skuid 61000-61183 ct state new tcp dport { 40080, 40443 } ct status dnat meta nfproto ipv4 update @weborig4 { tcp sport : ct original ip daddr } update @websrc4 { tcp sport : ip saddr }',
      'meta skuid 61000-61183 ct state new tcp dport { 40080, 40443 } ct status dnat meta nfproto ipv6 update @weborig6 { tcp sport : ct original ip6 daddr } update @websrc6 { tcp sport : ip6 saddr }',
    ]);
    expect(chain(r, 'agent_decide')).toContain(
      'ip daddr 127.0.0.1 tcp dport { 40080, 40443 } ct status dnat accept',
    );
    // QUIC on the gated ports is refused (but to allowed-ips), before the agent's sets accept it.
    const decide = chain(r, 'agent_decide');
    expect(
      decide.indexOf(
        'meta l4proto { udp, udplite } th dport { 80, 443 } ip daddr != @static4 goto agent_refuse',
      ),
    ).toBeLessThan(decide.indexOf('ip daddr @agent4 accept'));
    expect(decide).toContain(
      'meta l4proto { udp, udplite } th dport { 80, 443 } ip6 daddr != @static6 goto agent_refuse',
    );
    // The gate's own connections: the proxy's uid, to the agent's answered addresses only.
    expect(chain(r, 'output')).toContain('meta skuid 997 tcp dport { 80, 443 } ip daddr @agent4 accept');
    expect(chain(r, 'output')).toContain('meta skuid 997 tcp dport { 80, 443 } ip6 daddr @agent6 accept');
    const audit = renderRuleset({ ...base, policy: 'audit', agent: { ...base.agent, web } });
    for (const gone of ['agent_web', 'weborig4', '40080']) expect(audit).not.toContain(gone);
    expect(renderRuleset({ ...base, policy: 'block' })).not.toContain('agent_web');
  });

  test('the per-uid drops are parsed, most first', () => {
    const text = `table inet cordon {\n set dnsuiddrops {\n typeof meta skuid\n counter\n elements = { 1001 counter packets 12 bytes 700, 61000 counter packets 250000 bytes 9000000 }`;
    expect(parseUidDrops(text)).toEqual([
      { uid: 61000, dropped: 250000 },
      { uid: 1001, dropped: 12 },
    ]);
    expect(parseUidDrops('table inet cordon {\n set dnsuiddrops {\n }')).toEqual([]);
  });

  test('blocked set listing is parsed with counters', () => {
    const text = `table inet cordon {\n set blocked6 {\n elements = { 2001:db8:2::30 . tcp . 80 counter packets 2 bytes 160 expires 23h59m,\n 198.51.100.1 . udp . 5353 counter packets 3 bytes 87 expires 5h, 203.0.113.9 . icmp . 0 counter packets 1 bytes 84 expires 1h }`;
    expect(parseBlocked(text)).toEqual([
      { address: '2001:db8:2::30', protocol: 'tcp', port: 80, packets: 2 },
      { address: '198.51.100.1', protocol: 'udp', port: 5353, packets: 3 },
      { address: '203.0.113.9', protocol: 'icmp', port: 0, packets: 1 },
    ]);
  });

  test('a TCP or UDP packet to a destination not yet recorded is traced before it is recorded (at most 200 a second), in both refuse chains', () => {
    for (const policy of ['block', 'audit'] as const) {
      const r = renderRuleset({ ...base, policy });
      for (const [name, prefix] of [
        ['refuse', ''],
        ['agent_refuse', 'agent'],
      ]) {
        const rules = chain(r, name);
        const trace4 = rules.indexOf(
          `meta nfproto ipv4 meta l4proto { tcp, udp } ip daddr . meta l4proto . th dport != @${prefix}blocked4 limit rate ${TRACES_PER_SECOND}/second meta nftrace set 1`,
        );
        const trace6 = rules.indexOf(
          `meta nfproto ipv6 meta l4proto { tcp, udp } ip6 daddr . meta l4proto . th dport != @${prefix}blocked6 limit rate ${TRACES_PER_SECOND}/second meta nftrace set 1`,
        );
        // First, every packet the chain sees is counted (what a full set did not record).
        expect(rules[0]).toBe(`counter name ${prefix}refused`);
        expect(trace4).toBe(1);
        expect(trace6).toBe(2);
        expect(rules.findIndex((l) => l.includes(`update @${prefix}blocked4`))).toBe(3);
      }
    }
  });

  test("a trace packet line from Cordon's refuse chains gives the destination as the sets key it", () => {
    const v4 =
      'trace id 69b8a205 inet cordon refuse packet: oif "eth0" ip saddr 10.9.9.1 ip daddr 10.9.9.9 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 31983 ip protocol udp ip length 30 udp sport 57736 udp dport 5353 udp length 10 @th,64,16 0x780a ';
    const v6 =
      'trace id 79cab58f inet cordon agent_refuse packet: oif "eth0" ip6 saddr fd00::1 ip6 daddr fd00::9 ip6 dscp cs0 ip6 ecn not-ect ip6 hoplimit 64 ip6 flowlabel 114340 ip6 nexthdr tcp ip6 length 40 tcp sport 40370 tcp dport 443 tcp flags == syn tcp window 65476 ';
    expect(parseTracedDest(v4)).toEqual({ address: '10.9.9.9', protocol: 'udp', port: 5353 });
    expect(parseTracedDest(v6)).toEqual({ address: 'fd00::9', protocol: 'tcp', port: 443 });
    // Rule lines of the same trace, another table's trace, a chain that is not a refuse chain: nothing.
    expect(
      parseTracedDest(
        'trace id 69b8a205 inet cordon refuse rule meta l4proto { tcp, udp } update @blocked4 { ip daddr . meta l4proto . th dport } (verdict continue)',
      ),
    ).toBeUndefined();
    expect(parseTracedDest(v4.replace('inet cordon', 'inet other'))).toBeUndefined();
    expect(parseTracedDest(v4.replace('cordon refuse', 'cordon decide'))).toBeUndefined();
  });
});

describe('applyRuleset', () => {
  test('a missing nft binary says how to install it', () => {
    const dir = tempDir('cordon-fw-');
    try {
      expect(() =>
        applyRuleset('table inet cordon {}\n', join(dir, 'r.nft'), join(dir, 'no-such-nft')),
      ).toThrow(/nft command is not installed.*apt-get install -y nftables/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
