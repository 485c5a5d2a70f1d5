import { describe, expect, test } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyRuleset, renderRuleset } from '../../../src/fence/firewall.js';
import { parseBlocked } from '../../../src/fence/nftshell.js';
import { parseCidrs } from '../../../src/fence/policy.js';

describe('ruleset', () => {
  const base = {
    staticAllowed: parseCidrs('192.0.2.0/24 2001:db8::/32'),
    dnsUid: 997,
    upstreams: ['198.51.100.53', '2001:db8::53'],
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

  test('blocked set listing is parsed with counters', () => {
    const text = `table inet cordon {\n set blocked6 {\n elements = { 2001:db8:2::30 . tcp . 80 counter packets 2 bytes 160 expires 23h59m,\n 198.51.100.1 . udp . 5353 counter packets 3 bytes 87 expires 5h, 203.0.113.9 . icmp . 0 counter packets 1 bytes 84 expires 1h }`;
    expect(parseBlocked(text)).toEqual([
      { address: '2001:db8:2::30', protocol: 'tcp', port: 80, packets: 2 },
      { address: '198.51.100.1', protocol: 'udp', port: 5353, packets: 3 },
      { address: '203.0.113.9', protocol: 'icmp', port: 0, packets: 1 },
    ]);
  });
});

describe('applyRuleset', () => {
  test('a missing nft binary says how to install it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cordon-fw-'));
    try {
      expect(() =>
        applyRuleset('table inet cordon {}\n', join(dir, 'r.nft'), join(dir, 'no-such-nft')),
      ).toThrow(/nft command is not installed.*apt-get install -y nftables/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
