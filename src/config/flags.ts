// The command line: `--flag value` or `--flag=value`, each flag at most once.
// One table drives both parsing and --help, so every flag is documented.

import type { Parsed } from './address';
import { formatHostPort } from './address';
import {
  BACKEND_OPTION_RANGES,
  LIMIT_RANGES,
  REPLICAS_RANGE,
  SASL_MAX_TTL_RANGE,
  WORKERS_RANGE,
  DRAIN_TIMEOUT_RANGE,
  checkBackendsFrom,
  checkDnsServers,
  checkHostPort,
  checkInteger,
  checkLockPatterns,
  checkLogLevel,
  checkMetricsListen,
  checkText,
  checkZone,
  describeRange,
  zoneMismatch,
} from './checks';
import {
  DEFAULT_BACKEND_OPTIONS,
  DEFAULT_BACKEND_SASL_PASSWORD_ENV,
  DEFAULT_CLIENT_SASL_PASSWORD_ENV,
  DEFAULT_SASL_MAX_TTL_SECONDS,
  DEFAULT_DRAIN_TIMEOUT_MS,
  DEFAULT_LISTEN,
  DEFAULT_LOG_LEVEL,
  DEFAULT_METRICS_LISTEN,
  DEFAULT_REPLICAS,
  DEFAULT_WEIGHT,
  DEFAULT_WORKERS,
  LOCAL_BACKEND_COUNT,
} from './defaults';
import { ConfigError } from './errors';
import { emptyLayer, type ConfigLayer } from './layer';
import { DEFAULT_LIMITS } from '../protocol/limits';
import { LOG_LEVELS, type BackendConfig } from './types';

export interface RunArgs {
  kind: 'run';
  /** The settings given as flags; they override the config file's. */
  flags: ConfigLayer;
  /** --config, as typed. */
  configPath: string | null;
}
export type ParsedArgs = { kind: 'help' } | { kind: 'version' } | RunArgs;

interface Flag {
  name: string;
  /** The value's placeholder in --help; absent for a switch. */
  arg?: string;
  help: string;
  /** Records the value in the layer, or returns the problem. */
  set(layer: ConfigLayer, value: string): Parsed<void>;
}

const done: Parsed<void> = { ok: true, value: undefined };

function into<T>(parsed: Parsed<T>, store: (v: T) => void): Parsed<void> {
  if (!parsed.ok) return parsed;
  store(parsed.value);
  return done;
}

