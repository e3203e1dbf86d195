// From the TLS settings of the config to Node's TLS options. Certificate files are read at
// start, so a missing or unreadable file stops the proxy from starting instead of failing
// every backend connection later, and read again on every reload (SIGHUP, a config edit, or
// a change to one of the files themselves): a rotated certificate is in the options that
// come out, and sameTlsOptions() tells the proxy that something changed.

import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import type { BackendTlsConfig, ClientTlsConfig, Config } from './config';

export type TlsSide = 'backend' | 'client';

/**
 * A certificate file that cannot be read, or files that do not make a certificate (bad PEM, a
 * key that does not match, as when a rotation is caught half done): at start the proxy does not
 * start; on reload the reload is refused and the running TLS settings stay.
 */
export class TlsFileError extends Error {
  constructor(
    readonly side: TlsSide,
    message: string,
  ) {
    super(message);
  }
}

/** Options for tls.connect() to a backend, or null when backend TLS is off. */
export function backendTlsOptions(cfg: BackendTlsConfig): tls.ConnectionOptions | null {
  if (!cfg.enabled) return null;
  return usable('backend', {
    ...(cfg.caFile === null ? {} : { ca: read(cfg.caFile, 'backend', 'backendTls.caFile') }),
    ...(cfg.certFile === null ? {} : { cert: read(cfg.certFile, 'backend', 'backendTls.certFile') }),
    ...(cfg.keyFile === null ? {} : { key: read(cfg.keyFile, 'backend', 'backendTls.keyFile') }),
    ...(cfg.serverName === null ? {} : { servername: cfg.serverName }),
    rejectUnauthorized: cfg.rejectUnauthorized,
  });
}

/** Options for tls.createServer() on the listen socket, or null when client TLS is off. */
export function clientTlsOptions(cfg: ClientTlsConfig): tls.TlsOptions | null {
  if (!cfg.enabled || cfg.certFile === null || cfg.keyFile === null) return null;
  return usable('client', { cert: read(cfg.certFile, 'client', 'clientTls.certFile'), key: read(cfg.keyFile, 'client', 'clientTls.keyFile') });
}

/** The options, once OpenSSL has accepted them (PEM parsed, key matching the certificate). */
function usable<T extends tls.SecureContextOptions>(side: TlsSide, options: T): T {
  try {
    tls.createSecureContext(options);
  } catch (err) {
    throw new TlsFileError(side, `${side}Tls: unusable certificate files: ${err instanceof Error ? err.message : String(err)}`);
  }
  return options;
}

/** Every certificate file the config uses, to be watched for changes. */
export function tlsFiles(config: Pick<Config, 'backendTls' | 'clientTls'>): string[] {
  const { backendTls: b, clientTls: c } = config;
  const files = [...(b.enabled ? [b.caFile, b.certFile, b.keyFile] : []), ...(c.enabled ? [c.certFile, c.keyFile] : [])];
  return [...new Set(files.filter((f): f is string => f !== null))];
}

/** The same settings and the same file contents. */
export function sameTlsOptions(a: tls.ConnectionOptions | tls.TlsOptions | null, b: tls.ConnectionOptions | tls.TlsOptions | null): boolean {
  if (a === null || b === null) return a === b;
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  const keys = Object.keys(x);
  return (
    keys.length === Object.keys(y).length &&
    keys.every((k) => (Buffer.isBuffer(x[k]) && Buffer.isBuffer(y[k]) ? x[k].equals(y[k]) : x[k] === y[k]))
  );
}

function read(path: string, side: TlsSide, field: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new TlsFileError(side, `${field}: cannot read ${JSON.stringify(path)}: ${err instanceof Error ? err.message : String(err)}`);
  }
}
