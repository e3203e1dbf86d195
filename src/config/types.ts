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
  /**
   * Its failure domain (an availability zone, a rack): a key's copies go to distinct zones
   * while there are zones left. Every backend has one, or none has (null).
   */
  zone: string | null;
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

/**
 * SASL PLAIN credentials. The password comes from exactly one of the three places
 * (never from the command line); left out, from the environment variable named in
 * defaults.ts. Read at start and on every reload (src/sasl-credentials.ts).
 */
export interface SaslConfig {
  /** null: SASL off. */
  username: string | null;
  /** Written in the config file itself (keep the file private). */
  password: string | null;
  /** A file holding the password; one trailing newline is not part of it. */
  passwordFile: string | null;
  /** The name of an environment variable holding the password. */
  passwordEnv: string | null;
}

/** SASL to the backends (memcached -S): they are then spoken to in the binary protocol. */
export interface BackendSaslConfig extends SaslConfig {
  /**
   * The longest expiry clients give their items (PHP: session.gc_maxlifetime). The binary
   * protocol cannot list keys, so a backend that came back is distrusted this long: by then
   * every item it lacks has been written again or has expired.
   */
  maxTtlSeconds: number;
}

/** Watching PHP session locks (src/locks/): what the proxy recognises as one, and how it shows them. */
export interface SessionLocksConfig {
  /** false: no key is treated as a lock; the lock metrics stay at 0 and `stats locks` lists nothing. */
  enabled: boolean;
  /** Lock keys besides both extensions' defaults: "<handler>:<prefix>*<suffix>" (src/locks/patterns.ts). */
  patterns: string[];
  /** `stats locks` shows session ids as they are, not their SHA-256. */
  showSessionIds: boolean;
}

/**
 * Where the backend list comes from instead of `backends`: DNS records, re-resolved
 * (src/discovery/). Every sidecar asking the same name gets the same list, sorted.
 */
export interface BackendsFrom {
  /** As written, normalized: "dns://memcached.default.svc.cluster.local:11211", "dnssrv://_memcache._tcp.example.com". */
  url: string;
  /** dns: the name's A and AAAA records, each address on `port`; dnssrv: its SRV records, each target on its own port. */
  scheme: 'dns' | 'dnssrv';
  /** The name asked, lower case, without a trailing dot. */
  name: string;
  /** The port of every address (dns); null for dnssrv, whose records carry theirs. */
  port: number | null;
}

/** How `backendsFrom` is resolved. */
export interface DiscoveryConfig {
  /** DNS servers asked, as node:dns setServers takes them ("10.96.0.10", "127.0.0.1:5353"); null: the system's. */
  servers: string[] | null;
  /** The answer's TTL is clamped to these bounds; SRV answers (whose TTL node:dns does not give) and failures wait the lower one. */
  minRefreshMs: number;
  maxRefreshMs: number;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Config {
  listen: HostPort;
  /**
   * Empty: the CLI starts LOCAL_BACKEND_COUNT memcached processes itself, unless
   * backendsFrom is set: then the CLI fills it with DNS's answer before the proxy starts.
   */
  backends: BackendConfig[];
  /** null: the backends are the list above. */
  backendsFrom: BackendsFrom | null;
  discovery: DiscoveryConfig;
  replicas: number;
  /** This sidecar's zone, one of the backends' zones: reads ask a member there first. null: none. */
  zone: string | null;
  /** null: no metrics endpoint. */
  metricsListen: HostPort | null;
  backend: BackendOptions;
  limits: Limits;
  /** false: `flush_all` is refused instead of being sent to every backend. */
  allowFlushAll: boolean;
  backendTls: BackendTlsConfig;
  clientTls: ClientTlsConfig;
  backendSasl: BackendSaslConfig;
  /** SASL required from clients (binary protocol only); username null: not asked. */
  clientSasl: SaslConfig;
  workers: number;
  /** On SIGTERM, how long open clients are still served before they are closed. */
  drainTimeoutMs: number;
  logLevel: LogLevel;
  sessionLocks: SessionLocksConfig;
  /** The config file as given on the command line, re-read on reload; null without --config. */
  configPath: string | null;
}
