// N real memcached on free ports and the built proxy over all of them, the setup
// most end-to-end tests start from:
//
//   const cluster = await startCluster({ backends: 3, replicas: 2 });
//   cluster.proxy.port, cluster.backends[1].kill('SIGKILL')
//   await cluster.stop();                 // the proxy, then every backend

import { afterAll, beforeAll } from 'vitest';
import { startMemcached, type MemcachedProcess } from './memcached';
import { startProxy, type ProxyOptions, type ProxyProcess } from './proxy';

export interface ClusterOptions extends Omit<ProxyOptions, 'backends'> {
  /** How many memcached to start; the proxy gets all of them, in this order. */
  backends: number;
}

export interface Cluster {
  readonly backends: MemcachedProcess[];
  readonly proxy: ProxyProcess;
  /** Stops the proxy (SIGTERM), then every backend. Safe after the test stopped the proxy itself. */
  stop(): Promise<void>;
}

export async function startCluster({ backends: count, ...proxyOptions }: ClusterOptions): Promise<Cluster> {
  const backends = await Promise.all(Array.from({ length: count }, () => startMemcached()));
  const stopBackends = async (): Promise<void> => {
    await Promise.all(backends.map((b) => b.stop()));
  };
  let proxy: ProxyProcess;
  try {
    proxy = await startProxy({ ...proxyOptions, backends: backends.map((b) => b.address) });
  } catch (err) {
    // The caller gets no handle to stop them with.
    await stopBackends();
    throw err;
  }
  return {
    backends,
    proxy,
    stop: async () => {
      await proxy.stop();
      await stopBackends();
    },
  };
}

/**
 * For a test file that compares the proxy's replies with memcached's own: a
 * cluster (3 backends, 2 replicas) and a lone memcached beside it, started
 * before the file's tests and stopped after them. Read the handles inside tests.
 */
export function clusterBesideMemcached(): { readonly cluster: Cluster; readonly reference: MemcachedProcess } {
  const started = {} as { cluster: Cluster; reference: MemcachedProcess };
  beforeAll(async () => {
    [started.cluster, started.reference] = await Promise.all([startCluster({ backends: 3, replicas: 2 }), startMemcached()]);
  }, 30_000);
  afterAll(async () => {
    await started.cluster?.stop();
    await started.reference?.stop();
  });
  return started;
}
