// Every metric replicached exports, in one table, on a private registry (never
// prom-client's global one, so two proxies in one process stay apart).
// Label values stay few: command names, result names, backend addresses, and
// the reason strings a backend failure is reported with. Every series whose
// labels are known in advance (each command's results, each backend's reasons
// and outcomes) is exported from the start at 0, not from its first event.
//
// With --workers, each metric's `aggregator` says how the primary combines the
// workers' values (src/cluster/metrics.ts): counters and histograms are summed,
// `backend_up` is the minimum (up only where every worker has it up),
// `resync_in_progress`, `resync_keys_pending` and `resync_last_complete_timestamp_seconds`
// the maximum, build info the first worker's. The reload and discovery
// metrics are the primary's own (it is the one that reloads and asks DNS).

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { VERSION } from '../version';
import { CounterCells, FastHistogram, type CounterCell, type HistogramSeries } from './fast';

// Client and backend latencies are mostly sub-millisecond on a LAN; the top
// buckets catch timeouts (300 ms by default) and slow clients.
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

// How long a PHP request waits for its session lock, and holds it: php-memcached polls
// every 150 ms by default, pecl-memcache from 5 ms doubling to 1 s; a request holds it
// for its whole run (seconds for a slow page, up to the lock's expiry when it dies).
const LOCK_WAIT_BUCKETS = [0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30];
const LOCK_HOLD_BUCKETS = [0.005, 0.025, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300];
/** The session.save_handler whose lock protocol a lock key follows (src/locks/patterns.ts). */
const LOCK_HANDLERS = ['memcached', 'memcache'] as const;

/** Why backend requests failed: a fixed set, so the label stays small. */
export const BACKEND_ERROR_REASONS = ['timeout', 'connect', 'auth', 'closed', 'desync', 'server_error', 'down', 'overload'] as const;
export type BackendErrorReason = (typeof BACKEND_ERROR_REASONS)[number];

const READ_RESULTS = ['hit', 'miss', 'unavailable'];
const STORE_RESULTS = ['stored', 'not_stored', 'exists', 'not_found', 'too_large', 'unavailable'];
const STORE_COMMANDS = ['set', 'add', 'replace', 'append', 'prepend', 'cas'];
/** Each client command and the results it can end with (src/protocol/types.ts): their series start at 0. */
const COMMAND_RESULTS: ReadonlyMap<string, readonly string[]> = new Map([
  ...['get', 'gets', 'gat', 'gats'].map((c): [string, string[]] => [c, READ_RESULTS]),
  ...STORE_COMMANDS.map((c): [string, string[]] => [c, STORE_RESULTS]),
  ['delete', ['deleted', 'not_found', 'exists', 'unavailable']],
  ['touch', ['touched', 'not_found', 'unavailable']],
  ...['incr', 'decr'].map((c): [string, string[]] => [c, ['ok', 'not_found', 'non_numeric', 'unavailable']]),
  ['flush_all', ['ok', 'unavailable']],
]);
const WRITE_COMMANDS = [...STORE_COMMANDS, 'delete', 'touch', 'incr', 'decr'];
/** Commands the router may fail over (reads and every write) or see replicas disagree on (writes). */
const FAILOVER_COMMANDS = ['get', 'gat', ...WRITE_COMMANDS];

export const CLIENT_PROTOCOLS = ['text', 'binary'] as const;
export type ClientProtocol = (typeof CLIENT_PROTOCOLS)[number];

/**
 * Why DNS gave no usable answer for backendsFrom (src/discovery/resolve.ts): no such name,
 * a server failure, no answer in time, refused, no records, fewer than `replicas`, or another
 * error (no server reachable, a malformed reply).
 */
export const DISCOVERY_FAILURE_REASONS = ['nxdomain', 'servfail', 'timeout', 'refused', 'empty', 'too_few', 'error'] as const;
export type DiscoveryFailureReason = (typeof DISCOVERY_FAILURE_REASONS)[number];

