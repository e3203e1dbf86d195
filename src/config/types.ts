// The resolved configuration the rest of the proxy runs on: every field set,
// every value checked. How a Config is built from a file and flags is in load.ts.

import type { BackendOptions as BackendRuntimeOptions } from '../backends/backend';
import type { Limits } from '../protocol/limits';

export interface HostPort {
  /** An IPv4 address, an IPv6 address without brackets, or a hostname. */
  host: string;
  port: number;
}

export interface BackendConfig {
  /** "host:port" as written by the user, normalized (IPv6 in brackets); the metrics' `backend` label. */
  address: string;
  host: string;
  port: number;
  /** Relative share of the ring (hashring weight). */
  weight: number;
  /** The memcached on this node: read first when it is a live member of a key's replica set. */
  local: boolean;
}

/** The backend settings a user can set; their meaning and defaults live with the backends. */
export type BackendOptions = Pick<BackendRuntimeOptions, (typeof BACKEND_OPTION_NAMES)[number]>;

export const BACKEND_OPTION_NAMES = [
  'connections',
  'connectTimeoutMs',
  'requestTimeoutMs',
  'failureLimit',
  'timeoutLimit',
  'probeIntervalMs',
  'retryMaxMs',
  'upAfterProbes',
] as const;

/** TLS from the proxy to its memcached backends (memcached -Z). */
export interface BackendTlsConfig {
  enabled: boolean;
  /** PEM CA bundle the backends' certificates must chain to; null: Node's built-in CAs. */
  caFile: string | null;
  /** A client certificate and its key, for backends that ask for one (ssl_verify_mode). */
  certFile: string | null;
  keyFile: string | null;
  /** The name the certificates are checked against (and SNI); null: each backend's host. */
  serverName: string | null;
  /** false turns certificate verification off: the link is encrypted but not authenticated. */
  rejectUnauthorized: boolean;
}

/** TLS for clients on the listen socket. */
export interface ClientTlsConfig {
  enabled: boolean;
  certFile: string | null;
  keyFile: string | null;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Config {
  listen: HostPort;
  /** Empty: the CLI starts LOCAL_BACKEND_COUNT memcached processes itself. */
  backends: BackendConfig[];
  replicas: number;
  /** null: no metrics endpoint. */
  metricsListen: HostPort | null;
  backend: BackendOptions;
  limits: Limits;
  /** false: `flush_all` is refused instead of being sent to every backend. */
  allowFlushAll: boolean;
  backendTls: BackendTlsConfig;
  clientTls: ClientTlsConfig;
  workers: number;
  /** On SIGTERM, how long open clients are still served before they are closed. */
  drainTimeoutMs: number;
  logLevel: LogLevel;
  /** The config file as given on the command line, re-read on reload; null without --config. */
  configPath: string | null;
}
