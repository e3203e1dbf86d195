import { request } from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startMetricsServer, type MetricsServer } from '../../src/metrics/http';
import { createMetrics, type Metrics } from '../../src/metrics/registry';

interface Reply {
  status: number;
  contentType: string | undefined;
  body: string;
}

function fetchPath(port: number, path: string, method = 'GET'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'], body: Buffer.concat(chunks).toString() }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** The value of one exposition line, e.g. sample(body, 'replicached_failovers_total{command="get"}'). */
function sample(body: string, series: string): number | undefined {
  const line = body.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('metrics HTTP endpoint', () => {
  let metrics: Metrics;
  let server: MetricsServer;
  let ready: boolean;

  beforeEach(async () => {
    metrics = createMetrics();
    ready = true;
    server = await startMetricsServer({ registry: metrics.registry, isReady: () => ready, host: '127.0.0.1', port: 0 });
  });
  afterEach(async () => {
    await server.close();
  });

  it('GET /metrics: the Prometheus content type, and the numbers move', async () => {
    const before = await fetchPath(server.port, '/metrics');
    expect(before.status).toBe(200);
    expect(before.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(before.body).toContain('# TYPE replicached_failovers_total counter');
    expect(sample(before.body, 'replicached_failovers_total{command="get"}')).toBe(0); // present from the start

    metrics.failovers.inc({ command: 'get' });
    metrics.failovers.inc({ command: 'get' });
    metrics.requests.inc({ command: 'get', result: 'hit' }, 3);
    metrics.requestDuration.observe({ command: 'get' }, 0.0003);
    metrics.backendUp.set({ backend: '127.0.0.1:11211' }, 1);
    metrics.backendUp.set({ backend: '127.0.0.1:11212' }, 0);
    metrics.reads.inc({ locality: 'local' });
    metrics.clientBytesReceived.inc(100);

    const after = (await fetchPath(server.port, '/metrics')).body;
    expect(sample(after, 'replicached_failovers_total{command="get"}')).toBe(2);
    expect(sample(after, 'replicached_requests_total{command="get",result="hit"}')).toBe(3);
    expect(sample(after, 'replicached_request_duration_seconds_bucket{le="0.00025",command="get"}')).toBe(0);
    expect(sample(after, 'replicached_request_duration_seconds_bucket{le="0.0005",command="get"}')).toBe(1);
    expect(sample(after, 'replicached_request_duration_seconds_count{command="get"}')).toBe(1);
    expect(sample(after, 'replicached_backend_up{backend="127.0.0.1:11211"}')).toBe(1);
    expect(sample(after, 'replicached_backend_up{backend="127.0.0.1:11212"}')).toBe(0);
    expect(sample(after, 'replicached_reads_total{locality="local"}')).toBe(1);
    expect(sample(after, 'replicached_client_bytes_received_total')).toBe(100);
  });

  it('GET /metrics carries the default Node.js process metrics', async () => {
    const { body } = await fetchPath(server.port, '/metrics');
    expect(body).toMatch(/^process_cpu_seconds_total /m);
    expect(body).toMatch(/^nodejs_heap_size_used_bytes /m);
  });

  it('GET /healthz: 200 ok', async () => {
    expect(await fetchPath(server.port, '/healthz')).toMatchObject({ status: 200, body: 'ok\n' });
  });

  it('GET /readyz follows isReady: 200, then 503, then 200', async () => {
    expect(await fetchPath(server.port, '/readyz')).toMatchObject({ status: 200, body: 'ready\n' });
    ready = false;
    expect(await fetchPath(server.port, '/readyz')).toMatchObject({ status: 503, body: 'not ready\n' });
    ready = true;
    expect((await fetchPath(server.port, '/readyz')).status).toBe(200);
  });

  it('GET /readyz is 503 when isReady throws', async () => {
    await server.close();
    server = await startMetricsServer({
      registry: metrics.registry,
      isReady: () => {
        throw new Error('router not built yet');
      },
      host: '127.0.0.1',
      port: 0,
    });
    expect((await fetchPath(server.port, '/readyz')).status).toBe(503);
  });

  it.each(['/', '/metrics/', '/metricsx', '/health', '/favicon.ico'])('GET %s: 404', async (path) => {
    expect((await fetchPath(server.port, path)).status).toBe(404);
  });

  it('a query string is ignored; HEAD has no body; POST is 405', async () => {
    expect((await fetchPath(server.port, '/healthz?probe=1')).status).toBe(200);
    expect(await fetchPath(server.port, '/metrics', 'HEAD')).toMatchObject({ status: 200, body: '' });
    expect((await fetchPath(server.port, '/metrics', 'POST')).status).toBe(405);
  });

  it('a port in use: start rejects', async () => {
    await expect(
      startMetricsServer({ registry: metrics.registry, isReady: () => true, host: '127.0.0.1', port: server.port }),
    ).rejects.toThrow(/EADDRINUSE/);
  });
});