/** How a resync run ended: every key done, done with keys it could not list, or stopped. */
const TRUST_ROLES = ['out', 'refill', 'trusted'] as const;
export const RESYNC_OUTCOMES = ['complete', 'incomplete', 'aborted'] as const;

/** What the backend connections gauge reads at scrape time. */
export interface BackendConnections {
  readonly address: string;
  readonly openConnections: number;
}

/** What the resync_keys_pending gauge reads at scrape time, per backend being resynced, filled or shed. */
export interface ResyncBacklog {
  readonly backend: string;
  /** A resync, fill or shed to it is running. */
  readonly running: boolean;
  /** Keys the runs have listed and not yet copied or checked. */
  readonly pending: number;
  /** Copies (or checks) in flight. */
  readonly inFlight: number;
}

/** What one backend reports per request; cheap enough to call on every one. */
export interface BackendRecorder {
  /** A reply arrived this long after the request was sent. */
  replied(seconds: number): void;
  /** `count` requests failed for this reason. */
  failed(reason: BackendErrorReason, count: number): void;
  /** A request (or a connect) passed its deadline. */
  timedOut(): void;
}

export interface Metrics extends ReloadMetrics, DiscoveryMetrics {
  registry: Registry;

  // The per-request paths: plain numbers, given to prom-client at scrape time.
  /** A finished client command: requests_total and request_duration_seconds. */
  countRequest(command: string, result: string, seconds: number): void;
  /** Client requests of `command` so far that ended with `result`, or with any result (for `stats`). */
  requestCount(command: string, result?: string): number;
  bytesIn(n: number): void;
  bytesOut(n: number): void;
  /** The recorder for one backend address (backend request latency, errors, timeouts). */
  backendRecorder(address: string): BackendRecorder;
  /** Where requests_in_flight reads its value at scrape time. */
  setInFlightSource(read: () => number): void;
  /** Where backend_connections reads the backends at scrape time. */
  setBackendsSource(read: () => readonly BackendConnections[]): void;
  /** Where resync_in_progress and resync_keys_pending read the runs' progress at scrape time. */
  setResyncSource(read: () => readonly ResyncBacklog[]): void;
  /** Starts every series of this backend at 0 (backend_up at 1): call when it is opened. */
  addBackend(address: string): void;
  /** A client request the parser refused: answered with an error, or the connection closed. */
  countProtocolError(protocol: ClientProtocol, closed: boolean): void;

  /** result: e.g. hit, miss, stored, not_stored, exists, not_found, deleted, touched, ok, error, unavailable. */
  requests: Counter<'command' | 'result'>;
  /** From the whole request parsed to its reply queued, as the client sees it. */
  requestDuration: FastHistogram<'command'>;
  requestsInFlight: Gauge;

  backendRequestDuration: FastHistogram<'backend'>;
  backendErrors: Counter<'backend' | 'reason'>;
  backendTimeouts: Counter<'backend'>;
  /** 1 while the backend is in the ring, 0 while it is ejected. */
  backendUp: Gauge<'backend'>;
  backendEjections: Counter<'backend'>;
  backendReturns: Counter<'backend'>;
  /** Pool connections open to the backend. */
  backendConnections: Gauge<'backend'>;
  /** action: "answered" (ERROR, CLIENT_ERROR, a binary error status) or "closed". */
  protocolErrors: Counter<'protocol' | 'action'>;

  /** A request answered by a later member because an earlier one failed or missed. */
  failovers: Counter<'command'>;
  /** A write's follow-up found members that differed from the authority (another sidecar's write overlapped) and copied its state. */
  convergeRepairs: Counter;
  replicaDisagreements: Counter<'command'>;
  /** locality: "local" when a `local: true` backend answered, "zone" one in this sidecar's zone, else "remote". */
  reads: Counter<'locality'>;
  /** Copies that writes placed, by the zone of the member each went to (with zones only). */
  zoneCopies: Counter<'zone'>;
  /** Writes whose key's trusted members spanned fewer zones than min(replicas, zones). */
  unspreadWrites: Counter;
  /** Where the ring counts those two (src/routing/ring.ts ZoneTally): plain numbers, folded at scrape time. */
  zoneTally: { copies(zone: string): CounterCell; readonly unspread: CounterCell };

