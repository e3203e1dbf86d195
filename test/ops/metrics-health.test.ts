// Metrics move with traffic and with a backend's death; /readyz follows the
// sidecar semantics (ready once a backend answered; a later outage does not unready). replicached runs as a child process over real memcached.

import { afterEach, describe, expect, test } from 'vitest';
import { startCluster, type Cluster } from '../helpers/cluster';
import type { MemcachedProcess } from '../helpers/memcached';
import { TextClient, configDir, httpGet, metricSum, metricValue, scrape, waitFor, type ConfigDir } from './support';

let cluster: Cluster | null = null;
let client: TextClient | null = null;
let dir: ConfigDir | null = null;

afterEach(async () => {
  client?.close();
  client = null;
  await cluster?.stop();
  cluster = null;
  dir?.remove();
  dir = null;
});

async function startWithClient(
  backends: number,
  replicas: number,
  args: string[] = [],
): Promise<{ mcs: MemcachedProcess[]; metricsPort: number }> {
  cluster = await startCluster({ backends, replicas, metrics: true, args });
  client = await TextClient.connect(cluster.proxy.port);
  return { mcs: cluster.backends, metricsPort: cluster.proxy.metricsPort! };
}

/** One read on a fresh connection, whatever the answer: with no replica left the proxy closes the connection. */
async function poke(port: number): Promise<void> {
  const c = await TextClient.connect(port);
  await c.get('probe').catch(() => null);
  c.close();
}

describe('metrics', () => {
  test('requests, bytes and connections move with traffic', async () => {
    const { metricsPort } = await startWithClient(3, 2);
    for (let i = 0; i < 20; i++) expect(await client!.set(`m:${i}`, `value-${i}`)).toBe('STORED\r\n');
    for (let i = 0; i < 20; i++) expect(await client!.get(`m:${i}`)).toBe(`value-${i}`);
    expect(await client!.get('m:absent')).toBeNull();

    const text = await scrape(metricsPort);
    expect(metricValue(text, 'replicached_requests_total', { command: 'set', result: 'stored' })).toBe(20);
    expect(metricValue(text, 'replicached_requests_total', { command: 'get', result: 'hit' })).toBe(20);
    expect(metricValue(text, 'replicached_requests_total', { command: 'get', result: 'miss' })).toBe(1);
    expect(metricValue(text, 'replicached_request_duration_seconds_count', { command: 'get' })).toBe(21);
    expect(metricValue(text, 'replicached_client_connections')).toBe(1);
    expect(metricValue(text, 'replicached_client_bytes_received_total')).toBeGreaterThan(0);
    expect(metricValue(text, 'replicached_client_bytes_sent_total')).toBeGreaterThan(0);
    // No local backend: every backend read is remote (the miss ended at the authority's).
    expect(metricSum(text, 'replicached_reads_total', { locality: 'remote' })).toBe(21);
    expect(metricSum(text, 'replicached_reads_total', { locality: 'local' })).toBe(0);
    expect(metricValue(text, 'process_cpu_user_seconds_total')).toBeDefined();
  });

  test('a killed backend shows up 0, and every read is still answered', async () => {
    // A higher failureLimit keeps the dead backend in the ring for a few failed reads. Its
    // lost connection makes it distrusted at once (read last), so reads do not wait on it.
    dir = configDir('backend:\n  failureLimit: 10\n');
    const { mcs, metricsPort } = await startWithClient(3, 2, ['--config', dir.file]);
    const keys = Array.from({ length: 60 }, (_, i) => `k:${i}`);
    for (const k of keys) expect(await client!.set(k, `v-${k}`)).toBe('STORED\r\n');

    const before = await scrape(metricsPort);
    for (const mc of mcs) expect(metricValue(before, 'replicached_backend_up', { backend: mc.address })).toBe(1);
    expect(metricSum(before, 'replicached_failovers_total')).toBe(0);

    const dead = mcs[0];
    dead.kill('SIGKILL');
    await dead.exited();
    // Every key stays readable; those whose first replica was the dead one fail over.
    await waitFor('the dead backend marked down', async () => {
      for (const k of keys) expect(await client!.get(k)).toBe(`v-${k}`);
      return metricValue(await scrape(metricsPort), 'replicached_backend_up', { backend: dead.address }) === 0;
    });

    const after = await scrape(metricsPort);
    expect(metricValue(after, 'replicached_backend_up', { backend: mcs[1].address })).toBe(1);
    expect(metricValue(after, 'replicached_backend_up', { backend: mcs[2].address })).toBe(1);
    expect(metricValue(after, 'replicached_backend_ejections_total', { backend: dead.address })).toBe(1);
    expect(client!.closed).toBe(false);
  });
});

describe('health', () => {
  test('/healthz is 200 while the process serves', async () => {
    const { metricsPort } = await startWithClient(1, 1);
    expect(await httpGet(metricsPort, '/healthz')).toEqual({ status: 200, body: 'ok\n' });
  });

  // Sidecar readiness: ready once a backend has answered, and still ready when every backend
  // is lost. Each web pod's sidecar sees the same memcached; failing readiness on a shared
  // outage would take every web pod out of its Service at once (test/ops/readiness.test.ts
  // covers start-up with every backend dead).
  test('/readyz: 200 once a backend answered, and still 200 with every backend dead (backend_up says 0)', async () => {
    const { mcs, metricsPort } = await startWithClient(2, 2);
    await waitFor('/readyz 200', async () => (await httpGet(metricsPort, '/readyz')).status === 200);

    for (const mc of mcs) {
      mc.kill('SIGKILL');
      await mc.exited();
    }
    await waitFor('both backends down', async () => {
      await poke(cluster!.proxy.port);
      const body = await scrape(metricsPort);
      return mcs.every((mc) => metricValue(body, 'replicached_backend_up', { backend: mc.address }) === 0);
    });
    expect((await httpGet(metricsPort, '/readyz')).status).toBe(200);

    await mcs[1].restart();
    await waitFor('backend_up 1 again', async () => {
      await poke(cluster!.proxy.port);
      return metricValue(await scrape(metricsPort), 'replicached_backend_up', { backend: mcs[1].address }) === 1;
    });
    expect((await httpGet(metricsPort, '/readyz')).status).toBe(200);
  });
});
