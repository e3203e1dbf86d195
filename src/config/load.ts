// From the command line and the config file to a Config: the file's settings,
// then the flags over them, then the defaults for whatever neither gave, then
// the checks that span fields. A reload runs loadConfig again with the same
// RunArgs: the file is re-read and the flags still win.

import { readFileSync } from 'node:fs';
import { DEFAULT_LIMITS } from '../protocol/limits';
import {
  DEFAULT_ALLOW_FLUSH_ALL,
  DEFAULT_BACKEND_OPTIONS,
  DEFAULT_BACKEND_SASL,
  DEFAULT_BACKEND_SASL_PASSWORD_ENV,
  DEFAULT_CLIENT_SASL,
  DEFAULT_CLIENT_SASL_PASSWORD_ENV,
  DEFAULT_BACKEND_TLS,
  DEFAULT_CLIENT_TLS,
  DEFAULT_DISCOVERY,
  DEFAULT_DRAIN_TIMEOUT_MS,
  DEFAULT_LISTEN,
  DEFAULT_LOG_LEVEL,
  DEFAULT_METRICS_LISTEN,
  DEFAULT_REPLICAS,
  DEFAULT_SESSION_LOCKS,
  DEFAULT_WORKERS,
  LOCAL_BACKEND_COUNT,
} from './defaults';
import { ConfigError } from './errors';
import type { RunArgs } from './flags';
import type { ConfigLayer } from './layer';
import { parseConfigText } from './schema';
import type { BackendSaslConfig, BackendTlsConfig, ClientTlsConfig, Config, DiscoveryConfig, SaslConfig } from './types';

export type ReadFile = (path: string) => string;

const readUtf8: ReadFile = (path) => readFileSync(path, 'utf8');

/** The Config for these arguments, reading --config through `readFile`. Throws ConfigError. */
export function loadConfig(args: RunArgs, readFile: ReadFile = readUtf8): Config {
  let file: ConfigLayer | null = null;
  if (args.configPath !== null) {
    let text: string;
    try {
      text = readFile(args.configPath);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new ConfigError('--config', `cannot read ${JSON.stringify(args.configPath)}: ${reason}`);
    }
    file = parseConfigText(text, args.configPath);
  }
  return resolveConfig(file, args.flags, args.configPath);
}

