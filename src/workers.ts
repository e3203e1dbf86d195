// --workers N: N processes share the client port (node:cluster), each a whole
// proxy over the same backends. The ring is the same in every worker, so they
// agree on placement exactly as separate sidecars do. The primary owns what
// must exist once: the local memcached default, the metrics endpoint (summed
// over the workers), and the signals.
//
//   primary ── fork ──> worker 1 ─┐
//      │      fork ──> worker 2 ─┼── shared listen socket
//      └── /metrics = sum of the workers' registries (prom-client AggregatorRegistry)

import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';
import type { Config } from './config';
import type { Logger } from './log';
import { listenError } from './listen-error';
import { startMetricsServer, type MetricsServer } from './metrics/http';

/** The backend list the primary decided on (e.g. its local memcached), passed to the workers. */
const BACKENDS_ENV = 'REPLICACHED_WORKER_BACKENDS';
const RESTART_DELAY_MS = 1000;

export const isWorker = (): boolean => cluster.isWorker;

/** In a worker: the backends the primary chose, when it started them itself. */
export function workerBackends(): string[] | null {
  const list = process.env[BACKENDS_ENV];
  return list ? list.split(',') : null;
}

/** In a worker: let the primary read this worker's metrics. */
export function shareWorkerMetrics(registry: Registry): void {
  new AggregatorRegistry(); // installs the worker's answer to the primary's requests
  AggregatorRegistry.setRegistries([registry]);
}

/** Serves the sum of every worker's metrics. */
class ClusterRegistry extends AggregatorRegistry<'text/plain; version=0.0.4; charset=utf-8'> {
  override metrics(): Promise<string> {
    return this.clusterMetrics();
  }
}

export interface Primary {
  /** Resolves with the client port once every worker listens. */
  listening: Promise<number>;
  metricsPort: number | null;
  reload(): void;
  stop(): Promise<void>;
}

export async function startPrimary(config: Config, logger: Logger): Promise<Primary> {
  const env = { [BACKENDS_ENV]: config.backends.map((b) => b.address).join(',') };
  let stopping = false;
  const fork = (): Worker => cluster.fork(env);

  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    logger.error({ worker: worker.id, code, signal }, 'worker exited; starting another');
    setTimeout(() => {
      if (!stopping) fork();
    }, RESTART_DELAY_MS).unref();
  });

  const listening = new Promise<number>((resolve) => {
    let count = 0;
    cluster.on('listening', (_worker, address) => {
      if (++count === config.workers) resolve(address.port);
    });
  });
  for (let i = 0; i < config.workers; i++) fork();

  let metricsServer: MetricsServer | null = null;
  if (config.metricsListen) {
    const at = config.metricsListen;
    metricsServer = await startMetricsServer({
      registry: new ClusterRegistry(),
      host: at.host,
      port: at.port,
      isReady: () => Object.values(cluster.workers ?? {}).some((w) => w?.isConnected()),
    }).catch((err: unknown) => {
      throw listenError(err, 'metrics', at);
    });
  }

  const workers = () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
  return {
    listening,
    metricsPort: metricsServer?.port ?? null,
    reload: () => {
      for (const w of workers()) w.process.kill('SIGHUP');
    },
    stop: async () => {
      stopping = true;
      const exits = workers().map((w) => new Promise((resolve) => w.once('exit', resolve)));
      for (const w of workers()) w.process.kill('SIGTERM');
      await Promise.all(exits);
      await metricsServer?.close();
    },
  };
}