const FLAGS: readonly Flag[] = [
  {
    name: '--listen',
    arg: '<host:port>',
    help: `address clients connect to (default ${formatHostPort(DEFAULT_LISTEN)}; port 0 = any free port)`,
    set: (l, v) => into(checkHostPort(v, 0), (hp) => (l.listen = hp)),
  },
  {
    name: '--backends',
    arg: '<host:port[@zone],...>',
    help: `memcached servers, comma-separated, each with its zone or none with one (default: start ${LOCAL_BACKEND_COUNT} local memcached processes)`,
    set: (l, v) => into(parseBackendList(v), (b) => (l.backends = b)),
  },
  {
    name: '--backends-from',
    arg: '<url>',
    help: 'instead of --backends: dns://<name>:<port> (the A/AAAA records of name, each address on port) or dnssrv://<name> (its SRV records), re-resolved at their TTL',
    set: (l, v) => into(checkBackendsFrom(v), (from) => (l.backendsFrom = from)),
  },
  {
    name: '--dns-servers',
    arg: '<ip[:port],...>',
    help: "DNS servers --backends-from asks (default: the system's)",
    set: (l, v) => into(checkDnsServers(v, true), (servers) => (l.discovery.servers = servers)),
  },
  {
    name: '--zone',
    arg: '<zone>',
    help: "this sidecar's zone, one of the backends' zones: reads ask a member there first (default: none)",
    set: (l, v) => into(checkZone(v), (z) => (l.zone = z)),
  },
  {
    name: '--replicas',
    arg: '<n>',
    help: `copies of every item, 1..number of backends (default min(${DEFAULT_REPLICAS}, number of backends))`,
    set: (l, v) => into(checkInteger(v, true, REPLICAS_RANGE), (n) => (l.replicas = n)),
  },
  {
    name: '--metrics-listen',
    arg: '<host:port|off>',
    help: `Prometheus /metrics, /healthz, /readyz (default ${formatHostPort(DEFAULT_METRICS_LISTEN)})`,
    set: (l, v) => into(checkMetricsListen(v), (hp) => (l.metricsListen = hp)),
  },
  {
    name: '--config',
    arg: '<file>',
    help: 'YAML config file (camelCase fields); flags override it; re-read on SIGHUP',
    set: () => done, // handled by parseArgs: it is not a setting
  },
  {
    name: '--connections',
    arg: '<n>',
    help: `persistent connections per backend (default ${DEFAULT_BACKEND_OPTIONS.connections})`,
    set: (l, v) => into(checkInteger(v, true, BACKEND_OPTION_RANGES.connections), (n) => (l.backend.connections = n)),
  },
  {
    name: '--connect-timeout',
    arg: '<ms>',
    help: `backend connect timeout in milliseconds (default ${DEFAULT_BACKEND_OPTIONS.connectTimeoutMs})`,
    set: (l, v) =>
      into(checkInteger(v, true, BACKEND_OPTION_RANGES.connectTimeoutMs), (n) => (l.backend.connectTimeoutMs = n)),
  },
  {
    name: '--request-timeout',
    arg: '<ms>',
    help: `backend request timeout in milliseconds; a request times out only when the backend also sent nothing for this long (default ${DEFAULT_BACKEND_OPTIONS.requestTimeoutMs})`,
    set: (l, v) =>
      into(checkInteger(v, true, BACKEND_OPTION_RANGES.requestTimeoutMs), (n) => (l.backend.requestTimeoutMs = n)),
  },
  {
    name: '--failure-limit',
    arg: '<n>',
    help: `consecutive backend connection failures (refused, reset, closed) that eject it (default ${DEFAULT_BACKEND_OPTIONS.failureLimit})`,
    set: (l, v) => into(checkInteger(v, true, BACKEND_OPTION_RANGES.failureLimit), (n) => (l.backend.failureLimit = n)),
  },
  {
    name: '--timeout-limit',
    arg: '<n>',
    help: `consecutive backend stalls (nothing received for the request timeout) that eject it (default ${DEFAULT_BACKEND_OPTIONS.timeoutLimit})`,
    set: (l, v) => into(checkInteger(v, true, BACKEND_OPTION_RANGES.timeoutLimit), (n) => (l.backend.timeoutLimit = n)),
  },
  {
    name: '--item-size-max',
    arg: '<bytes>',
    help: `largest value a client may store, suffix k or m allowed (default ${DEFAULT_LIMITS.maxItemSize / 1024 / 1024}m)`,
    set: (l, v) => into(parseSize(v), (n) => (l.limits.maxItemSize = n)),
  },
  {
    name: '--max-connections',
    arg: '<n>',
    help: `client connections open at once (default ${DEFAULT_LIMITS.maxClientConnections})`,
    set: (l, v) =>
      into(checkInteger(v, true, LIMIT_RANGES.maxClientConnections), (n) => (l.limits.maxClientConnections = n)),
  },
  {
    name: '--workers',
    arg: '<n>',
    help: `worker processes (default ${DEFAULT_WORKERS})`,
    set: (l, v) => into(checkInteger(v, true, WORKERS_RANGE), (n) => (l.workers = n)),
  },
  {
    name: '--drain-timeout',
    arg: '<ms>',
    help: `on SIGTERM, serve open clients until they close, at most this long (default ${DEFAULT_DRAIN_TIMEOUT_MS})`,
    set: (l, v) => into(checkInteger(v, true, DRAIN_TIMEOUT_RANGE), (n) => (l.drainTimeoutMs = n)),
  },
  {
    name: '--log-level',
    arg: '<level>',
    help: `${LOG_LEVELS.join('|')} (default ${DEFAULT_LOG_LEVEL})`,
    set: (l, v) => into(checkLogLevel(v, true), (level) => (l.logLevel = level)),
  },
  {
    name: '--no-flush-all',
    help: 'refuse flush_all instead of sending it to every backend',
    set: (l) => {
      l.allowFlushAll = false;
      return done;
    },
  },
  {
    name: '--backend-tls',
    help: 'TLS to the backends (memcached -Z), certificates verified',
    set: (l) => {
      l.backendTls.enabled = true;
      return done;
    },
  },
  {
    name: '--backend-tls-ca',
    arg: '<file>',
    help: "PEM CA bundle for the backends' certificates (default: Node's built-in CAs)",
    set: (l, v) => into(checkText(v, 'a file path'), (f) => (l.backendTls.caFile = f)),
  },
  {
    name: '--backend-tls-cert',
    arg: '<file>',
    help: 'client certificate (PEM) for backends that ask for one; with --backend-tls-key',
    set: (l, v) => into(checkText(v, 'a file path'), (f) => (l.backendTls.certFile = f)),
  },
  {
    name: '--backend-tls-key',
    arg: '<file>',
    help: 'private key (PEM) of --backend-tls-cert',
    set: (l, v) => into(checkText(v, 'a file path'), (f) => (l.backendTls.keyFile = f)),
  },
  {
    name: '--backend-tls-server-name',
    arg: '<name>',
    help: "name the backends' certificates are checked against (default: each backend's host)",
    set: (l, v) => into(checkText(v, 'a host name'), (n) => (l.backendTls.serverName = n)),
  },
  {
    name: '--backend-tls-insecure',
    help: "do not verify the backends' certificates (encrypted, not authenticated)",
    set: (l) => {
      l.backendTls.rejectUnauthorized = false;
      return done;
    },
  },
  {
    name: '--tls-cert',
    arg: '<file>',
    help: 'serve clients over TLS with this certificate (PEM); with --tls-key',
    set: (l, v) =>
      into(checkText(v, 'a file path'), (f) => {
        l.clientTls.enabled = true;
        l.clientTls.certFile = f;
      }),
  },
  {
    name: '--tls-key',
    arg: '<file>',
    help: 'private key (PEM) of --tls-cert',
    set: (l, v) => into(checkText(v, 'a file path'), (f) => (l.clientTls.keyFile = f)),
  },
  {
    name: '--backend-sasl-username',
    arg: '<name>',
    help: `SASL PLAIN user for the backends (memcached -S; spoken to in the binary protocol); password from $${DEFAULT_BACKEND_SASL_PASSWORD_ENV} unless given below`,
    set: (l, v) => into(checkText(v, 'a user name'), (n) => (l.backendSasl.username = n)),
  },
  {
    name: '--backend-sasl-password-file',
    arg: '<file>',
    help: 'file holding the backends\' SASL password (one trailing newline ignored)',
    set: (l, v) => into(checkText(v, 'a file path'), (f) => (l.backendSasl.passwordFile = f)),
  },
  {
    name: '--backend-sasl-password-env',
    arg: '<name>',
    help: 'environment variable holding the backends\' SASL password',
    set: (l, v) => into(checkText(v, 'an environment variable name'), (n) => (l.backendSasl.passwordEnv = n)),
  },
  {
    name: '--backend-sasl-max-ttl',
    arg: '<seconds>',
    help: `longest item expiry (session.gc_maxlifetime): how long a returning SASL backend is distrusted, its keys unlisted (default ${DEFAULT_SASL_MAX_TTL_SECONDS})`,
    set: (l, v) => into(checkInteger(v, true, SASL_MAX_TTL_RANGE), (n) => (l.backendSasl.maxTtlSeconds = n)),
  },
  {
    name: '--client-sasl-username',
    arg: '<name>',
    help: `require SASL PLAIN from clients as this user (binary protocol only); password from $${DEFAULT_CLIENT_SASL_PASSWORD_ENV} unless given below`,
    set: (l, v) => into(checkText(v, 'a user name'), (n) => (l.clientSasl.username = n)),
  },
  {
    name: '--client-sasl-password-file',
    arg: '<file>',
    help: 'file holding the clients\' SASL password',
    set: (l, v) => into(checkText(v, 'a file path'), (f) => (l.clientSasl.passwordFile = f)),
  },
  {
    name: '--client-sasl-password-env',
    arg: '<name>',
    help: 'environment variable holding the clients\' SASL password',
    set: (l, v) => into(checkText(v, 'an environment variable name'), (n) => (l.clientSasl.passwordEnv = n)),
  },
  {
    name: '--no-session-locks',
    help: 'recognise no PHP session lock (no lock metrics, an empty `stats locks`)',
    set: (l) => {
      l.sessionLocks.enabled = false;
      return done;
    },
  },
  {
    name: '--session-lock-patterns',
    arg: '<handler:pattern,...>',
    help: 'more session lock keys, e.g. memcached:myapp.lock.* (php-memcached with sess_prefix=myapp.) or memcache:sess_*.lock; both extensions\' defaults are always recognised',
    set: (l, v) => into(checkLockPatterns(v.split(',')), (p) => (l.sessionLocks.patterns = p)),
  },
  { name: '--help', help: 'print this help and exit', set: () => done },
  { name: '--version', help: 'print the version and exit', set: () => done },
];

