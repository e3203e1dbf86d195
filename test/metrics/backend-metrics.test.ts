// The per-request metrics that are counted outside prom-client (backend latency,
// backend errors and timeouts, requests in flight) reach /metrics. replicached
// runs as a child process (dist/) over real memcached.

import net from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { startCluster, type Cluster } from '../helpers/cluster';
import type { MemcachedProcess } from '../helpers/memcached';
import { TextClient, metricSum, metricValue, scrape, waitFor } from '../ops/support';

let cluster: Cluster | null = null;
let client: TextClient | null = null;
const sockets: net.Socket[] = [];
let paused: MemcachedProcess | null = null;

afterEach(async () => {
  paused?.resume();
  paused = null;
  for (const s of sockets.splice(0)) s.destroy();
  client?.close();
  client = null;
  await cluster?.stop();
  cluster = null;
});

async function startWithClient(args: string[] = []): Promise<{ mcs: MemcachedProcess[]; metricsPort: number }> {
  cluster = await startCluster({ backends: 3, replicas: 3, metrics: true, args });
  client = await TextClient.connect(cluster.proxy.port);
  return { mcs: cluster.backends, metricsPort: cluster.proxy.metricsPort! };
}

describe('backend metrics', () => {
  test('backend latency is observed per backend; no errors, nothing in flight at rest', async () => {
    const { mcs, metricsPort } = await startWithClient();
    for (let i = 0; i < 10; i++) expect(await client!.set(`b:${i}`, 'v')).toBe('STORED\r\n');
    const text = await scrape(metricsPort);
    // replicas = backends: every set reached all three.
    for (const m of mcs) {
      expect(metricValue(text, 'replicached_backend_request_duration_seconds_count', { backend: m.address })).toBeGreaterThanOrEqual(10);
      expect(metricValue(text, 'replicached_backend_request_duration_seconds_bucket', { backend: m.address, le: '+Inf' })).toBeGreaterThanOrEqual(10);
      expect(metricValue(text, 'replicached_backend_request_duration_seconds_sum', { backend: m.address })).toBeGreaterThan(0);
    }
    expect(metricSum(text, 'replicached_backend_errors_total')).toBe(0);
    expect(metricSum(text, 'replicached_backend_timeouts_total')).toBe(0);
    expect(metricValue(text, 'replicached_requests_in_flight')).toBe(0);
    expect(metricValue(text, 'replicached_request_duration_seconds_count', { command: 'set' })).toBe(10);
  });

  test('a SIGSTOPped backend: a request in flight, then a timeout and its errors', async () => {
    const { mcs, metricsPort } = await startWithClient(['--request-timeout', '1500']);
    paused = mcs[1];
    await paused.pause();
    // A set goes to every replica: it waits on the stopped one.
    const raw = net.connect(cluster!.proxy.port, '127.0.0.1');
    sockets.push(raw);
    await new Promise<void>((resolve) => raw.once('connect', () => resolve()));
    raw.write('set stuck 0 0 1\r\nx\r\n');
    await waitFor('a request in flight', async () => (metricValue(await scrape(metricsPort), 'replicached_requests_in_flight') ?? 0) >= 1);

    await waitFor('the timeout counted', async () => {
      const text = await scrape(metricsPort);
      return (metricValue(text, 'replicached_backend_timeouts_total', { backend: paused!.address }) ?? 0) >= 1;
    });
    const text = await scrape(metricsPort);
    expect(metricValue(text, 'replicached_backend_errors_total', { backend: paused.address, reason: 'timeout' })).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, 'replicached_backend_up', { backend: paused.address })).toBe(0);
    for (const m of [mcs[0], mcs[2]]) {
      expect(metricValue(text, 'replicached_backend_timeouts_total', { backend: m.address }) ?? 0).toBe(0);
    }
    await waitFor('the set answered', async () => (metricValue(await scrape(metricsPort), 'replicached_requests_in_flight') ?? 1) === 0);
  });
});
