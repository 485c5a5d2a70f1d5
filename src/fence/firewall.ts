/**
 * The nftables table `inet cordon`, generated whole and applied in one `nft -f`
 * transaction: it loads completely or not at all, so a failure leaves the host as it was.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { CordonError } from '../platform/errors.js';
import { cidrText, type Cidr } from './policy.js';
import { nftError, TABLE } from './nftshell.js';

export interface FenceRules {
  policy: 'block' | 'audit';
  staticAllowed: Cidr[];
  /** Uid the proxy's upstream sockets belong to. */
  dnsUid: number;
  /** Upstream resolver addresses the proxy (and only it) may query on port 53. */
  upstreams: string[];
  /** How long a blocked destination stays in the record. */
  recordSeconds?: number;
  /**
   * The agent's uids (`meta skuid` range) and the loopback port of the agent's own DNS
   * proxy: their traffic gets only the agent's sets and the static networks, never the
   * runner's (the preset), and their DNS, to whatever address, goes to that proxy.
   */
  agent: { uidMin: number; uidMax: number; dnsPort: number; web?: WebGatePorts };
}

/** The web gate's loopback ports (webgate.ts): the agent's port 80 and port 443 connections go there. */
export interface WebGatePorts {
  http: number;
  https: number;
}

const WEB_PORTS = '{ 80, 443 }';
/**
 * How long a redirected connection's original destination stays in `weborig4/6` for the
 * gate to read (it reads it when it accepts the connection). Shorter than conntrack keeps
 * a closed connection (10 s at least), so a later connection from the same source port,
 * which NAT gives another port while that entry lives, never finds this one's element.
 */
const WEB_ORIGIN_SECONDS = 5;

const DNS_PORTS = '{ 53, 853 }';
/**
 * Every transport whose ports `th dport` reads (they sit where TCP's and UDP's do). DNS and
 * DoT are refused by port on all of them: a rule naming TCP and UDP alone let the agent send
 * UDP-Lite to port 53 or 853 of an allowed address (test/e2e/egress-transports.test.ts).
 */
const PORTED = '{ tcp, udp, udplite, sctp, dccp }';
/** The datagram transports QUIC could ride (the agent's are refused on the web ports). */
const DATAGRAM = '{ udp, udplite }';
const ND_TYPES =
  '{ nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect, mld-listener-query, mld-listener-report, mld2-listener-report }';

/** The ruleset text; replaces any earlier `inet cordon` in the same transaction. */
/**
 * UDP queries a second one client socket may send to the proxies (a burst of as many
 * more); past it the kernel drops them. A resolver sends a few per lookup; dnsperf's
 * sockets in the bench send up to a few thousand a second each.
 */
export const DNS_FLOOD_PER_SOURCE = 5000;
const floodLimit = `limit rate over ${DNS_FLOOD_PER_SOURCE}/second burst ${DNS_FLOOD_PER_SOURCE} packets`;
/**
 * DNS queries a second (UDP datagrams and new TCP connections) one local user may send to
 * port 53 or the proxies, whatever its sockets (a burst of as many more); past it the
 * kernel drops them at output. The per-socket limit alone lets 64 sockets send 64 times
 * its rate; the daemon drains 16-42k refusals a second from many sockets on a loaded
 * runner (bench/RESULTS-egress.md): the agent's user and the runner's together take at
 * most a quarter of that.
 */
export const DNS_FLOOD_PER_UID = 2000;
const uidLimit = `limit rate over ${DNS_FLOOD_PER_UID}/second burst ${DNS_FLOOD_PER_UID} packets`;
/** The set whose elements count, per uid, the DNS queries the kernel dropped (report). */
export const DNS_UID_DROPS_SET = 'dnsuiddrops';
/**
 * Destinations each blocked set records (address, protocol, port). Past it the kernel
 * records no new one, the packet is refused all the same, and its count still goes to the
 * chain's `<prefix>refused` counter: the report tells recorded from unrecorded by the sum.
 * 8192 keeps a full set's listing near 0.2 s (65536 took 1.6 s of the shell each, and a
 * report of four full sets outran the 5 s its asker waits, which read as a stopped daemon).
 */