export const HELP_TEXT = [
  'Usage: replicached [flags]',
  '       replicached --config replicached.yaml [flags]',
  '',
  'A memcached proxy that writes every item to several memcached servers.',
  '',
  'Flags:',
  ...FLAGS.map((f) => `  ${`${f.name}${f.arg ? ` ${f.arg}` : ''}`.padEnd(34)} ${f.help}`),
  '',
  'Exit status:',
  '  0  stopped by SIGTERM or SIGINT, after draining (also after --help and --version)',
  '  1  could not start: a port in use, memcached missing when no backends are given, an unreadable certificate, ...',
  '  2  an invalid flag or config file',
  '',
].join('\n');

/** Reads argv (without node and the script). Throws ConfigError naming the flag. */
export function parseArgs(argv: readonly string[]): ParsedArgs {
  if (argv.includes('--help') || argv.includes('-h')) return { kind: 'help' };
  if (argv.includes('--version')) return { kind: 'version' };

  const flags = emptyLayer(null);
  let configPath: string | null = null;
  const seen = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) throw new ConfigError(arg, 'unexpected argument: flags start with "--" (see --help)');
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg : arg.slice(0, eq);
    const flag = FLAGS.find((f) => f.name === name);
    if (flag === undefined && /^--(backend|client)-sasl-password$/.test(name)) {
      // Every user of the machine can read a command line (ps, /proc).
      throw new ConfigError(name, `a password is never taken on the command line: use ${name}-file, ${name}-env or the config file`);
    }
    if (flag === undefined) throw new ConfigError(name, 'unknown flag (see --help)');
    if (seen.has(name)) throw new ConfigError(name, 'given more than once');
    seen.add(name);

    let value = '';
    if (flag.arg === undefined) {
      if (eq >= 0) throw new ConfigError(name, 'takes no value');
    } else if (eq >= 0) {
      value = arg.slice(eq + 1);
    } else {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new ConfigError(name, `needs a value: ${flag.arg}`);
      value = next;
      i++;
    }

    if (name === '--config') {
      if (value === '') throw new ConfigError(name, `needs a value: ${flag.arg}`);
      configPath = value;
      continue;
    }
    const result = flag.set(flags, value);
    if (!result.ok) throw new ConfigError(name, result.problem);
  }
  if (flags.backends !== undefined && flags.backendsFrom !== undefined) {
    throw new ConfigError('--backends-from', 'cannot be given with --backends: list the backends, or name where DNS lists them, not both');
  }
  return { kind: 'run', flags, configPath };
}