  /** backend: the one being refilled. */
  resyncKeysCopied: Counter<'backend'>;
  resyncKeysSkipped: Counter<'backend'>;
  resyncInProgress: Gauge<'backend'>;
  resyncRuns: Counter<'backend' | 'outcome'>;
  /** Stages applied by the trust protocol (docs/trust.md), by backend and the role it took. */
  trustChanges: Counter<'backend' | 'role'>;
  /** Keys the runs going on to this backend still have to copy or check (see its help). */
  resyncKeysPending: Gauge<'backend'>;
  /** Unix time a resync run (not a shed) to this backend last completed; 0 until one has. */
  resyncLastComplete: Gauge<'backend'>;

  clientConnections: Gauge;
  clientConnectionsRejected: Counter;
  clientBytesReceived: Counter;
  clientBytesSent: Counter;

  /**
   * TLS changes a reload found, by side (backend, client) and result: applied; refused (a
   * certificate file could not be read: the whole reload refused); needs_restart (client TLS
   * turned on or off). Every series is exported from start, at 0.
   */
  tlsReloads: Counter<'side' | 'result'>;
  /** version, node_version; always 1. */
  buildInfo: Gauge<'version' | 'node_version'>;

  /** PHP session locks (src/locks/): attempts and grants by handler, `memcached` or `memcache`. */
  sessionLockAttempts: Counter<'handler'>;
  sessionLockGrants: Counter<'handler'>;
  /** From a request's first attempt at a session's lock to its grant. */
  sessionLockWait: Histogram;
  /** From a grant to its release. */
  sessionLockHold: Histogram;
  /** Locks granted while this sidecar still saw them held, with no release seen. */
  sessionLockTakeovers: Counter;
  /** Locks granted here that passed their expiry with no release seen. */
  sessionLockExpired: Counter;
  /** Grants whose hold was not followed: the tracker was full. */
  sessionLockUntracked: Counter;
  sessionLockHolders: Gauge;
  /** Where session_lock_holders reads its value at scrape time (the read also counts the expiries it finds). */
  setLockHoldersSource(read: () => number): void;

  /** Drops every series labelled with this backend, when a reload removes it. */
  forgetBackend(address: string): Promise<void>;
}

/** The reload metrics: in the proxy's registry, or with --workers in the primary's. */
export interface ReloadMetrics {
  /** result: "ok" or "error" (the old config kept). */
  configReloads: Counter<'result'>;
  /** 1 when the last reload (or the start) applied its config, 0 when it was refused. */
  configLastReloadSuccessful: Gauge;
  /** Unix time of the last reload attempt, or of the start. */
  configLastReloadTimestamp: Gauge;
}

/** The names of the reload metrics, which the primary serves itself instead of the workers'. */
export const RELOAD_METRIC_NAMES: readonly string[] = [
  'replicached_config_reloads_total',
  'replicached_config_last_reload_successful',
  'replicached_config_last_reload_timestamp_seconds',
];

/** The reload metrics on `registry`, as after a successful start. */
export function createReloadMetrics(registry: Registry): ReloadMetrics {
  const registers = [registry];
  const m: ReloadMetrics = {
    configReloads: new Counter({
      name: RELOAD_METRIC_NAMES[0],
      help: 'Config reloads, by result: ok, or error (the old config kept).',
      labelNames: ['result'] as const,
      registers,
    }),
    configLastReloadSuccessful: new Gauge({
      name: RELOAD_METRIC_NAMES[1],
      help: 'Whether the last config reload (or the start) applied its config (1) or was refused (0).',
      registers,
    }),
    configLastReloadTimestamp: new Gauge({
      name: RELOAD_METRIC_NAMES[2],
      help: 'Unix time of the last config reload attempt, or of the start.',
      registers,
    }),
  };
  for (const result of ['ok', 'error']) m.configReloads.inc({ result }, 0);
  m.configLastReloadSuccessful.set(1);
  m.configLastReloadTimestamp.set(Date.now() / 1000);
  return m;
}

