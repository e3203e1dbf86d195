// Every default of the configuration, in one place (the limits' own are in
// src/protocol/limits.ts).

import { DEFAULT_BACKEND_OPTIONS as BACKEND_DEFAULTS } from '../backends/backend';
import {
  BACKEND_OPTION_NAMES,
  type BackendOptions,
  type BackendSaslConfig,
  type BackendTlsConfig,
  type ClientTlsConfig,
  type DiscoveryConfig,
  type HostPort,
  type LogLevel,
  type SaslConfig,
  type SessionLocksConfig,
} from './types';

export const DEFAULT_LISTEN: Readonly<HostPort> = Object.freeze({ host: '127.0.0.1', port: 11211 });
export const DEFAULT_METRICS_LISTEN: Readonly<HostPort> = Object.freeze({ host: '127.0.0.1', port: 9150 });

/** Replicas when none are given: this many, or every backend when there are fewer. */
export const DEFAULT_REPLICAS = 2;

/** memcached processes the CLI starts when no backend is configured. */
export const LOCAL_BACKEND_COUNT = 3;

export const DEFAULT_BACKEND_OPTIONS: Readonly<BackendOptions> = Object.freeze(
  Object.fromEntries(BACKEND_OPTION_NAMES.map((name) => [name, BACKEND_DEFAULTS[name]])) as BackendOptions,
);

export const DEFAULT_WEIGHT = 1;

/**
 * backendsFrom: the system's DNS servers; the answer's TTL clamped to 5..60 s. Kubernetes'
 * cluster DNS gives its records a TTL of 5 s (CoreDNS's default): a pod's new address is
 * seen within that.
 */
export const DEFAULT_DISCOVERY: Readonly<DiscoveryConfig> = Object.freeze({ servers: null, minRefreshMs: 5_000, maxRefreshMs: 60_000 });
export const DEFAULT_WORKERS = 1;
/** Kubernetes' default terminationGracePeriodSeconds: past it the pod is killed anyway. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;
export const DEFAULT_LOG_LEVEL: LogLevel = 'info';
export const DEFAULT_ALLOW_FLUSH_ALL = true;
/** Both extensions' session locks are recognised (their patterns: src/locks/patterns.ts); ids are shown hashed. */
export const DEFAULT_SESSION_LOCKS: Readonly<SessionLocksConfig> = Object.freeze({ enabled: true, patterns: [], showSessionIds: false });

// TLS is off unless asked for; once on, certificates are verified unless told otherwise.
export const DEFAULT_BACKEND_TLS: Readonly<BackendTlsConfig> = Object.freeze({
  enabled: false,
  caFile: null,
  certFile: null,
  keyFile: null,
  serverName: null,
  rejectUnauthorized: true,
});
export const DEFAULT_CLIENT_TLS: Readonly<ClientTlsConfig> = Object.freeze({ enabled: false, certFile: null, keyFile: null });

// SASL is off unless a username is given; its password then comes from these variables
// unless the config names another source.
export const DEFAULT_BACKEND_SASL_PASSWORD_ENV = 'REPLICACHED_BACKEND_SASL_PASSWORD';
export const DEFAULT_CLIENT_SASL_PASSWORD_ENV = 'REPLICACHED_CLIENT_SASL_PASSWORD';
/** PHP's default session.gc_maxlifetime. */
export const DEFAULT_SASL_MAX_TTL_SECONDS = 1440;
export const DEFAULT_CLIENT_SASL: Readonly<SaslConfig> = Object.freeze({ username: null, password: null, passwordFile: null, passwordEnv: null });
export const DEFAULT_BACKEND_SASL: Readonly<BackendSaslConfig> = Object.freeze({ ...DEFAULT_CLIENT_SASL, maxTtlSeconds: DEFAULT_SASL_MAX_TTL_SECONDS });