function parseBackendList(text: string): Parsed<BackendConfig[]> {
  const backends: BackendConfig[] = [];
  const entries = text.split(',').map((e) => e.trim());
  for (const [i, entry] of entries.entries()) {
    if (entry === '') return { ok: false, problem: `entry ${i + 1} of ${JSON.stringify(text)} is empty` };
    const at = entry.lastIndexOf('@');
    const parsed = checkHostPort(at < 0 ? entry : entry.slice(0, at), 1);
    if (!parsed.ok) return { ok: false, problem: `${entry}: ${parsed.problem}` };
    const zone = at < 0 ? null : checkZone(entry.slice(at + 1));
    if (zone !== null && !zone.ok) return { ok: false, problem: `${entry}: the zone after '@' ${zone.problem}` };
    const address = formatHostPort(parsed.value);
    if (backends.some((b) => b.address === address)) return { ok: false, problem: `${address} is listed twice` };
    backends.push({ address, host: parsed.value.host, port: parsed.value.port, weight: DEFAULT_WEIGHT, local: false, zone: zone?.value ?? null });
  }
  const odd = zoneMismatch(backends);
  if (odd >= 0) {
    const [withZone, without] = backends[0].zone !== null ? [0, odd] : [odd, 0];
    return { ok: false, problem: `${backends[without].address} needs a zone ("host:port@zone"): ${backends[withZone].address} has one, and zones are given to every backend or to none` };
  }
  return { ok: true, value: backends };
}

/** Bytes, with an optional binary k or m suffix as memcached's -I takes. */
function parseSize(text: string): Parsed<number> {
  const range = LIMIT_RANGES.maxItemSize;
  const m = /^([0-9]{1,10})([kKmM]?)$/.exec(text);
  const n = m ? Number(m[1]) * (m[2] === '' ? 1 : m[2].toLowerCase() === 'k' ? 1024 : 1024 * 1024) : NaN;
  if (n >= range.min && n <= range.max) return { ok: true, value: n };
  return { ok: false, problem: `must be ${describeRange(range)} bytes (suffix k or m allowed), got ${JSON.stringify(text)}` };
}
