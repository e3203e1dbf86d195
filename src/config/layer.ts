// One source of settings (the config file, or the command line), each field
// already checked on its own. load.ts merges the layers (flags over file),
// fills in defaults and checks what spans fields (replicas vs. backends).

import type { Limits } from '../protocol/limits';
import type { BackendConfig, BackendsFrom, BackendOptions, DiscoveryConfig, BackendSaslConfig, BackendTlsConfig, ClientTlsConfig, HostPort, LogLevel, SaslConfig, SessionLocksConfig } from './types';

export interface ConfigLayer {
  /** The config file the settings came from; null for the command line. */
  source: string | null;
  listen?: HostPort;
  backends?: BackendConfig[];
  backendsFrom?: BackendsFrom;
  discovery: Partial<DiscoveryConfig>;
  replicas?: number;
  zone?: string;
  metricsListen?: HostPort | null;
  backend: Partial<BackendOptions>;
  limits: Partial<Limits>;
  allowFlushAll?: boolean;
  backendTls: Partial<BackendTlsConfig>;
  clientTls: Partial<ClientTlsConfig>;
  backendSasl: Partial<BackendSaslConfig>;
  clientSasl: Partial<SaslConfig>;
  workers?: number;
  drainTimeoutMs?: number;
  logLevel?: LogLevel;
  sessionLocks: Partial<SessionLocksConfig>;
}

export function emptyLayer(source: string | null): ConfigLayer {
  return { source, backend: {}, discovery: {}, limits: {}, backendTls: {}, clientTls: {}, backendSasl: {}, clientSasl: {}, sessionLocks: {} };
}