/** The discovery metrics (backendsFrom): in the proxy's registry, or with --workers in the primary's. */
export interface DiscoveryMetrics {
  /** Resolutions that gave no usable answer (the last good backends kept), by reason. */
  discoveryFailures: Counter<'reason'>;
  /** Changes of DNS's answer applied as a membership change. */
  discoveryChanges: Counter;
  /** Backends in the last good answer; 0 without backendsFrom. */
  discoveryBackends: Gauge;
  /** Unix time of the last usable answer; 0 until one. */
  discoveryLastSuccess: Gauge;
}

/** The names of the discovery metrics, which the primary serves itself instead of the workers'. */
export const DISCOVERY_METRIC_NAMES: readonly string[] = [
  'replicached_discovery_failures_total',
  'replicached_discovery_changes_total',
  'replicached_discovery_backends',
  'replicached_discovery_last_success_timestamp_seconds',
];

/** The discovery metrics on `registry`, every reason at 0. */
export function createDiscoveryMetrics(registry: Registry): DiscoveryMetrics {
  const registers = [registry];
  const m: DiscoveryMetrics = {
    discoveryFailures: new Counter({
      name: DISCOVERY_METRIC_NAMES[0],
      help: 'DNS resolutions of backendsFrom that gave no usable answer, by reason; the last good backends stay.',
      labelNames: ['reason'] as const,
      registers,
    }),
    discoveryChanges: new Counter({
      name: DISCOVERY_METRIC_NAMES[1],
      help: 'Changes of the DNS answer for backendsFrom, applied as a membership change (a reload).',
      registers,
    }),
    discoveryBackends: new Gauge({
      name: DISCOVERY_METRIC_NAMES[2],
      help: 'Backends in the last usable DNS answer for backendsFrom; 0 without it.',
      registers,
    }),
    discoveryLastSuccess: new Gauge({
      name: DISCOVERY_METRIC_NAMES[3],
      help: 'Unix time of the last usable DNS answer for backendsFrom; 0 until one.',
      registers,
    }),
  };
  for (const reason of DISCOVERY_FAILURE_REASONS) m.discoveryFailures.inc({ reason }, 0);
  m.discoveryBackends.set(0);
  m.discoveryLastSuccess.set(0);
  return m;
}