/** Merges the layers (flags over file), fills in defaults, checks replicas against the backends. */
export function resolveConfig(file: ConfigLayer | null, flags: ConfigLayer, configPath: string | null): Config {
  const pick = <K extends 'listen' | 'replicas' | 'zone' | 'metricsListen' | 'allowFlushAll' | 'workers' | 'drainTimeoutMs' | 'logLevel'>(
    key: K,
  ): { value: ConfigLayer[K]; layer: ConfigLayer } | undefined => {
    if (flags[key] !== undefined) return { value: flags[key], layer: flags };
    if (file !== null && file[key] !== undefined) return { value: file[key], layer: file };
    return undefined;
  };

  // backends and backendsFrom are two ways to give one setting: a flag for either replaces the file's either.
  const listLayer = flags.backends !== undefined || flags.backendsFrom !== undefined ? flags : file;
  const backends = listLayer?.backends ?? [];
  const backendsFrom = listLayer?.backendsFrom ?? null;
  const replicasGiven = pick('replicas');
  const available = backends.length > 0 ? backends.length : LOCAL_BACKEND_COUNT;
  // From DNS, the number of backends is known only from each answer: one with fewer than replicas is not used.
  let replicas = backendsFrom === null ? Math.min(DEFAULT_REPLICAS, available) : DEFAULT_REPLICAS;
  if (replicasGiven?.value !== undefined) {
    replicas = replicasGiven.value;
    if (replicas > available && backendsFrom === null) {
      const what =
        backends.length > 0
          ? 'the number of backends'
          : 'the number of local memcached processes started when no backends are given';
      const { source } = replicasGiven.layer;
      throw new ConfigError(
        source === null ? '--replicas' : 'replicas',
        `must be an integer between 1 and ${available} (${what}), got ${JSON.stringify(String(replicas))}`,
        source,
      );
    }
  }

  const discovery: DiscoveryConfig = { ...DEFAULT_DISCOVERY, ...file?.discovery, ...flags.discovery };
  if (discovery.maxRefreshMs < discovery.minRefreshMs) {
    const field = file?.discovery.maxRefreshMs !== undefined ? 'discovery.maxRefreshMs' : 'discovery.minRefreshMs';
    throw new ConfigError(field, `maxRefreshMs (${discovery.maxRefreshMs}) must not be below minRefreshMs (${discovery.minRefreshMs})`, file?.source ?? null);
  }

  const zone = pick('zone');
  if (zone?.value !== undefined && !backends.some((b) => b.zone === zone.value)) {
    const zones = [...new Set(backends.flatMap((b) => (b.zone === null ? [] : [b.zone])))];
    const { source } = zone.layer;
    const problem =
      zones.length === 0
        ? `is ${JSON.stringify(zone.value)}, but no backend has a zone (give every backend one: {address, zone} in the file, host:port@zone in --backends)`
        : `must be one of the backends' zones (${zones.join(', ')}), got ${JSON.stringify(zone.value)}`;
    throw new ConfigError(source === null ? '--zone' : 'zone', problem, source);
  }

  const metricsListen = pick('metricsListen');
  const backendTls: BackendTlsConfig = { ...DEFAULT_BACKEND_TLS, ...file?.backendTls, ...flags.backendTls };
  const clientTls: ClientTlsConfig = { ...DEFAULT_CLIENT_TLS, ...file?.clientTls, ...flags.clientTls };
  checkTls(backendTls, clientTls, file, flags);
  const backendSasl: BackendSaslConfig = {
    ...DEFAULT_BACKEND_SASL,
    ...file?.backendSasl,
    ...flags.backendSasl,
    ...saslPassword('backendSasl', '--backend-sasl', file?.backendSasl ?? {}, flags.backendSasl, DEFAULT_BACKEND_SASL_PASSWORD_ENV, file),
  };
  const clientSasl: SaslConfig = {
    ...DEFAULT_CLIENT_SASL,
    ...file?.clientSasl,
    ...flags.clientSasl,
    ...saslPassword('clientSasl', '--client-sasl', file?.clientSasl ?? {}, flags.clientSasl, DEFAULT_CLIENT_SASL_PASSWORD_ENV, file),
  };
  return {
    listen: { ...(pick('listen')?.value ?? DEFAULT_LISTEN) },
    backends: backends.map((b) => ({ ...b })),
    backendsFrom: backendsFrom === null ? null : { ...backendsFrom },
    discovery,
    replicas,
    zone: zone?.value ?? null,
    metricsListen: metricsListen === undefined ? { ...DEFAULT_METRICS_LISTEN } : metricsListen.value ?? null,
    backend: { ...DEFAULT_BACKEND_OPTIONS, ...file?.backend, ...flags.backend },
    limits: { ...DEFAULT_LIMITS, ...file?.limits, ...flags.limits },
    allowFlushAll: pick('allowFlushAll')?.value ?? DEFAULT_ALLOW_FLUSH_ALL,
    backendTls,
    clientTls,
    backendSasl,
    clientSasl,
    workers: pick('workers')?.value ?? DEFAULT_WORKERS,
    drainTimeoutMs: pick('drainTimeoutMs')?.value ?? DEFAULT_DRAIN_TIMEOUT_MS,
    logLevel: pick('logLevel')?.value ?? DEFAULT_LOG_LEVEL,
    sessionLocks: { ...DEFAULT_SESSION_LOCKS, ...file?.sessionLocks, ...flags.sessionLocks },
    configPath,
  };
}

