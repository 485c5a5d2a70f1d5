import { describe, expect, test } from '@jest/globals';
import { CordonError } from '../../../src/platform/errors.js';
import { parseEgressInputs } from '../../../src/actions/egress/inputs.js';
import {
  DomainMatcher,
  GITHUB_HOSTED_PRESET,
  parseCidr,
  parseDomain,
  parseDomains,
  suggestAllowlist,
} from '../../../src/fence/policy.js';

function failure(fn: () => unknown): CordonError {
  try {
    fn();
  } catch (e) {
    if (e instanceof CordonError) return e;
    throw e;
  }
  throw new Error('expected a CordonError');
}

describe('allowed-domains', () => {
  test('exact names and wildcards, case-insensitive, trailing dot ignored', () => {
    expect(parseDomains('Example.COM.\n*.a.test  b.test # comment\n\n*.A.test')).toEqual([
      { name: 'example.com', wildcard: false },
      { name: 'a.test', wildcard: true },
      { name: 'b.test', wildcard: false },
    ]);
  });

  test.each([
    ['https://example.com', 'not a URL'],
    ['example.com:443', 'not a URL, a port'],
    ['example.com/path', 'not a URL'],
    ['*', 'bare `*`'],
    ['*.com', 'whole top-level domain'],
    ['a*.example.com', 'whole first label'],
    ['*.*.example.com', 'whole first label'],
    ['foo.*.com', 'whole first label'],
    ['-bad.example.com', 'not a DNS label'],
    ['a..b', 'not a DNS label'],
    ['192.0.2.1', 'allowed-ips'],
    ['user@example.com', 'not a URL'],
  ])('%s is refused, naming the entry', (entry, why) => {
    const e = failure(() => parseDomains(`ok.test\n${entry}`));
    expect(e.input).toBe('allowed-domains');
    expect(e.what).toContain(`"${entry}"`);
    expect(e.message).toContain(why);
  });

  test('the matcher: a wildcard matches any depth below, never the apex or look-alikes', () => {
    const m = new DomainMatcher(parseDomains('*.a.test exact.b.test'));
    expect(m.matches('x.a.test')).toBe(true);
    expect(m.matches('y.x.a.test')).toBe(true);
    expect(m.matches('a.test')).toBe(false);
    expect(m.matches('evila.test')).toBe(false);
    expect(m.matches('a.test.evil.test')).toBe(false);
    expect(m.matches('exact.b.test')).toBe(true);
    expect(m.matches('x.exact.b.test')).toBe(false);
    expect(m.matches('b.test')).toBe(false);
  });

  test('every preset entry parses and says why it is there', () => {
    for (const e of GITHUB_HOSTED_PRESET) {
      expect(() => parseDomain(e.entry)).not.toThrow();
      expect(e.why.length).toBeGreaterThan(10);
    }
  });
});

describe('allowed-ips', () => {
  test('addresses and CIDRs, IPv6 canonicalised', () => {
    expect(parseCidr('192.0.2.7')).toEqual({ family: 4, address: '192.0.2.7', prefix: 32 });
    expect(parseCidr('198.51.100.0/24')).toEqual({ family: 4, address: '198.51.100.0', prefix: 24 });
    expect(parseCidr('2001:DB8:0:0::/48')).toEqual({ family: 6, address: '2001:db8::', prefix: 48 });
    expect(parseCidr('::ffff:192.0.2.1')).toEqual({ family: 6, address: '::ffff:c000:201', prefix: 128 });
  });

  test.each([
    ['0.0.0.0/0', '/0'],
    ['::/0', '/0'],
    ['192.0.2.1/33', 'prefix must be 1..32'],
    ['2001:db8::/129', 'prefix must be 1..128'],
    ['192.0.2.1/24', 'host bits'],
    ['example.com', 'IPv4 or IPv6'],
    ['192.0.2.1/24/3', 'IPv4 or IPv6'],
    ['300.1.1.1', 'IPv4 or IPv6'],
    ['192.0.2.0/x', 'prefix'],
  ])('%s is refused', (entry, why) => {
    const e = failure(() => parseCidr(entry));
    expect(e.input).toBe('allowed-ips');
    expect(e.message).toContain(why);
  });
});

