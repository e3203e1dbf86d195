// Wires a Config into a running proxy:
//   config -> backends -> ring -> router -> listener (client sessions)
//                                        -> metrics endpoint

import { Backend } from './backends/backend';
import { DEFAULT_PARSER_LIMITS } from './protocol/backend/meta';
import type { BackendConfig, BackendOptions, Config } from './config';
import type { Logger } from './log';
import { createMetrics, type Metrics } from './metrics/registry';
import { startMetricsServer, type MetricsServer } from './metrics/http';
import { ProxyStats } from './proxy-stats';
import { diffConfig, drainAndClose, liveConfig, type ReloadChanges } from './reload';
import { Resyncer } from './resync/resyncer';
import { ReplicaRing } from './routing/ring';
import { KeySequencer } from './routing/key-sequencer';
import { OrderedRouter } from './routing/ordered-router';
import { ReplicatedRouter } from './routing/replicated-router';
import type { ServerContext } from './server/context';
import { Listener } from './server/listener';
import { backendTlsOptions, clientTlsOptions } from './tls';

/** The memcached version clients are told: the protocol level replicached speaks. */
export const PROTOCOL_VERSION = '1.6.0';

export interface RunningProxy {
  /** The client port actually bound (useful with port 0). */
  port: number;
  metricsPort: number | null;
  metrics: Metrics;
  backends: Backend[];
  /** The config it runs now (after reloads). */
  readonly config: Config;
  /** What /readyz answers; with --workers, each worker reports it to the primary. */
  isReady(): boolean;
  /**
   * Applies a new, already validated config without closing client connections
   * (see src/reload.ts); listen, metricsListen and workers keep their running values.
   */
  reload(next: Config): ReloadChanges;
  /** Stop accepting, finish requests in flight, close everything. */
  close(deadlineMs?: number): Promise<void>;
}

