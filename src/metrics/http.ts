// The operations endpoint: GET /metrics (Prometheus text exposition),
// GET /healthz (the process serves), GET /readyz (every key has a live replica,
// as the isReady callback says). Anything else: 404, or 405 for another method.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface MetricsServerOptions {
  registry: Registry;
  /** True when every key has at least one live replica; /readyz answers 503 otherwise. */
  isReady: () => boolean;
  host: string;
  /** 0: any free port; the one chosen is in the result. */
  port: number;
}

export interface MetricsServer {
  port: number;
  /** Stops listening and closes open (keep-alive) connections. */
  close(): Promise<void>;
}

const TEXT = 'text/plain; charset=utf-8';

/** Listens; rejects if the address cannot be bound (e.g. EADDRINUSE). */
export function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const server = createServer((req, res) => void handle(options, req, res));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}

async function handle(options: MetricsServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (path !== '/metrics' && path !== '/healthz' && path !== '/readyz') return send(res, 404, TEXT, 'not found\n');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    return send(res, 405, TEXT, 'method not allowed\n');
  }
  if (path === '/healthz') return send(res, 200, TEXT, 'ok\n');
  if (path === '/readyz') {
    let ready = false;
    try {
      ready = options.isReady();
    } catch {
      // A readiness check that throws is not ready.
    }
    return ready ? send(res, 200, TEXT, 'ready\n') : send(res, 503, TEXT, 'not ready\n');
  }
  try {
    const body = await options.registry.metrics();
    send(res, 200, options.registry.contentType, body);
  } catch (err) {
    send(res, 500, TEXT, `cannot collect metrics: ${err instanceof Error ? err.message : String(err)}\n`);
  }
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
