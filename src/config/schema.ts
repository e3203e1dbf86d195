// The YAML config file. Field names are camelCase, as in the Config type
// (a snake_case spelling is refused with the right name suggested). Every
// field is optional; flags given on the command line override the file.
//
//   listen: 127.0.0.1:11211          # host:port; port 0 = any free port
//   backends:                        # leave out to start local memcached processes
//     - 10.0.0.1:11211               # "host:port", or a mapping:
//     - { address: 10.0.0.2:11211, weight: 1, local: true, zone: eu-west-1a }
//                                    # zone: its failure domain; every backend has one, or none
//   backendsFrom: dns://memcached.default.svc.cluster.local:11211   # instead of backends:
//                                    # A/AAAA records, each address on that port; or
//                                    # dnssrv://_memcache._tcp.example.com (SRV records)
//   discovery:                       # how backendsFrom is resolved
//     servers: [10.96.0.10]          # default: the system's (/etc/resolv.conf)
//     minRefreshMs: 5000             # the answer's TTL clamped to these bounds
//     maxRefreshMs: 60000
//   replicas: 2                      # 1..number of backends; default min(2, backends)
//   zone: eu-west-1a                 # this sidecar's zone: reads ask a member there first
//   metricsListen: 127.0.0.1:9150    # or "off"
//   backend:
//     connections: 1                 # persistent connections per backend (1 keeps each client's requests in order)
//     connectTimeoutMs: 300
//     requestTimeoutMs: 300
//     failureLimit: 2                # consecutive connection failures that mark a backend down
//     timeoutLimit: 1                # consecutive stalls (no reply for requestTimeoutMs) that mark it down
//     probeIntervalMs: 250           # probe period of a down backend
//     retryMaxMs: 5000               # reconnect backoff ceiling
//     upAfterProbes: 2               # good probes that bring it back
//   limits:                          # see src/protocol/limits.ts
//     maxKeyLength: 250
//     maxItemSize: 1048576
//     maxLineLength: 65536
//     maxKeysPerGet: 10000
//     maxInflightPerClient: 1024
//     maxClientOutputBytes: 4194304
//     maxClientConnections: 10000
//     clientIdleTimeoutMs: 0         # 0 = never
//   allowFlushAll: true
//   backendTls:                      # TLS to the backends (memcached -Z); off by default
//     enabled: true
//     caFile: /etc/replicached/ca.pem  # the backends' CA; default: Node's built-in CAs
//     certFile: client.pem           # optional client certificate, with keyFile
//     keyFile: client-key.pem
//     serverName: memcached.internal # checked against the certificates; default: each host
//     rejectUnauthorized: true       # false: encrypted but not authenticated
//   clientTls:                       # TLS for clients on the listen socket; off by default
//     enabled: true
//     certFile: server.pem
//     keyFile: server-key.pem
//   backendSasl:                     # SASL PLAIN to the backends (memcached -S): spoken to in the binary protocol
//     username: proxy
//     passwordFile: /run/secrets/memcached   # or password: "...", or passwordEnv: NAME;
//                                    # default: $REPLICACHED_BACKEND_SASL_PASSWORD
//     maxTtlSeconds: 1440            # longest item expiry (session.gc_maxlifetime), see README
//   clientSasl:                      # require SASL PLAIN from clients (binary protocol only)
//     username: app
//     passwordEnv: APP_PASSWORD      # default: $REPLICACHED_CLIENT_SASL_PASSWORD
//   workers: 1
//   drainTimeoutMs: 30000            # on SIGTERM, open clients are served until they close, at most this long
//   logLevel: info                   # fatal, error, warn, info, debug, trace
//   sessionLocks:                    # PHP session locks watched (metrics, `stats locks`)
//     enabled: true                  # false: no key is taken for a lock
//     patterns: ["memcached:myapp.lock.*"]  # more lock keys; both extensions' defaults are built in
//     showSessionIds: false          # true: `stats locks` shows ids, not their SHA-256
//
// Unknown fields are errors, so a misspelt setting never silently falls back to its default;
// so is a file with no settings at all (empty, or only comments).