export async function startProxy(config: Config, logger: Logger): Promise<RunningProxy> {
  const metrics = createMetrics();
  // TLS files are read once, at start; a reload keeps the TLS settings the proxy started with.
  const backendTls = backendTlsOptions(config.backendTls);
  const openBackend = (b: BackendConfig, options: BackendOptions): Backend => {
    // Items up to the client limit must come back from a backend, whatever size it was started with.
    const parser = { ...DEFAULT_PARSER_LIMITS, maxValueLength: Math.max(DEFAULT_PARSER_LIMITS.maxValueLength, current.limits.maxItemSize) };
    const backend = new Backend(b.address, { ...options, parser, tls: backendTls }, metrics.backendRecorder(b.address));
    metrics.addBackend(b.address);
    backend.on('down', (reason) => {
      metrics.backendUp.set({ backend: b.address }, 0);
      metrics.backendEjections.inc({ backend: b.address });
      logger.warn({ backend: b.address, reason }, 'backend down');
    });
    backend.on('up', () => {
      metrics.backendUp.set({ backend: b.address }, 1);
      metrics.backendReturns.inc({ backend: b.address });
      logger.info({ backend: b.address }, 'backend up');
    });
    return backend;
  };
  // backends[i] runs current.backends[i]; a reload replaces all three.
  let current = config;
  let backends = config.backends.map((b) => openBackend(b, config.backend));
  const buildRing = () =>
    new ReplicaRing(
      backends.map((node, i) => ({ node, weight: current.backends[i].weight, local: current.backends[i].local })),
      current.replicas,
    );
  let ring = buildRing();
  /** Backends a reload took out, finishing their requests in flight. */
  const draining = new Set<Backend>();
  // Refills a backend that came back empty; rebuilt with the ring on a reload.
  const buildResyncer = () =>
    new Resyncer(ring, backends, {
      started: (backend, cause) => {
        metrics.resyncInProgress.set({ backend }, 1);
        logger.info({ backend, cause }, 'resync started');
      },
      copied: (backend) => metrics.resyncKeysCopied.inc({ backend }),
      skipped: (backend) => metrics.resyncKeysSkipped.inc({ backend }),
      finished: (backend, result, stillResyncing) => {
        metrics.resyncInProgress.set({ backend }, stillResyncing ? 1 : 0);
        const complete = result.outcome !== 'aborted' && result.unlisted.length === 0;
        metrics.resyncRuns.inc({ backend, outcome: result.outcome === 'aborted' ? 'aborted' : complete ? 'complete' : 'incomplete' });
        const { outcome, reason, mode, copied, skipped, pruned, unlisted } = result;
        const summary = { backend, outcome, reason, mode, copied, skipped, pruned, unlisted };
        if (complete) logger.info(summary, 'resync finished');
        else logger.warn(summary, 'resync incomplete');
      },
    });
  let resyncer = buildResyncer();
  const router = new ReplicatedRouter(
    ring,
    {
      failover: (command) => metrics.failovers.inc({ command }),
      readRepair: () => metrics.readRepairs.inc(),
      disagreement: (command) => metrics.replicaDisagreements.inc({ command }),
      read: (locality) => metrics.reads.inc({ locality }),
      converged: () => metrics.convergeRepairs.inc(),
    },
    {
      isResyncing: (node) => resyncer.isResyncing(node),
      deleting: (key) => resyncer.deleting(key),
      flushing: () => resyncer.flushing(),
    },
  );

  const stats = new ProxyStats(PROTOCOL_VERSION, () => backends, () => ring.replicas, metrics.requestCount);
  const keys = new KeySequencer();
  const ctx: ServerContext = {
    connectionRouter: () => new OrderedRouter(keys, router),
    limits: config.limits,
    version: PROTOCOL_VERSION,
    allowFlushAll: config.allowFlushAll,
    stats: () => [...stats.snapshot(), ...resyncer.statsLines()],
    countProtocolError: metrics.countProtocolError,
    countCommand: (command, result, startedMs) =>
      metrics.countRequest(command, result, (performance.now() - startedMs) / 1000),
  };
  const listener = new Listener(ctx, {
    connectionOpened: () => {
      stats.currConnections++;
      stats.totalConnections++;
      metrics.clientConnections.inc();
    },
    connectionClosed: () => {
      stats.currConnections--;
      metrics.clientConnections.dec();
    },
    connectionRejected: () => {
      stats.rejectedConnections++;
      metrics.clientConnectionsRejected.inc();
    },
    bytesIn: (n) => {
      stats.bytesRead += n;
      metrics.bytesIn(n);
    },
    bytesOut: (n) => {
      stats.bytesWritten += n;
      metrics.bytesOut(n);
    },
  }, clientTlsOptions(config.clientTls));
  metrics.setInFlightSource(() => listener.inFlight);
  metrics.setBackendsSource(() => backends);

  // Ready while every key has at least one live replica: one live backend is enough.
  const isReady = (): boolean => backends.some((b) => b.isUp());

  let metricsServer: MetricsServer | null = null;
  let port: number;
  try {
    ({ port } = await listener.listen(config.listen.host, config.listen.port));
    if (config.metricsListen) {
      metricsServer = await startMetricsServer({
        registry: metrics.registry,
        host: config.metricsListen.host,
        port: config.metricsListen.port,
        isReady,
      });
    }
  } catch (err) {
    await listener.shutdown(0);
    for (const b of backends) b.close();
    throw err;
  }
  resyncer.start();

  return {
    port,
    metricsPort: metricsServer?.port ?? null,
    metrics,
    get backends() {
      return backends;
    },
    get config() {
      return current;
    },
    isReady,
    reload: (next) => {
      const changes = diffConfig(current, next);
      // New connection settings need new Backend objects; otherwise keep the ones still listed.
      const reuse = new Map(changes.backendOptions ? [] : backends.map((b) => [b.address, b]));
      const nextBackends = next.backends.map((b) => reuse.get(b.address) ?? openBackend(b, next.backend));
      const retired = backends.filter((b) => !nextBackends.includes(b));
      const drainMs = 2 * (current.backend.connectTimeoutMs + current.backend.requestTimeoutMs) + 1000;
      current = liveConfig(current, next);
      backends = nextBackends;
      ring = buildRing();
      router.replaceRing(ring);
      const previousResyncer = resyncer;
      resyncer = buildResyncer();
      resyncer.start();
      void previousResyncer.close();
      // An added backend now serves keys whose copies (and locks) are elsewhere: until its
      // resync ends it is read last and decides no add/cas/incr, or an empty authority
      // would hand out a session lock another member still holds.
      for (const b of backends) if (changes.added.includes(b.address)) void resyncer.resync(b, 'added');
      Object.assign(ctx.limits, next.limits); // the same object every session reads
      ctx.allowFlushAll = next.allowFlushAll;
      logger.level = next.logLevel;
      for (const b of retired) {
        b.removeAllListeners(); // its state no longer speaks for the address
        draining.add(b);
        void drainAndClose(b, drainMs).then(() => {
          draining.delete(b);
          if (!backends.some((n) => n.address === b.address)) void metrics.forgetBackend(b.address);
        });
      }
      return changes;
    },
    close: async (deadlineMs = 5000) => {
      await listener.shutdown(deadlineMs);
      await resyncer.close();
      await metricsServer?.close();
      for (const b of [...backends, ...draining]) b.close();
    },
  };
}