export const BLOCKED_SET_SIZE = 8192;
/** The counters of every packet the two refuse chains saw (report: what the sets did not record). */
export const REFUSED_COUNTERS = { runner: 'refused', agent: 'agentrefused' } as const;
/** New blocked destinations traced for the root helper a second (the rest are not named). */
export const TRACES_PER_SECOND = 200;
/**
 * The bit of a connection's `ct mark` that says an agent's socket opened it (set on the
 * connection's first packet, the other bits kept). The kernel keeps a UDP flow or an ICMP
 * echo by its addresses and ports (echo identifier) alone, for 30 s and more after its last
 * packet: an agent socket bound to the local port of a flow the runner opened to an address
 * of the runner's list (the preset) would find it established. Without this bit, the agent's
 * packet is judged by the agent's chain instead of let through as established.
 */
export const AGENT_CT_MARK = 0x10000000;
/**
 * The bit of a connection's `ct mark` that says a socket outside the agents' range answered
 * it: set by its first packet in the reply direction whose socket owner is known and not an
 * agent's, or by an agent's that its chain lets out (the host is on the agent's list). `meta skuid` knows no owner for a SYN-ACK sent as a SYN cookie (a listener's
 * queue is full) nor for what a socket sends after it was closed (its unsent data, once the
 * peer's window opens): on a connection a host outside opened to an agent's port, these are
 * the agent's, and without this bit they would leave as established traffic (block mode:
 * such a TCP packet, a SYN-ACK or a reset aside, is dropped).
 */
export const ANSWERED_CT_MARK = 0x20000000;

