/** The egress fence's events in the run ledger: what it was set up with, what it saw, tampering with it. */
export interface EgressStarted {
  policy: 'block' | 'audit';
  domains: string[];
  ips: string[];
  preset: string;
  disableSudo: boolean;
  disableDocker: boolean;
  /** The action's start to the fence enforced (the DNS warm-up after it not counted). */
  setupMs?: number;
  /** The daemon warming its DNS answer path, after the fence was enforced (docs/egress.md). */
  warmUpMs?: number;
  /** Resolver the proxy forwards allowed names to. */
  upstreams?: string[];
  /** The proxy also listens and filters on IPv6. */
  ipv6?: boolean;
  daemonPid?: number;
  /** Lines already in the ledger that the daemon's copy was seeded with. */
  ledgerCopySeeded?: number;
}

export interface EgressReport {
  policy: 'block' | 'audit';
  /** Names answered, with the addresses allowed and the count of queries. */
  allowed: { name: string; queries: number; addresses: string[] }[];
  /**
   * Names refused (block) or that would have been refused (audit), each with who asked:
   * `agent` (a uid of the agents' range, which never gets the preset) or `runner`
   * (anyone else); absent in a report from before identities.
   */
  blockedNames: {
    name: string;
    queries: number;
    process?: string;
    identity?: 'agent' | 'runner';
    /** The name carried this secret of run's and is shown as its length (run/dns-names.ts). */
    carriesSecret?: string;
  }[];
  /** Destinations refused in the kernel, each with who tried (as for blockedNames). */
  blockedDestinations: {
    address: string;
    protocol: string;
    port?: number;
    packets?: number;
    process?: string;
    identity?: 'agent' | 'runner';
  }[];
  /**
   * Recorded destinations past the ones listed (the daemon lists the 500 with the most
   * packets): how many and their packets; absent when none was left out.
   */
  blockedDestinationsLeftOut?: { destinations: number; packets: number };
  /** Packets refused to destinations the kernel's full record could not hold; absent when none. */
  blockedUnrecordedPackets?: number;
  /**
   * Rebinding attempts: names whose answers pointed inward (loopback, link-local, a cloud
   * metadata service, multicast, broadcast, the runner's own addresses, private ones under
   * `private-answers: refuse`), each with the addresses and their kinds; refused in block mode.
   */
  rebinding?: {
    name: string;
    answers: number;
    addresses: { address: string; kind: string }[];
    identity?: 'agent' | 'runner';
  }[];
  suggestedAllowlist?: string[];
  /** Answers dropped because they came from another address, carried another id or question. */
  forgedAnswers?: number;
  /** Changes to the table or the resolver seen while the job ran, or a dead daemon. */
  tamper?: string[];
  /** Names not itemised once the daemon's table of names was full. */
  namesDropped?: number;
  /**
   * Refused DNS queries: how many, the most in one second, those left unanswered (a
   * source over its budget) or dropped by the kernel (a client socket over its rate), the
   * top sources (process when found, else the socket's port), and whether that was a
   * flood (egress/report.ts REFUSED_FLOOD_PER_SECOND, or any dropped by the kernel).
   */
  refusals?: {
    total: number;
    peakPerSecond: number;
    unanswered: number;
    kernelDropped: number;
    /** Of those, the local users' past their own rate (firewall.ts), by uid, most first. */
    droppedByUid?: { uid: number; dropped: number }[];
    flood: boolean;
    topSources: {
      protocol: string;
      address: string;
      port: number;
      queries: number;
      peakPerSecond: number;
      process?: string;
      identity?: 'agent' | 'runner';
    }[];
  };
  /**
   * How the DNS proxy did: answers served from its cache, queries the upstream never
   * answered, malformed queries refused, answers refused (SERVFAIL) because the kernel's
   * sets could not be updated, and TCP clients closed to make room for new ones (more held
   * open at once than a proxy keeps; absent before it was reported).
   */
  dns?: {
    answeredFromCache: number;
    upstreamTimeouts: number;
    malformed: number;
    setFailures: number;
    tcpEvicted?: number;
  };
  /**
   * The agent's web gate in block mode: its port 80/443 connections let through because
   * the name they asked for was answered at that address, those reset (each destination is
   * in `blockedDestinations`), and those reset for want of room (docs/egress.md).
   */
  webGate?: { passed: number; refused: number; overCap: number };
  /**
   * Cgroups the daemon made for a non-root `run`, and how each ended: `removed` by run
   * after its command, or `orphaned` (run was gone first; the daemon killed the cgroup).
   */
  runCgroups?: { name: string; pid: number; end: 'removed' | 'orphaned'; alive: number }[];
}

/** What the egress daemon saw changed in its table, the resolver or /etc/hosts, and when. */
export interface EgressTampered {
  changes: { what: string; seen?: string }[];
}
