// From the TLS settings of the config to Node's TLS options: certificate files are read once,
// at start, so a missing or unreadable file stops the proxy from starting instead of failing
// every backend connection later.

import { readFileSync } from 'node:fs';
import type tls from 'node:tls';
import type { BackendTlsConfig, ClientTlsConfig } from './config';

/** Options for tls.connect() to a backend, or null when backend TLS is off. */
export function backendTlsOptions(cfg: BackendTlsConfig): tls.ConnectionOptions | null {
  if (!cfg.enabled) return null;
  return {
    ...(cfg.caFile === null ? {} : { ca: read(cfg.caFile, 'backendTls.caFile') }),
    ...(cfg.certFile === null ? {} : { cert: read(cfg.certFile, 'backendTls.certFile') }),
    ...(cfg.keyFile === null ? {} : { key: read(cfg.keyFile, 'backendTls.keyFile') }),
    ...(cfg.serverName === null ? {} : { servername: cfg.serverName }),
    rejectUnauthorized: cfg.rejectUnauthorized,
  };
}

/** Options for tls.createServer() on the listen socket, or null when client TLS is off. */
export function clientTlsOptions(cfg: ClientTlsConfig): tls.TlsOptions | null {
  if (!cfg.enabled || cfg.certFile === null || cfg.keyFile === null) return null;
  return { cert: read(cfg.certFile, 'clientTls.certFile'), key: read(cfg.keyFile, 'clientTls.keyFile') };
}

function read(path: string, field: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`${field}: cannot read ${JSON.stringify(path)}: ${err instanceof Error ? err.message : String(err)}`);
  }
}
