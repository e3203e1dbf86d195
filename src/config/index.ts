// The configuration module's public face: see types.ts for the Config it
// produces, schema.ts for the file format, flags.ts for the command line.

export type { BackendConfig, BackendsFrom, BackendOptions, DiscoveryConfig, BackendSaslConfig, BackendTlsConfig, ClientTlsConfig, Config, HostPort, LogLevel, SaslConfig, SessionLocksConfig } from './types';
export { LOG_LEVELS } from './types';
export { ConfigError } from './errors';
export { parseArgs, HELP_TEXT, type ParsedArgs, type RunArgs } from './flags';
export { parseConfigText } from './schema';
export { loadConfig, resolveConfig, type ReadFile } from './load';
export type { ConfigLayer } from './layer';
export { formatHostPort, parseHostPort } from './address';
export {
  DEFAULT_BACKEND_OPTIONS,
  DEFAULT_LISTEN,
  DEFAULT_METRICS_LISTEN,
  DEFAULT_REPLICAS,
  LOCAL_BACKEND_COUNT,
} from './defaults';