describe('inputs', () => {
  const env = (inputs: Record<string, string>): Record<string, string> =>
    Object.fromEntries(
      Object.entries(inputs).map(([k, v]) => [`INPUT_${k.replace(/ /g, '_').toUpperCase()}`, v]),
    );

  test('defaults', () => {
    const s = parseEgressInputs({});
    expect(s).toMatchObject({
      policy: 'block',
      preset: 'github-hosted',
      minTtl: 60,
      disableSudo: false,
      disableDocker: false,
      failOnBlocked: false,
    });
    expect(s.presetDomains.length).toBe(GITHUB_HOSTED_PRESET.length);
  });

  test.each([
    ['egress-policy', 'deny', 'expected one of block, audit'],
    ['preset', 'ubuntu', 'expected one of github-hosted, none'],
    ['disable-sudo', 'maybe', 'expected true or false'],
    ['disable-docker', 'y', 'expected true or false'],
    ['fail-on-blocked', '2', 'expected true or false'],
    ['min-ttl', '0', 'within 1..86400'],
    ['min-ttl', 'ten', 'whole number'],
    ['dns-upstream', 'dns.google', 'one IPv4 or IPv6 address'],
    ['dns-upstream', '192.0.2.1 192.0.2.2', 'one IPv4 or IPv6 address'],
    ['allowed-ips', '0.0.0.0/0', '/0'],
    ['allowed-domains', 'http://x.test', 'not a URL'],
  ])('%s=%s fails naming the input', (name, value, why) => {
    const e = failure(() => parseEgressInputs(env({ [name]: value })));
    expect(e.input).toBe(name);
    expect(e.message).toContain(why);
  });
});

describe('invisible characters in allowed-domains and allowed-ips', () => {
  test('U+00A0 or U+FEFF between two names is an error, not two entries', () => {
    for (const [ch, cp] of [
      ['\u00A0', 'U+00A0'],
      ['\uFEFF', 'U+FEFF'],
      ['\u2009', 'U+2009'],
    ]) {
      const e = failure(() =>
        parseEgressInputs({ 'INPUT_ALLOWED-DOMAINS': `ok.test\napi.example.com${ch}evil.test\n` }),
      );
      expect(e.input).toBe('allowed-domains');
      expect(e.message).toContain(`egress: allowed-domains: line 2 has the character ${cp} at column 16`);
      expect(e.message).toContain(`("api.example.com<${cp}>evil.test")`);
      expect(e.message).toContain('xn--');
    }
  });

  test('an invisible character at the end of the input is refused, not trimmed away', () => {
    const e = failure(() => parseEgressInputs({ 'INPUT_ALLOWED-DOMAINS': 'a.test\uFEFF' }));
    expect(e.message).toContain('line 1 has the character U+FEFF at column 7');
  });

  test('allowed-ips: a U+FEFF between two networks is an error', () => {
    const e = failure(() => parseEgressInputs({ 'INPUT_ALLOWED-IPS': '192.0.2.1\uFEFF198.51.100.0/24' }));
    expect(e.input).toBe('allowed-ips');
    expect(e.message).toContain('egress: allowed-ips: line 1 has the character U+FEFF at column 10');
  });

  test('comments may hold any text; spaces, tabs, commas and CRLF still separate', () => {
    expect(parseDomains('a.test\t b.test,c.test # für die Bücher\r\nd.test\r\n')).toEqual(
      ['a.test', 'b.test', 'c.test', 'd.test'].map((name) => ({ name, wildcard: false })),
    );
  });
});

describe('audit suggestion', () => {
  test('names used, three or more under one parent folded into a wildcard', () => {
    expect(
      suggestAllowlist([
        'a.x.test',
        'b.x.test',
        'c.x.test',
        'api.example.com',
        'API.example.com.',
        'one.y.test',
      ]),
    ).toEqual(['*.x.test', 'api.example.com', 'one.y.test']);
  });

  test('hostile: a name that is no domain name (markdown, a line break, a wildcard of its own) is never suggested', () => {
    // Audit mode: a name under a listed wildcard is allowed whatever its labels hold (the
    // proxy reads them as bytes), and egress's post pastes the suggestion into a yaml block
    // of the job summary; report's suggested-allowed-domains output is one name a line.
    const suffix = 'blob.core.windows.net';
    const names = [
      `x\n\`\`\`\n> [!caution]\n> all clear\n\`\`\`yaml\ny.${suffix}`,
      `x\n*.s3.amazonaws.com\ny.${suffix}`,
      `x\r\n<img src=//evil.test>.${suffix}`,
      `x y.${suffix}`,
      `-x.${suffix}`,
      `ok.${suffix}`,
    ];
    const out = suggestAllowlist(names);
    expect(out).toEqual([`ok.${suffix}`]);
    // Three of them under one parent fold into a wildcard only when they are names.
    expect(suggestAllowlist(['a.p.test', 'b.p.test', 'c\n.p.test'])).toEqual(['a.p.test', 'b.p.test']);
  });
});