export function renderRuleset(r: FenceRules): string {
  const record = r.recordSeconds ?? 86400;
  const s4 = r.staticAllowed.filter((c) => c.family === 4).map(cidrText);
  const s6 = r.staticAllowed.filter((c) => c.family === 6).map(cidrText);
  const up4 = r.upstreams.filter((a) => isIP(a) === 4);
  const up6 = r.upstreams.filter((a) => isIP(a) === 6);
  const policy = r.policy === 'block' ? 'drop' : 'accept';
  const elements = (list: string[]): string => (list.length ? ` elements = { ${list.join(', ')} };` : '');
  const agentUids = `${r.agent.uidMin}-${r.agent.uidMax}`;
  const mark = (bit: number): string => `0x${bit.toString(16).padStart(8, '0')}`;
  const agentMark = mark(AGENT_CT_MARK);
  const answeredMark = mark(ANSWERED_CT_MARK);
  // The agent's web connections are checked by name in block mode (in audit mode every
  // destination is let through anyway and recorded by address).
  const web = r.policy === 'block' ? r.agent.web : undefined;
  const gate = web && `{ ${web.http}, ${web.https} }`;
  const blockedSet = (name: string, type: string): string =>
    `  set ${name} { type ${type} . inet_proto . inet_service; flags dynamic,timeout; timeout ${record}s; size ${BLOCKED_SET_SIZE}; counter; }`;
  // Records the destination in `<prefix>blocked4/6`, then refuses it (block) or lets it go (audit).
  // A TCP or UDP destination not yet recorded is traced first: the root helper's `nft
  // monitor trace` learns of it at once (a set filled by the kernel sends no events) and
  // looks for the socket behind it while it is still open (helper.ts). At most
  // TRACES_PER_SECOND a second: a flood of new destinations cannot keep root's monitor and
  // the helper busy (a destination past it is still recorded and refused, only not named).
  const refuse = (prefix: string): string[] => [
    `    counter name ${prefix}refused`,
    `    meta nfproto ipv4 meta l4proto { tcp, udp } ip daddr . meta l4proto . th dport != @${prefix}blocked4 limit rate ${TRACES_PER_SECOND}/second meta nftrace set 1`,
    `    meta nfproto ipv6 meta l4proto { tcp, udp } ip6 daddr . meta l4proto . th dport != @${prefix}blocked6 limit rate ${TRACES_PER_SECOND}/second meta nftrace set 1`,
    `    meta nfproto ipv4 meta l4proto { tcp, udp, sctp } update @${prefix}blocked4 { ip daddr . meta l4proto . th dport }`,
    `    meta nfproto ipv4 meta l4proto != { tcp, udp, sctp } update @${prefix}blocked4 { ip daddr . meta l4proto . 0 }`,
    `    meta nfproto ipv6 meta l4proto { tcp, udp, sctp } update @${prefix}blocked6 { ip6 daddr . meta l4proto . th dport }`,
    `    meta nfproto ipv6 meta l4proto != { tcp, udp, sctp } update @${prefix}blocked6 { ip6 daddr . meta l4proto . 0 }`,
    ...(r.policy === 'audit'
      ? [`    accept`]
      : [
          `    meta l4proto tcp reject with tcp reset`,
          `    meta nfproto ipv4 reject with icmp type admin-prohibited`,
          `    meta nfproto ipv6 reject with icmpv6 type admin-prohibited`,
          `    drop`,
        ]),
  ];
  const lines = [
    `table ${TABLE} {}`,
    `delete table ${TABLE}`,
    `table ${TABLE} {`,
    `  set allow4 { type ipv4_addr; flags timeout; }`,
    `  set allow6 { type ipv6_addr; flags timeout; }`,
    `  set static4 { type ipv4_addr; flags interval;${elements(s4)} }`,
    `  set static6 { type ipv6_addr; flags interval;${elements(s6)} }`,
    // Sentinel elements that mark the end of each request to the long-lived nft child.
    `  set ack { type inet_service; flags timeout; }`,
    blockedSet('blocked4', 'ipv4_addr'),
    blockedSet('blocked6', 'ipv6_addr'),
    // The agent's own: addresses of names the agent asked for, and what it was refused.
    // A source socket's DNS rate, kept by the kernel (see dns_input).
    `  set dnsflood4 { type ipv4_addr . inet_service; flags dynamic, timeout; timeout 10s; size 65536; }`,
    `  set dnsflood6 { type ipv6_addr . inet_service; flags dynamic, timeout; timeout 10s; size 65536; }`,
    `  counter dnsflood { }`,
    `  counter ${REFUSED_COUNTERS.runner} { }`,
    `  counter ${REFUSED_COUNTERS.agent} { }`,
    // A local user's DNS rate, whatever its sockets (see dns_uid), and what it lost.
    `  set dnsuid { typeof meta skuid; flags dynamic, timeout; timeout 10s; size 65536; }`,
    `  set ${DNS_UID_DROPS_SET} { typeof meta skuid; flags dynamic; size 65536; counter; }`,
    `  set agent4 { type ipv4_addr; flags timeout; }`,
    `  set agent6 { type ipv6_addr; flags timeout; }`,
    blockedSet('agentblocked4', 'ipv4_addr'),
    blockedSet('agentblocked6', 'ipv6_addr'),
    // Where each agent web connection redirected to the gate was going (weborig) and from
    // which address (websrc), by the source port the gate sees (webgate.ts reads both with
    // `get element`). Keyed by the port alone: nft 1.0.6 corrupts or aborts on a map keyed
    // by port and IPv6 address.
    ...(web === undefined
      ? []
      : (['4', '6'] as const).flatMap((f) =>
          ['weborig', 'websrc'].map(
            (m) =>
              `  map ${m}${f} { type inet_service : ipv${f}_addr; flags dynamic,timeout; timeout ${WEB_ORIGIN_SECONDS}s; size 65536; }`,
          ),
        )),
    `  chain output {`,
    `    type filter hook output priority filter; policy ${policy};`,
    // Before loopback and established traffic are let through: the proxies are on loopback,
    // and a UDP socket's later queries are `established`. Root is trusted with the table
    // itself; the proxy's user asks the upstream for everyone.
    `    meta l4proto { tcp, udp } th dport { 53, ${r.agent.dnsPort} } meta skuid != { 0, ${r.dnsUid} } jump dns_uid`,
    // Every connection an agent's socket opens (the kernel's entry is made for this packet,
    // not yet confirmed) is marked as the agent's: loopback ones too, before they are let through.
    `    meta skuid ${agentUids} ct status & confirmed == 0 ct mark set ct mark | ${agentMark}`,
    // An established flow the agent did not open (the runner's UDP flow or ICMP echo, whose
    // local port or echo identifier the agent bound after the runner's socket closed) is not
    // the agent's to use: its packets are judged by the agent's chain, as a new one's are.
    `    meta skuid ${agentUids} ct direction original ct state established,related ct mark & ${agentMark} == 0 goto agent_decide`,
    `    oif "lo" accept`,
    // A connection a host outside opened to the agent (a port it listens on) is
    // established too, and its replies would carry data to an address off the agent's list.
    `    meta skuid ${agentUids} ct direction reply goto agent_decide`,
    // The same connection's packets with no socket owner (a SYN cookie's SYN-ACK, a closed
    // socket's unsent data) carry the agent's data too: in block mode, a TCP packet in the
    // reply direction is let out without an owner only once a socket outside the agents'
    // range has answered on that connection (a SYN-ACK or a reset, which carry nothing, aside).
    ...(r.policy === 'block'
      ? [
          `    ct direction reply ct mark & ${answeredMark} == 0 meta skuid != ${agentUids} ct mark set ct mark | ${answeredMark}`,
          `    ct direction reply ct mark & ${answeredMark} == 0 meta l4proto tcp tcp flags & (syn | rst) == 0 drop`,
        ]
      : []),
    `    ct state established,related accept`,
    // The proxy's own upstream queries, told apart by the socket's owner and destination.
    ...(up4.length
      ? [
          `    meta skuid ${r.dnsUid} meta l4proto { tcp, udp } th dport 53 ip daddr { ${up4.join(', ')} } accept`,
        ]
      : []),
    ...(up6.length
      ? [
          `    meta skuid ${r.dnsUid} meta l4proto { tcp, udp } th dport 53 ip6 daddr { ${up6.join(', ')} } accept`,
        ]
      : []),
    // The web gate's own connections, for the agent, to addresses answered to the agent.
    ...(web === undefined
      ? []
      : [
          `    meta skuid ${r.dnsUid} tcp dport ${WEB_PORTS} ip daddr @agent4 accept`,
          `    meta skuid ${r.dnsUid} tcp dport ${WEB_PORTS} ip6 daddr @agent6 accept`,
        ]),
    // The agent never falls through to the runner's sets.
    `    meta skuid ${agentUids} goto agent_decide`,
    `    jump decide`,
    `  }`,
    // One user past DNS_FLOOD_PER_UID queries a second loses the rest here, before they
    // reach a proxy's socket or a forwarder: many sockets each under the per-socket limit
    // must not add up to more than the proxy drains. Every UDP datagram counts (a socket's
    // later queries are `established`), and of TCP the connections, not their segments.
    `  chain dns_uid {`,
    `    meta l4proto tcp ct state != new return`,
    `    update @dnsuid { meta skuid ${uidLimit} } update @${DNS_UID_DROPS_SET} { meta skuid } drop`,
    `  }`,
    `  chain forward {`,
    `    type filter hook forward priority filter; policy ${policy};`,
    `    ct state established,related accept`,
    `    jump decide`,
    `  }`,
    `  chain decide {`,
    `    icmpv6 type ${ND_TYPES} accept`,
    // DNS and DoT go through the proxy or nowhere, whatever the address.
    `    meta l4proto ${PORTED} th dport ${DNS_PORTS} goto refuse`,
    `    ip daddr @allow4 accept`,
    `    ip daddr @static4 accept`,
    `    ip6 daddr @allow6 accept`,
    `    ip6 daddr @static6 accept`,
    `    goto refuse`,
    `  }`,
    `  chain refuse {`,
    ...refuse(''),
    `  }`,
    `  chain agent_decide {`,
    // The agent's DNS, redirected to its proxy (the filter still sees the original oif).
    `    ip daddr 127.0.0.1 meta l4proto { tcp, udp } th dport ${r.agent.dnsPort} accept`,
    `    ip6 daddr ::1 meta l4proto { tcp, udp } th dport ${r.agent.dnsPort} accept`,
    // Its web connections, redirected to the gate (agent_web).
    ...(web === undefined
      ? []
      : [
          `    ip daddr 127.0.0.1 tcp dport ${gate} ct status dnat accept`,
          `    ip6 daddr ::1 tcp dport ${gate} ct status dnat accept`,
        ]),
    `    icmpv6 type ${ND_TYPES} accept`,
    `    meta l4proto ${PORTED} th dport ${DNS_PORTS} goto agent_refuse`,
    // QUIC (HTTP/3) names its site inside encrypted packets the gate cannot read: refused
    // on the gated ports, so clients fall back to TCP, where the gate reads the name.
    ...(web === undefined
      ? []
      : [
          `    meta l4proto ${DATAGRAM} th dport ${WEB_PORTS} ip daddr != @static4 goto agent_refuse`,
          `    meta l4proto ${DATAGRAM} th dport ${WEB_PORTS} ip6 daddr != @static6 goto agent_refuse`,
        ]),
    // The agent answering a host on its list (a connection that host opened) answers that
    // connection: what the kernel sends on it without an owner after this (a closed socket's
    // unsent data, a TIME_WAIT ACK) goes to that same host and is let out (T61).
    ...(r.policy === 'block'
      ? [
          `    ct direction reply ip daddr @agent4 ct mark set ct mark | ${answeredMark}`,
          `    ct direction reply ip daddr @static4 ct mark set ct mark | ${answeredMark}`,
          `    ct direction reply ip6 daddr @agent6 ct mark set ct mark | ${answeredMark}`,
          `    ct direction reply ip6 daddr @static6 ct mark set ct mark | ${answeredMark}`,
        ]
      : []),
    `    ip daddr @agent4 accept`,
    `    ip daddr @static4 accept`,
    `    ip6 daddr @agent6 accept`,
    `    ip6 daddr @static6 accept`,
    `    goto agent_refuse`,
    `  }`,
    `  chain agent_refuse {`,
    ...refuse('agent'),
    `  }`,
    // The agent's DNS, to whatever address (the runner's proxy on loopback too), answered
    // by the agent's proxy: before the filter, so the filter sees the new destination.
    `  chain agent_dns {`,
    `    type nat hook output priority -100; policy accept;`,
    `    meta skuid ${agentUids} meta l4proto { tcp, udp } th dport 53 redirect to :${r.agent.dnsPort}`,
    ...(web === undefined
      ? []
      : [`    meta skuid ${agentUids} tcp dport ${WEB_PORTS} oif != "lo" goto agent_web`]),
    `  }`,
    ...(web === undefined
      ? []
      : [
          // The agent's web connections, to the gate: it lets one through only to an
          // address its proxy answered for the name the connection asks for. Addresses
          // allowed as such (allowed-ips) are not asked for a name.
          `  chain agent_web {`,
          `    ip daddr @static4 return`,
          `    ip6 daddr @static6 return`,
          // An address never answered to the agent is refused by the filter, at once, as before.
          `    ip daddr != @agent4 return`,
          `    ip6 daddr != @agent6 return`,
          `    tcp dport 80 redirect to :${web.http}`,
          `    tcp dport 443 redirect to :${web.https}`,
          `  }`,
          // After NAT, which may have given the connection another source port (two agent
          // sockets on one port to two destinations): the gate sees that one.
          `  chain agent_web_origin {`,
          `    type filter hook postrouting priority 200; policy accept;`,
          `    meta skuid ${agentUids} ct state new tcp dport ${gate} ct status dnat meta nfproto ipv4 update @weborig4 { tcp sport : ct original ip daddr } update @websrc4 { tcp sport : ip saddr }`,
          `    meta skuid ${agentUids} ct state new tcp dport ${gate} ct status dnat meta nfproto ipv6 update @weborig6 { tcp sport : ct original ip6 daddr } update @websrc6 { tcp sport : ip6 saddr }`,
          `  }`,
        ]),
    // Containers' DNS, to whatever address, answered by the proxy on the bridge's own address.
    `  chain dns_redirect {`,
    `    type nat hook prerouting priority dstnat; policy accept;`,
    `    meta iifkind "bridge" meta l4proto { tcp, udp } th dport 53 redirect to :53`,
    `  }`,
    // The proxy listens on every address for the redirect; nobody outside may use it.
    `  chain dns_input {`,
    `    type filter hook input priority filter; policy accept;`,
    // One client socket past DNS_FLOOD_PER_SOURCE queries a second loses the rest in the
    // kernel, before they reach the proxy's socket: a Node proxy drains fewer datagrams a
    // second than one local socket can send, and once its receive buffer is full every
    // client's queries are dropped alike (bench/RESULTS-egress.md). Other sockets keep
    // their own budget, so an allowed lookup is not lost behind a flood.
    `    udp dport { 53, ${r.agent.dnsPort} } update @dnsflood4 { ip saddr . udp sport ${floodLimit} } counter name dnsflood drop`,
    `    udp dport { 53, ${r.agent.dnsPort} } update @dnsflood6 { ip6 saddr . udp sport ${floodLimit} } counter name dnsflood drop`,
    `    iif "lo" accept`,
    `    meta l4proto { tcp, udp } th dport 53 ct status dnat accept`,
    `    meta l4proto { tcp, udp } th dport 53 ct state new drop`,
    `  }`,
    `}`,
  ];
  return lines.join('\n') + '\n';
}