import { parseDocument } from 'yaml';
import type { Limits } from '../protocol/limits';
import { formatHostPort, type Parsed } from './address';
import {
  BACKEND_OPTION_RANGES,
  LIMIT_RANGES,
  SASL_MAX_TTL_RANGE,
  REPLICAS_RANGE,
  WEIGHT_RANGE,
  WORKERS_RANGE,
  DRAIN_TIMEOUT_RANGE,
  REFRESH_RANGE,
  checkBackendsFrom,
  checkBoolean,
  checkDnsServers,
  checkHostPort,
  checkInteger,
  checkLockPatterns,
  checkLogLevel,
  checkMetricsListen,
  checkSecret,
  checkText,
  checkZone,
  show,
  zoneMismatch,
  type Range,
} from './checks';
import { DEFAULT_WEIGHT } from './defaults';
import { ConfigError } from './errors';
import { emptyLayer, type ConfigLayer } from './layer';
import type { BackendConfig, BackendOptions, SaslConfig } from './types';

const TOP_FIELDS = [
  'listen',
  'backends',
  'backendsFrom',
  'discovery',
  'replicas',
  'zone',
  'metricsListen',
  'backend',
  'limits',
  'allowFlushAll',
  'backendTls',
  'clientTls',
  'backendSasl',
  'clientSasl',
  'workers',
  'drainTimeoutMs',
  'logLevel',
  'sessionLocks',
] as const;
const BACKEND_ENTRY_FIELDS = ['address', 'weight', 'local', 'zone'] as const;
const DISCOVERY_FIELDS = ['servers', 'minRefreshMs', 'maxRefreshMs'] as const;
const BACKEND_TLS_FIELDS = ['enabled', 'caFile', 'certFile', 'keyFile', 'serverName', 'rejectUnauthorized'] as const;
const CLIENT_TLS_FIELDS = ['enabled', 'certFile', 'keyFile'] as const;
const SASL_FIELDS = ['username', 'password', 'passwordFile', 'passwordEnv'] as const;
const BACKEND_SASL_FIELDS = [...SASL_FIELDS, 'maxTtlSeconds'] as const;
const SESSION_LOCKS_FIELDS = ['enabled', 'patterns', 'showSessionIds'] as const;

type Mapping = Record<string, unknown>;

