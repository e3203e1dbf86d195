// Every metric replicached exports, in one table, on a private registry (never
// prom-client's global one, so two proxies in one process stay apart).
// Label values stay few: command names, result names, backend addresses, and
// the reason strings a backend failure is reported with.

import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { CounterCells, FastHistogram, type CounterCell, type HistogramSeries } from './fast';

// Client and backend latencies are mostly sub-millisecond on a LAN; the top
// buckets catch timeouts (defaults 300 and 500 ms) and slow clients.
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** Why backend requests failed: a fixed set, so the label stays small. */
export type BackendErrorReason = 'timeout' | 'connect' | 'closed' | 'desync' | 'server_error' | 'down' | 'overload';

/** What one backend reports per request; cheap enough to call on every one. */
export interface BackendRecorder {
  /** A reply arrived this long after the request was sent. */
  replied(seconds: number): void;
  /** `count` requests failed for this reason. */
  failed(reason: BackendErrorReason, count: number): void;
  /** A request (or a connect) passed its deadline. */
  timedOut(): void;
}

export interface Metrics {
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

  /** A request answered by a later member because an earlier one failed or missed. */
  failovers: Counter<'command'>;
  readRepairs: Counter;
  /** A write's follow-up found members that differed from the authority (another sidecar's write overlapped) and copied its state. */
  convergeRepairs: Counter;
  replicaDisagreements: Counter<'command'>;
  /** locality: "local" when a `local: true` backend answered, else "remote". */
  reads: Counter<'locality'>;

  /** backend: the one being refilled. */
  resyncKeysCopied: Counter<'backend'>;
  resyncKeysSkipped: Counter<'backend'>;
  resyncInProgress: Gauge<'backend'>;

  clientConnections: Gauge;
  clientConnectionsRejected: Counter;
  clientBytesReceived: Counter;
  clientBytesSent: Counter;

  /** result: "ok" or "error" (the old config kept). */
  configReloads: Counter<'result'>;
  /**
   * TLS changes a reload found, by side (backend, client) and result: applied; refused (a
   * certificate file could not be read: the whole reload refused); needs_restart (client TLS
   * turned on or off). Every series is exported from start, at 0.
   */
  tlsReloads: Counter<'side' | 'result'>;

  /** Drops every series labelled with this backend, when a reload removes it. */
  forgetBackend(address: string): Promise<void>;
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
  let inFlightSource: () => number = () => 0;

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
      help: 'Whether the backend is in the ring (1) or ejected (0).',
      labelNames: ['backend'] as const,
      registers,
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
    failovers: new Counter({
      name: 'replicached_failovers_total',
      help: 'Requests answered by a later replica because an earlier one failed or missed, by command.',
      labelNames: ['command'] as const,
      registers,
    }),
    readRepairs: new Counter({
      name: 'replicached_read_repairs_total',
      help: 'Items copied back to replicas that missed them on a read.',
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
      help: 'Reads answered by a local or a remote backend.',
      labelNames: ['locality'] as const,
      registers,
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
      help: 'Whether a resync to the backend is running (1) or not (0).',
      labelNames: ['backend'] as const,
      registers,
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
    configReloads: new Counter({
      name: 'replicached_config_reloads_total',
      help: 'Config reloads, by result: ok, or error (the old config kept).',
      labelNames: ['result'] as const,
      registers,
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

  requestCells.attach(m.requests);
  errorCells.attach(m.backendErrors);
  timeoutCells.attach(m.backendTimeouts);
  bytesInCells.attach(m.clientBytesReceived);
  bytesOutCells.attach(m.clientBytesSent);
  const bytesIn = bytesInCells.cell({});
  const bytesOut = bytesOutCells.cell({});

  // command -> its latency series and its result cells
  const byCommand = new Map<string, { duration: HistogramSeries; results: Map<string, CounterCell> }>();
  const countRequest = (command: string, result: string, seconds: number): void => {
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
    cell.n++;
    c.duration.observe(seconds);
  };

  const backendRecorder = (backend: string): BackendRecorder => {
    const duration = m.backendRequestDuration.series({ backend });
    const timeouts = timeoutCells.cell({ backend });
    const reasons = new Map<string, CounterCell>();
    return {
      replied: (seconds) => duration.observe(seconds),
      failed: (reason, count) => {
        let cell = reasons.get(reason);
        if (cell === undefined) {
          cell = errorCells.cell({ backend, reason });
          reasons.set(reason, cell);
        }
        cell.n += count;
      },
      timedOut: () => {
        timeouts.n++;
      },
    };
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
  ];

  return {
    ...m,
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
    async forgetBackend(address: string): Promise<void> {
      errorCells.drop({ backend: address });
      timeoutCells.drop({ backend: address });
      for (const metric of byBackendOnly) metric.remove({ backend: address });
      // backendErrors has a second label: remove each reason seen for this backend.
      const { values } = await m.backendErrors.get();
      for (const { labels } of values) {
        if (labels.backend === address && labels.reason !== undefined) {
          m.backendErrors.remove({ backend: address, reason: String(labels.reason) });
        }
      }
    },
  };
}