export type Exec = (argv: string[], input?: string) => { code: number; stdout: string; stderr: string };

export const execSync: Exec = (argv, input) => {
  const r = spawnSync(argv[0], argv.slice(1), { input, encoding: 'utf8', timeout: 20000 });
  if (r.error) return { code: 127, stdout: '', stderr: r.error.message };
  return { code: r.status ?? 1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
};

/** Applies the ruleset atomically from `file`; throws with nft's message when the kernel refuses it. */
export function applyRuleset(text: string, file: string, nft = 'nft', exec: Exec = execSync): void {
  writeFileSync(file, text, { mode: 0o600 });
  const r = exec([nft, '-f', file]);
  if (r.code === 127) {
    throw new CordonError({
      what: 'egress: the nft command is not installed on this runner',
      why: r.stderr.trim() || `${nft} was not found`,
      fix: 'install it before this step: `sudo apt-get install -y nftables`',
    });
  }
  if (r.code !== 0)
    throw nftError('egress: the firewall ruleset did not load', new Error((r.stderr || r.stdout).trim()));
}

/** `list set` of DNS_UID_DROPS_SET: the DNS queries the kernel dropped, per uid, most first. */
export function parseUidDrops(text: string): { uid: number; dropped: number }[] {
  const out: { uid: number; dropped: number }[] = [];
  const re = /(\d+) counter packets (\d+)/g;
  for (let m = re.exec(text); m; m = re.exec(text)) out.push({ uid: Number(m[1]), dropped: Number(m[2]) });
  return out.sort((a, b) => b.dropped - a.dropped);
}

/** Removes the table; true when it was there. */
export function removeTable(nft = 'nft', exec: Exec = execSync): boolean {
  return exec([nft, 'delete', 'table', ...TABLE.split(' ')]).code === 0;
}