/** Reads the file's settings, each checked on its own. Throws ConfigError naming `source` and the field. */
export function parseConfigText(yamlText: string, source: string): ConfigLayer {
  const doc = parseDocument(yamlText, { uniqueKeys: true });
  const syntax = doc.errors[0];
  if (syntax !== undefined) {
    const pos = syntax.linePos?.[0];
    // The message ends with " at line L, column C:" and a snippet; the position goes in the field instead.
    const problem = syntax.message.split('\n')[0].replace(/ at line \d+, column \d+:$/, '');
    throw new ConfigError(pos ? `line ${pos.line}, column ${pos.col}` : 'YAML', problem, source);
  }
  let root: unknown;
  try {
    root = doc.toJS(); // throws on alias expansion past yaml's maxAliasCount (a "billion laughs" file)
  } catch (err) {
    throw new ConfigError('YAML', err instanceof Error ? err.message : String(err), source);
  }
  // An empty file is a mistake (a mount of the wrong file, an unsaved edit), not a request for
  // the demo's local memcached: leaving out --config is how to ask for those.
  if (root === null || root === undefined) {
    throw new ConfigError('top level', 'the file has no settings; list at least the backends (or leave out --config to try replicached with local memcached)', source);
  }
  const layer = emptyLayer(source);
  if (!isMapping(root)) throw new ConfigError('top level', `must be a mapping of settings, got ${show(root)}`, source);

  const fail = (field: string, problem: string): never => {
    throw new ConfigError(field, problem, source);
  };
  const take = <T>(field: string, parsed: Parsed<T>): T => (parsed.ok ? parsed.value : fail(field, parsed.problem));
  const int = (field: string, v: unknown, range: Range): number => take(field, checkInteger(v, false, range));

  const top = fieldsOf(root, '', TOP_FIELDS, fail);
  if (top.listen !== undefined) layer.listen = take('listen', checkHostPort(top.listen, 0));
  if (top.backends !== undefined) layer.backends = parseBackends(top.backends, take, fail);
  if (top.backendsFrom !== undefined) {
    if (top.backends !== undefined) fail('backendsFrom', 'cannot be given with backends: list the backends, or name where DNS lists them, not both');
    layer.backendsFrom = take('backendsFrom', checkBackendsFrom(top.backendsFrom));
  }
  if (top.discovery !== undefined) {
    const f = fieldsOf(top.discovery, 'discovery', DISCOVERY_FIELDS, fail);
    if (f.servers !== undefined) layer.discovery.servers = take('discovery.servers', checkDnsServers(f.servers, false));
    if (f.minRefreshMs !== undefined) layer.discovery.minRefreshMs = int('discovery.minRefreshMs', f.minRefreshMs, REFRESH_RANGE);
    if (f.maxRefreshMs !== undefined) layer.discovery.maxRefreshMs = int('discovery.maxRefreshMs', f.maxRefreshMs, REFRESH_RANGE);
  }
  if (top.replicas !== undefined) layer.replicas = int('replicas', top.replicas, REPLICAS_RANGE);
  if (top.zone !== undefined) layer.zone = take('zone', checkZone(top.zone));
  if (top.metricsListen !== undefined) layer.metricsListen = take('metricsListen', checkMetricsListen(top.metricsListen));
  if (top.backend !== undefined) {
    const names = Object.keys(BACKEND_OPTION_RANGES) as (keyof BackendOptions)[];
    const fields = fieldsOf(top.backend, 'backend', names, fail);
    for (const name of names) {
      const v = fields[name];
      if (v !== undefined) layer.backend[name] = int(`backend.${name}`, v, BACKEND_OPTION_RANGES[name]);
    }
  }
  if (top.limits !== undefined) {
    const names = Object.keys(LIMIT_RANGES) as (keyof Limits)[];
    const fields = fieldsOf(top.limits, 'limits', names, fail);
    for (const name of names) {
      const v = fields[name];
      if (v !== undefined) layer.limits[name] = int(`limits.${name}`, v, LIMIT_RANGES[name]);
    }
  }
  if (top.allowFlushAll !== undefined) layer.allowFlushAll = take('allowFlushAll', checkBoolean(top.allowFlushAll));
  if (top.backendTls !== undefined) {
    const f = fieldsOf(top.backendTls, 'backendTls', BACKEND_TLS_FIELDS, fail);
    const tls = layer.backendTls;
    if (f.enabled !== undefined) tls.enabled = take('backendTls.enabled', checkBoolean(f.enabled));
    if (f.caFile !== undefined) tls.caFile = take('backendTls.caFile', checkText(f.caFile, 'a file path'));
    if (f.certFile !== undefined) tls.certFile = take('backendTls.certFile', checkText(f.certFile, 'a file path'));
    if (f.keyFile !== undefined) tls.keyFile = take('backendTls.keyFile', checkText(f.keyFile, 'a file path'));
    if (f.serverName !== undefined) tls.serverName = take('backendTls.serverName', checkText(f.serverName, 'a host name'));
    if (f.rejectUnauthorized !== undefined) {
      tls.rejectUnauthorized = take('backendTls.rejectUnauthorized', checkBoolean(f.rejectUnauthorized));
    }
  }
  if (top.clientTls !== undefined) {
    const f = fieldsOf(top.clientTls, 'clientTls', CLIENT_TLS_FIELDS, fail);
    const tls = layer.clientTls;
    if (f.enabled !== undefined) tls.enabled = take('clientTls.enabled', checkBoolean(f.enabled));
    if (f.certFile !== undefined) tls.certFile = take('clientTls.certFile', checkText(f.certFile, 'a file path'));
    if (f.keyFile !== undefined) tls.keyFile = take('clientTls.keyFile', checkText(f.keyFile, 'a file path'));
  }
  if (top.backendSasl !== undefined) {
    const f = fieldsOf(top.backendSasl, 'backendSasl', BACKEND_SASL_FIELDS, fail);
    Object.assign(layer.backendSasl, saslFields(f, 'backendSasl', take));
    if (f.maxTtlSeconds !== undefined) layer.backendSasl.maxTtlSeconds = int('backendSasl.maxTtlSeconds', f.maxTtlSeconds, SASL_MAX_TTL_RANGE);
  }
  if (top.clientSasl !== undefined) {
    Object.assign(layer.clientSasl, saslFields(fieldsOf(top.clientSasl, 'clientSasl', SASL_FIELDS, fail), 'clientSasl', take));
  }
  if (top.workers !== undefined) layer.workers = int('workers', top.workers, WORKERS_RANGE);
  if (top.drainTimeoutMs !== undefined) layer.drainTimeoutMs = int('drainTimeoutMs', top.drainTimeoutMs, DRAIN_TIMEOUT_RANGE);
  if (top.logLevel !== undefined) layer.logLevel = take('logLevel', checkLogLevel(top.logLevel, false));
  if (top.sessionLocks !== undefined) {
    const f = fieldsOf(top.sessionLocks, 'sessionLocks', SESSION_LOCKS_FIELDS, fail);
    const locks = layer.sessionLocks;
    if (f.enabled !== undefined) locks.enabled = take('sessionLocks.enabled', checkBoolean(f.enabled));
    if (f.patterns !== undefined) locks.patterns = [...take('sessionLocks.patterns', checkLockPatterns(f.patterns))];
    if (f.showSessionIds !== undefined) locks.showSessionIds = take('sessionLocks.showSessionIds', checkBoolean(f.showSessionIds));
  }
  return layer;
}