/** TLS settings that only make sense together; the error names the flag when a flag set the field. */
function checkTls(backend: BackendTlsConfig, client: ClientTlsConfig, file: ConfigLayer | null, flags: ConfigLayer): void {
  const fileSource = file?.source ?? null;
  const fail = (fileField: string, flag: string, fromFlag: boolean, problem: string): never => {
    throw fromFlag ? new ConfigError(flag, problem) : new ConfigError(fileField, problem, fileSource);
  };
  const backendFromFlags = Object.keys(flags.backendTls).length > 0;
  if ((backend.certFile === null) !== (backend.keyFile === null)) {
    const field = backend.certFile === null ? 'certFile' : 'keyFile';
    const flag = backend.certFile === null ? '--backend-tls-cert' : '--backend-tls-key';
    fail(`backendTls.${field}`, flag, backendFromFlags, 'a client certificate needs both certFile and keyFile');
  }
  const anyBackendTlsSetting = backend.caFile !== null || backend.certFile !== null || backend.serverName !== null || !backend.rejectUnauthorized;
  // `enabled: false` written out turns TLS off with its settings kept; left out, it is a mistake.
  const turnedOff = flags.backendTls.enabled === false || file?.backendTls.enabled === false;
  if (anyBackendTlsSetting && !backend.enabled && !turnedOff) {
    fail('backendTls.enabled', '--backend-tls', backendFromFlags, 'must be true (or --backend-tls given) when other backend TLS settings are');
  }
  const someClientFile = client.certFile !== null || client.keyFile !== null;
  if ((client.enabled || someClientFile) && (client.certFile === null || client.keyFile === null)) {
    const missing = client.certFile === null ? 'certFile' : 'keyFile';
    const flag = missing === 'certFile' ? '--tls-cert' : '--tls-key';
    fail(`clientTls.${missing}`, flag, Object.keys(flags.clientTls).length > 0, 'client TLS needs both a certificate and its key');
  }
}

const PASSWORD_SOURCES = ['password', 'passwordFile', 'passwordEnv'] as const;

/**
 * Where the password comes from: the flags' source if they give one (it replaces the file's),
 * else the file's; at most one in each; none given, the default variable. A source without a
 * username is refused: SASL would silently stay off.
 */
function saslPassword(
  field: string,
  flagPrefix: string,
  fromFile: Partial<SaslConfig>,
  fromFlags: Partial<SaslConfig>,
  defaultEnv: string,
  file: ConfigLayer | null,
): Pick<SaslConfig, (typeof PASSWORD_SOURCES)[number]> {
  const given = (layer: Partial<SaslConfig>) => PASSWORD_SOURCES.filter((name) => layer[name] !== undefined && layer[name] !== null);
  const flagSources = given(fromFlags);
  const fileSources = given(fromFile);
  if (fileSources.length > 1) {
    throw new ConfigError(`${field}.${fileSources[1]}`, `only one of ${PASSWORD_SOURCES.join(', ')} may be given`, file?.source ?? null);
  }
  if (flagSources.length > 1) throw new ConfigError(`${flagPrefix}-password-env`, `only one of ${flagPrefix}-password-file and ${flagPrefix}-password-env may be given`);
  const username = fromFlags.username ?? fromFile.username ?? null;
  const [layer, sources] = flagSources.length > 0 ? [fromFlags, flagSources] : [fromFile, fileSources];
  if (username === null) {
    if (sources.length > 0) {
      if (layer === fromFlags) throw new ConfigError(`${flagPrefix}-username`, 'is needed with a SASL password');
      throw new ConfigError(`${field}.username`, 'is needed with a SASL password', file?.source ?? null);
    }
    return { password: null, passwordFile: null, passwordEnv: null };
  }
  return {
    password: layer.password ?? null,
    passwordFile: layer.passwordFile ?? null,
    passwordEnv: layer.passwordEnv ?? (sources.length === 0 ? defaultEnv : null),
  };
}