/** Records a reload's result in the reload metrics. */
export function recordReload(m: ReloadMetrics, ok: boolean): void {
  m.configReloads.inc({ result: ok ? 'ok' : 'error' });
  m.configLastReloadSuccessful.set(ok ? 1 : 0);
  m.configLastReloadTimestamp.set(Date.now() / 1000);
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const requestCells = new CounterCells<'command' | 'result'>(['command', 'result']);
  const errorCells = new CounterCells<'backend' | 'reason'>(['backend', 'reason']);
  const timeoutCells = new CounterCells<'backend'>(['backend']);
  const bytesInCells = new CounterCells<never>([]);
  const bytesOutCells = new CounterCells<never>([]);
  const protocolErrorCells = new CounterCells<'protocol' | 'action'>(['protocol', 'action']);
  const zoneCopyCells = new CounterCells<'zone'>(['zone']);
  const unspreadCells = new CounterCells<never>([]);
  let inFlightSource: () => number = () => 0;
  let backendsSource: () => readonly BackendConnections[] = () => [];
  let resyncSource: () => readonly ResyncBacklog[] = () => [];
  let lockHoldersSource: () => number = () => 0;

  const m = {
    registry,
    requests: new Counter({
      name: 'replicached_requests_total',
      help: 'Client requests answered, by command and result.',
      labelNames: ['command', 'result'] as const,
      registers,
      collect: () => requestCells.fold(),
    }),
    requestDuration: new FastHistogram({
      name: 'replicached_request_duration_seconds',
      help: 'Time from a client request parsed to its reply queued, by command.',
      labelNames: ['command'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    requestsInFlight: new Gauge({
      name: 'replicached_requests_in_flight',
      help: 'Client requests received and not yet answered.',
      registers,
      collect(this: Gauge) {
        this.set(inFlightSource());
      },
    }),
    backendRequestDuration: new FastHistogram({
      name: 'replicached_backend_request_duration_seconds',
      help: 'Time from a request sent to a backend to its reply, by backend.',
      labelNames: ['backend'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    backendErrors: new Counter({
      name: 'replicached_backend_errors_total',
      help: 'Backend requests that failed, by backend and reason.',
      labelNames: ['backend', 'reason'] as const,
      registers,
      collect: () => errorCells.fold(),
    }),
    backendTimeouts: new Counter({
      name: 'replicached_backend_timeouts_total',
      help: 'Backend requests or connects that timed out, by backend.',
      labelNames: ['backend'] as const,
      registers,
      collect: () => timeoutCells.fold(),
    }),
    backendUp: new Gauge({
      name: 'replicached_backend_up',
      help: 'Whether the backend is in the ring (1) or ejected (0); with --workers, 1 only while every worker has it up.',
      labelNames: ['backend'] as const,
      registers,
      aggregator: 'min',
    }),
    backendEjections: new Counter({
      name: 'replicached_backend_ejections_total',
      help: 'Times the backend was marked down and taken out of the ring.',
      labelNames: ['backend'] as const,
      registers,
    }),
    backendReturns: new Counter({
      name: 'replicached_backend_returns_total',
      help: 'Times the backend passed its probes and came back into the ring.',
      labelNames: ['backend'] as const,
      registers,
    }),
    backendConnections: new Gauge({
      name: 'replicached_backend_connections',
      help: 'Connections open to the backend (its pool, not probes or resync dumps).',
      labelNames: ['backend'] as const,
      registers,
      collect(this: Gauge<'backend'>) {
        this.reset();
        for (const b of backendsSource()) this.set({ backend: b.address }, b.openConnections);
      },
    }),
    protocolErrors: new Counter({
      name: 'replicached_protocol_errors_total',
      help: 'Client requests refused as malformed or over a limit, by protocol and action: answered with an error, or the connection closed.',
      labelNames: ['protocol', 'action'] as const,
      registers,
      collect: () => protocolErrorCells.fold(),
    }),
    failovers: new Counter({
      name: 'replicached_failovers_total',
      help: 'Requests answered by a later replica because an earlier one failed or missed, by command.',
      labelNames: ['command'] as const,
      registers,
    }),
    convergeRepairs: new Counter({
      name: 'replicached_converge_repairs_total',
      help: "Writes whose follow-up check found replicas differing from the authority and copied the authority's state to them.",
      registers,
    }),
    replicaDisagreements: new Counter({
      name: 'replicached_replica_disagreements_total',
      help: 'Writes whose replicas answered differently, by command.',
      labelNames: ['command'] as const,
      registers,
    }),
    reads: new Counter({
      name: 'replicached_reads_total',
      help: "Backends asked for reads, by locality: local (the `local: true` backend), zone (one in this sidecar's zone), remote.",
      labelNames: ['locality'] as const,
      registers,
    }),
    zoneCopies: new Counter({
      name: 'replicached_zone_copies_total',
      help: 'Copies that client writes placed, by the zone of the backend each went to (each write counts one per member of its key). With backends in zones only.',
      labelNames: ['zone'] as const,
      registers,
      collect: () => zoneCopyCells.fold(),
    }),
    unspreadWrites: new Counter({
      name: 'replicached_unspread_writes_total',
      help: "Client writes whose key's trusted members spanned fewer zones than the replicas (or than the zones, when there are fewer zones): fewer zones up than that. With backends in zones only.",
      registers,
      collect: () => unspreadCells.fold(),
    }),
    resyncKeysCopied: new Counter({
      name: 'replicached_resync_keys_copied_total',
      help: 'Keys copied to a backend while refilling it, by backend refilled.',
      labelNames: ['backend'] as const,
      registers,
    }),
    resyncKeysSkipped: new Counter({
      name: 'replicached_resync_keys_skipped_total',
      help: 'Keys a resync left alone (already present, expired or gone), by backend refilled.',
      labelNames: ['backend'] as const,
      registers,
    }),
    resyncInProgress: new Gauge({
      name: 'replicached_resync_in_progress',
      help: 'Whether a resync, fill or shed to the backend is running (1) or not (0); with --workers, in any worker.',
      labelNames: ['backend'] as const,
      registers,
      aggregator: 'max',
      collect(this: Gauge<'backend'>) {
        this.reset();
        for (const r of resyncSource()) this.set({ backend: r.backend }, r.running ? 1 : 0);
      },
    }),
    resyncRuns: new Counter({
      name: 'replicached_resync_runs_total',
      help: 'Resync runs ended, by backend refilled and outcome: complete, incomplete (keys it could not list, or copies that kept failing), or aborted.',
      labelNames: ['backend', 'outcome'] as const,
      registers,
    }),
    trustChanges: new Counter({
      name: 'replicached_trust_changes_total',
      help: 'Changes of a backend\'s role that every live sidecar agreed to and this one applied: out (it failed or restarted), refill (every sidecar writes to it again), trusted (refilled).',
      labelNames: ['backend', 'role'] as const,
      registers,
    }),
    resyncKeysPending: new Gauge({
      name: 'replicached_resync_keys_pending',
      help:
        'Keys the resync, fill and shed runs to the backend have listed and not yet copied or checked, copies in flight included; ' +
        'it grows while a run is still listing, and 0 means no run has work left. With --workers, the most of any worker.',
      labelNames: ['backend'] as const,
      registers,
      aggregator: 'max',
      collect(this: Gauge<'backend'>) {
        this.reset();
        for (const r of resyncSource()) this.set({ backend: r.backend }, r.pending + r.inFlight);
      },
    }),
    resyncLastComplete: new Gauge({
      name: 'replicached_resync_last_complete_timestamp_seconds',
      help: 'Unix time the last resync or fill run to the backend completed (every key listed and done); 0 until one has. With --workers, the latest in any worker.',
      labelNames: ['backend'] as const,
      registers,
      aggregator: 'max',
    }),
    clientConnections: new Gauge({
      name: 'replicached_client_connections',
      help: 'Client connections open.',
      registers,
    }),
    clientConnectionsRejected: new Counter({
      name: 'replicached_client_connections_rejected_total',
      help: 'Client connections closed at accept because the connection limit was reached.',
      registers,
    }),
    clientBytesReceived: new Counter({
      name: 'replicached_client_bytes_received_total',
      help: 'Bytes read from clients.',
      registers,
      collect: () => bytesInCells.fold(),
    }),
    clientBytesSent: new Counter({
      name: 'replicached_client_bytes_sent_total',
      help: 'Bytes written to clients.',
      registers,
      collect: () => bytesOutCells.fold(),
    }),
    buildInfo: new Gauge({
      name: 'replicached_build_info',
      help: 'Always 1; the labels say which replicached and which Node.js run.',
      labelNames: ['version', 'node_version'] as const,
      registers,
      aggregator: 'first',
    }),
    sessionLockAttempts: new Counter({
      name: 'replicached_session_lock_attempts_total',
      help: 'PHP session lock attempts seen (php-memcached add; pecl-memcache incr and its add), by handler: memcached or memcache.',
      labelNames: ['handler'] as const,
      registers,
    }),
    sessionLockGrants: new Counter({
      name: 'replicached_session_lock_grants_total',
      help: 'PHP session lock attempts that took the lock, by handler: memcached or memcache.',
      labelNames: ['handler'] as const,
      registers,
    }),
    sessionLockWait: new Histogram({
      name: 'replicached_session_lock_wait_seconds',
      help: "Time from a PHP request's first attempt at its session's lock to the grant: how long the request waited for the session.",
      buckets: LOCK_WAIT_BUCKETS,
      registers,
    }),
    sessionLockHold: new Histogram({
      name: 'replicached_session_lock_hold_seconds',
      help: "Time from a session lock's grant to its release: how long a request kept the session's other requests waiting.",
      buckets: LOCK_HOLD_BUCKETS,
      registers,
    }),
    sessionLockTakeovers: new Counter({
      name: 'replicached_session_lock_takeovers_total',
      help: 'Session locks granted while this sidecar still saw them held and never saw a release: the holder died or timed out and the lock expired (or memcached evicted it).',
      registers,
    }),
    sessionLockExpired: new Counter({
      name: 'replicached_session_lock_expired_total',
      help: 'Session locks granted through this sidecar that passed their expiry with no release seen: the PHP worker holding it died or ran past the lock expiry.',
      registers,
      collect: () => {
        lockHoldersSource(); // finds the expiries up to now
      },
    }),
    sessionLockUntracked: new Counter({
      name: 'replicached_session_lock_untracked_total',
      help: 'Session lock grants whose hold and takeover were not followed, because 10,000 holders were followed already.',
      registers,
    }),
    sessionLockHolders: new Gauge({
      name: 'replicached_session_lock_holders',
      help: 'Session locks granted through this sidecar, not released and not past their expiry.',
      registers,
      collect(this: Gauge) {
        this.set(lockHoldersSource());
      },
    }),
    tlsReloads: new Counter({
      name: 'replicached_tls_reloads_total',
      help: 'TLS changes found on a reload, by side (backend, client) and result: applied, refused (a certificate file unreadable: the reload refused), needs_restart.',
      labelNames: ['side', 'result'] as const,
      registers,
    }),
  };
  for (const side of ['backend', 'client']) {
    for (const result of ['applied', 'refused', 'needs_restart']) m.tlsReloads.inc({ side, result }, 0);
  }
  m.buildInfo.set({ version: VERSION, node_version: process.version }, 1);

  requestCells.attach(m.requests);
  errorCells.attach(m.backendErrors);
  timeoutCells.attach(m.backendTimeouts);
  bytesInCells.attach(m.clientBytesReceived);
  bytesOutCells.attach(m.clientBytesSent);
  protocolErrorCells.attach(m.protocolErrors);
  zoneCopyCells.attach(m.zoneCopies);
  unspreadCells.attach(m.unspreadWrites);
  const zoneTally = { copies: (zone: string) => zoneCopyCells.cell({ zone }), unspread: unspreadCells.cell({}) };
  const protocolErrorCell = new Map<string, CounterCell>();
  for (const protocol of CLIENT_PROTOCOLS) {
    for (const action of ['answered', 'closed']) protocolErrorCell.set(`${protocol} ${action}`, protocolErrorCells.cell({ protocol, action }));
  }
  const bytesIn = bytesInCells.cell({});
  const bytesOut = bytesOutCells.cell({});

  // command -> its latency series and its result cells
  const byCommand = new Map<string, { duration: HistogramSeries; results: Map<string, CounterCell> }>();
  const requestCell = (command: string, result: string): { duration: HistogramSeries; cell: CounterCell } => {
    let c = byCommand.get(command);
    if (c === undefined) {
      c = { duration: m.requestDuration.series({ command }), results: new Map() };
      byCommand.set(command, c);
    }
    let cell = c.results.get(result);
    if (cell === undefined) {
      cell = requestCells.cell({ command, result });
      c.results.set(result, cell);
    }
    return { duration: c.duration, cell };
  };
  const countRequest = (command: string, result: string, seconds: number): void => {
    const { duration, cell } = requestCell(command, result);
    cell.n++;
    duration.observe(seconds);
  };
  for (const [command, results] of COMMAND_RESULTS) for (const result of results) requestCell(command, result);
  for (const command of FAILOVER_COMMANDS) m.failovers.inc({ command }, 0);
  for (const command of WRITE_COMMANDS) m.replicaDisagreements.inc({ command }, 0);
  for (const locality of ['local', 'zone', 'remote']) m.reads.inc({ locality }, 0);
  for (const handler of LOCK_HANDLERS) {
    m.sessionLockAttempts.inc({ handler }, 0);
    m.sessionLockGrants.inc({ handler }, 0);
  }

  const backendRecorder = (backend: string): BackendRecorder => {
    const duration = m.backendRequestDuration.series({ backend });
    const timeouts = timeoutCells.cell({ backend });
    const reasons = new Map(BACKEND_ERROR_REASONS.map((reason) => [reason, errorCells.cell({ backend, reason })]));
    return {
      replied: (seconds) => duration.observe(seconds),
      failed: (reason, count) => {
        reasons.get(reason)!.n += count;
      },
      timedOut: () => {
        timeouts.n++;
      },
    };
  };

  const addBackend = (backend: string): void => {
    m.backendUp.set({ backend }, 1);
    m.backendEjections.inc({ backend }, 0);
    m.backendReturns.inc({ backend }, 0);
    m.resyncKeysCopied.inc({ backend }, 0);
    m.resyncKeysSkipped.inc({ backend }, 0);
    m.resyncLastComplete.set({ backend }, 0);
    for (const outcome of RESYNC_OUTCOMES) m.resyncRuns.inc({ backend, outcome }, 0);
    for (const role of TRUST_ROLES) m.trustChanges.inc({ backend, role }, 0);
  };

  const byBackendOnly = [
    m.backendRequestDuration,
    m.backendTimeouts,
    m.backendUp,
    m.backendEjections,
    m.backendReturns,
    m.resyncKeysCopied,
    m.resyncKeysSkipped,
    m.resyncInProgress,
    m.resyncKeysPending,
    m.resyncLastComplete,
  ];

  return {
    ...m,
    ...createReloadMetrics(registry),
    ...createDiscoveryMetrics(registry),
    zoneTally,
    countRequest,
    requestCount: (command, result) => {
      const results = byCommand.get(command)?.results;
      if (results === undefined) return 0;
      if (result !== undefined) return results.get(result)?.n ?? 0;
      let n = 0;
      for (const cell of results.values()) n += cell.n;
      return n;
    },
    bytesIn: (n) => {
      bytesIn.n += n;
    },
    bytesOut: (n) => {
      bytesOut.n += n;
    },
    backendRecorder,
    setInFlightSource: (read) => {
      inFlightSource = read;
    },
    setBackendsSource: (read) => {
      backendsSource = read;
    },
    setResyncSource: (read) => {
      resyncSource = read;
    },
    setLockHoldersSource: (read) => {
      lockHoldersSource = read;
    },
    addBackend,
    countProtocolError: (protocol, closed) => {
      protocolErrorCell.get(`${protocol} ${closed ? 'closed' : 'answered'}`)!.n++;
    },
    async forgetBackend(address: string): Promise<void> {
      errorCells.drop({ backend: address });
      timeoutCells.drop({ backend: address });
      for (const metric of byBackendOnly) metric.remove({ backend: address });
      // Metrics with a second label: remove each series of this backend.
      for (const metric of [m.backendErrors, m.resyncRuns, m.trustChanges] as Counter<string>[]) {
        for (const { labels } of (await metric.get()).values) {
          if (labels.backend === address) metric.remove(labels);
        }
      }
    },
  };
}