/** The credential fields of backendSasl or clientSasl; the password's value is never quoted in an error. */
function saslFields(
  f: Partial<Record<(typeof SASL_FIELDS)[number], unknown>>,
  path: string,
  take: <T>(field: string, parsed: Parsed<T>) => T,
): Partial<SaslConfig> {
  const out: Partial<SaslConfig> = {};
  if (f.username !== undefined) out.username = take(`${path}.username`, checkText(f.username, 'a user name'));
  if (f.password !== undefined) out.password = take(`${path}.password`, checkSecret(f.password));
  if (f.passwordFile !== undefined) out.passwordFile = take(`${path}.passwordFile`, checkText(f.passwordFile, 'a file path'));
  if (f.passwordEnv !== undefined) out.passwordEnv = take(`${path}.passwordEnv`, checkText(f.passwordEnv, 'an environment variable name'));
  return out;
}

function parseBackends(
  v: unknown,
  take: <T>(field: string, parsed: Parsed<T>) => T,
  fail: (field: string, problem: string) => never,
): BackendConfig[] {
  if (!Array.isArray(v)) return fail('backends', `must be a list of "host:port" or {address, weight, local, zone}, got ${show(v)}`);
  if (v.length === 0) return fail('backends', 'must list at least one backend (leave the field out to start local memcached processes)');
  const seen = new Map<string, number>();
  const backends = v.map((entry: unknown, i): BackendConfig => {
    const path = `backends[${i}]`;
    let addressField = path;
    let fields: Partial<Record<(typeof BACKEND_ENTRY_FIELDS)[number], unknown>> = { address: entry };
    if (isMapping(entry)) {
      fields = fieldsOf(entry, path, BACKEND_ENTRY_FIELDS, fail);
      addressField = `${path}.address`;
      if (fields.address === undefined) fail(addressField, 'is required');
    }
    const hp = take(addressField, checkHostPort(fields.address, 1));
    const address = formatHostPort(hp);
    const earlier = seen.get(address);
    if (earlier !== undefined) fail(addressField, `duplicate of backends[${earlier}] (${JSON.stringify(address)})`);
    seen.set(address, i);
    return {
      address,
      host: hp.host,
      port: hp.port,
      weight: fields.weight === undefined ? DEFAULT_WEIGHT : take(`${path}.weight`, checkInteger(fields.weight, false, WEIGHT_RANGE)),
      local: fields.local === undefined ? false : take(`${path}.local`, checkBoolean(fields.local)),
      zone: fields.zone === undefined ? null : take(`${path}.zone`, checkZone(fields.zone)),
    };
  });
  const odd = zoneMismatch(backends);
  if (odd >= 0) {
    const [withZone, without] = backends[0].zone !== null ? [0, odd] : [odd, 0];
    fail(`backends[${without}]`, `needs a zone: backends[${withZone}] has one (${JSON.stringify(backends[withZone].zone)}), and zones are given to every backend or to none`);
  }
  return backends;
}

/** The mapping's fields, refusing any not in `known` (with the camelCase name when it was written in snake_case). */
function fieldsOf<K extends string>(
  v: unknown,
  path: string,
  known: readonly K[],
  fail: (field: string, problem: string) => never,
): Partial<Record<K, unknown>> {
  if (!isMapping(v)) return fail(path, `must be a mapping, got ${show(v)}`);
  for (const key of Object.keys(v)) {
    if ((known as readonly string[]).includes(key)) continue;
    const camel = key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
    const hint = (known as readonly string[]).includes(camel) ? ` (did you mean "${camel}"?)` : ` (known: ${known.join(', ')})`;
    fail(path === '' ? key : `${path}.${key}`, `unknown field${hint}`);
  }
  return v as Partial<Record<K, unknown>>;
}

function isMapping(v: unknown): v is Mapping {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
