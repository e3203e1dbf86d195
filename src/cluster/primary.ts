// --workers N: N processes share the client port (node:cluster), each a whole
// proxy over the same backends. The primary owns what must exist once: the
// config (it loads it, reloads it, and sends it to the workers), the local
// memcached default, the metrics endpoint, and the signals.
//
//   primary ── config (at start, on every reload, to a respawned worker) ──> worker 1..N
//      │   <── metrics, readiness ───────────────────────────────────────── worker 1..N
//      └── /metrics: the workers' metrics combined (cluster/metrics.ts) + its own
//          /readyz:  200 while every live worker says it is ready (and one lives)
//
// Every worker runs the same ring: the same config, whichever worker it is and
// whenever it started. A worker that dies is started again after
// RESTART_DELAY_MS, and gets the config the primary runs now.

import cluster, { type Worker } from 'node:cluster';
import { Registry } from 'prom-client';
import type { Config } from '../config';
import type { Logger } from '../log';
import { listenError } from '../listen-error';
import { startMetricsServer, type MetricsServer } from '../metrics/http';
import { createDiscoveryMetrics, createReloadMetrics, type DiscoveryMetrics, type ReloadMetrics } from '../metrics/registry';
import { diffConfig, liveConfig, type ReloadChanges, type Reloadable, type TlsChanges } from '../reload';
import { saslCredentials } from '../sasl-credentials';
import { isOurs, type ToPrimary, type ToWorker } from './messages';
import { ClusterMetrics } from './metrics';

const RESTART_DELAY_MS = 1000;

export const isWorker = (): boolean => cluster.isWorker;

export interface Primary extends Reloadable {
  /** Resolves with the client port once every worker listens. */
  listening: Promise<number>;
  metricsPort: number | null;
  metrics: ReloadMetrics & DiscoveryMetrics;
  stop(): Promise<void>;
}

/** What a worker runs: the primary's config, as one process with no metrics endpoint of its own. */
function forWorker(config: Config): Config {
  return { ...config, workers: 1, metricsListen: null };
}

/** Throws SaslCredentialError when a password the config names cannot be read (each worker reads it again). */
function readableCredentials(config: Config): void {
  saslCredentials(config.backendSasl, 'backendSasl');
  saslCredentials(config.clientSasl, 'clientSasl');
}

export async function startPrimary(config: Config, logger: Logger): Promise<Primary> {
  readableCredentials(config); // before any worker starts: a missing password stops the start
  let current = config;
  let stopping = false;
  /** Worker id -> its last reported readiness. */
  const ready = new Map<number, boolean>();
  const workers = (): Worker[] => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected());
  const tell = (w: Worker, message: ToWorker): void => {
    if (w.isConnected()) w.send(message);
  };
  // Without a metrics endpoint nobody reads the workers' metrics: the reload metrics alone, unserved.
  const clusterMetrics = config.metricsListen
    ? new ClusterMetrics(() => workers().map((w) => ({ id: w.id, request: (id) => tell(w, { replicached: 'metrics?', id }) })))
    : null;
  const own = clusterMetrics ?? new Registry();
  const metrics = { ...createReloadMetrics(own), ...createDiscoveryMetrics(own) };

  cluster.on('message', (worker, message: unknown) => {
    if (!isOurs<ToPrimary>(message)) return;
    if (message.replicached === 'config?') tell(worker, { replicached: 'config', config: forWorker(current) });
    else if (message.replicached === 'ready') ready.set(worker.id, message.ready);
    else clusterMetrics?.answer(worker.id, message.id, message.metrics);
  });
  cluster.on('exit', (worker, code, signal) => {
    ready.delete(worker.id);
    clusterMetrics?.retire(worker.id);
    if (stopping) return;
    logger.error({ worker: worker.id, code, signal }, 'worker exited; starting another');
    setTimeout(() => {
      if (!stopping) cluster.fork();
    }, RESTART_DELAY_MS).unref();
  });

  const listening = new Promise<number>((resolve) => {
    let count = 0;
    cluster.on('listening', (_worker, address) => {
      if (++count === config.workers) resolve(address.port);
    });
  });
  for (let i = 0; i < config.workers; i++) cluster.fork();

  let metricsServer: MetricsServer | null = null;
  if (config.metricsListen && clusterMetrics) {
    const at = config.metricsListen;
    metricsServer = await startMetricsServer({
      registry: clusterMetrics,
      host: at.host,
      port: at.port,
      // Clients land on any worker: the tree is ready when each live one is (by its own rule).
      isReady: () => {
        const live = workers();
        return live.length > 0 && live.every((w) => ready.get(w.id) === true);
      },
    }).catch((err: unknown) => {
      throw listenError(err, 'metrics', at);
    });
  }

  return {
    listening,
    metricsPort: metricsServer?.port ?? null,
    metrics,
    get config() {
      return current;
    },
    reload: (next: Config): ReloadChanges & TlsChanges => {
      // The workers apply TLS settings (and read the files) when the new config reaches them.
      // Passwords are read here first: one that cannot be read refuses the reload for all of them.
      readableCredentials(next);
      const changes = {
        ...diffConfig(current, next),
        backendTls: JSON.stringify(current.backendTls) !== JSON.stringify(next.backendTls),
        clientTls: JSON.stringify(current.clientTls) !== JSON.stringify(next.clientTls),
      };
      current = liveConfig(current, next);
      logger.level = current.logLevel;
      clusterMetrics?.keepBackends(current.backends.map((b) => b.address));
      for (const w of workers()) tell(w, { replicached: 'config', config: forWorker(current) });
      return changes;
    },
    stop: async () => {
      stopping = true;
      clusterMetrics?.stop();
      const all = workers();
      const exits = all.map((w) => new Promise((resolve) => w.once('exit', resolve)));
      for (const w of all) w.process.kill('SIGTERM');
      await Promise.all(exits);
      await metricsServer?.close();
    },
  };
}
