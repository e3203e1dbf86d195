import { describe, expect, it } from 'vitest';
import { ConfigError, HELP_TEXT, loadConfig, parseArgs, type Config, type RunArgs } from '../../src/config';
import { DEFAULT_LIMITS } from '../../src/protocol/limits';

function run(argv: string[]): RunArgs {
  const args = parseArgs(argv);
  if (args.kind !== 'run') throw new Error(`expected a run, got ${args.kind}`);
  return args;
}

function load(argv: string[]): Config {
  return loadConfig(run(argv), () => {
    throw new Error('no file expected');
  });
}

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('parseArgs: help and version', () => {
  it.each([[['--help']], [['-h']], [['--listen', '127.0.0.1:1', '--help']], [['--bogus', '--help']]])('%j is help', (argv) => {
    expect(parseArgs(argv)).toEqual({ kind: 'help' });
  });
  it('--version is version', () => {
    expect(parseArgs(['--version'])).toEqual({ kind: 'version' });
  });
  it('HELP_TEXT documents every flag of the contract', () => {
    for (const flag of [
      '--listen',
      '--backends',
      '--replicas',
      '--metrics-listen',
      '--config',
      '--connections',
      '--request-timeout',
      '--failure-limit',
      '--timeout-limit',
      '--connect-timeout',
      '--item-size-max',
      '--max-connections',
      '--workers',
      '--log-level',
      '--no-flush-all',
      '--help',
      '--version',
    ]) {
      expect(HELP_TEXT).toMatch(new RegExp(`^  ${flag}\\b`, 'm'));
    }
  });
});

describe('defaults', () => {
  it('with no flags: local memcached mode, replicas 2, every default', () => {
    const c = load([]);
    expect(c).toEqual({
      listen: { host: '127.0.0.1', port: 11211 },
      backends: [],
      backendsFrom: null,
      discovery: { servers: null, minRefreshMs: 5000, maxRefreshMs: 60000 },
      replicas: 2,
      zone: null,
      metricsListen: { host: '127.0.0.1', port: 9150 },
      backend: {
        connections: 1,
        connectTimeoutMs: 300,
        requestTimeoutMs: 300,
        failureLimit: 2,
        timeoutLimit: 1,
        probeIntervalMs: 250,
        retryMaxMs: 5000,
        upAfterProbes: 2,
      },
      limits: { ...DEFAULT_LIMITS },
      allowFlushAll: true,
      backendTls: { enabled: false, caFile: null, certFile: null, keyFile: null, serverName: null, rejectUnauthorized: true },
      clientTls: { enabled: false, certFile: null, keyFile: null },
      backendSasl: { username: null, password: null, passwordFile: null, passwordEnv: null, maxTtlSeconds: 1440 },
      clientSasl: { username: null, password: null, passwordFile: null, passwordEnv: null },
      workers: 1,
      drainTimeoutMs: 30_000,
      logLevel: 'info',
      sessionLocks: { enabled: true, patterns: [], showSessionIds: false },
      configPath: null,
    });
  });
  it.each([
    ['127.0.0.1:11211', 1],
    ['127.0.0.1:11211,127.0.0.1:11212', 2],
    ['127.0.0.1:11211,127.0.0.1:11212,127.0.0.1:11213', 2],
    ['10.0.0.1:1,10.0.0.2:1,10.0.0.3:1,10.0.0.4:1', 2],
  ])('replicas defaults to min(2, n) for --backends %s', (backends, replicas) => {
    expect(load(['--backends', backends]).replicas).toBe(replicas);
  });
  it('the limits are a copy: changing one config does not change the defaults', () => {
    load([]).limits.maxItemSize = 1;
    expect(load([]).limits.maxItemSize).toBe(DEFAULT_LIMITS.maxItemSize);
  });
});

describe('flags', () => {
  it('the contract example', () => {
    const c = load([
      '--listen',
      '127.0.0.1:11211',
      '--backends',
      '10.0.0.1:11211,10.0.0.2:11211',
      '--replicas',
      '2',
      '--metrics-listen',
      '127.0.0.1:9150',
    ]);
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 11211 });
    expect(c.backends).toEqual([
      { address: '10.0.0.1:11211', host: '10.0.0.1', port: 11211, weight: 1, local: false, zone: null },
      { address: '10.0.0.2:11211', host: '10.0.0.2', port: 11211, weight: 1, local: false, zone: null },
    ]);
    expect(c.replicas).toBe(2);
    expect(c.metricsListen).toEqual({ host: '127.0.0.1', port: 9150 });
  });
  it('every other flag, in --flag=value form too', () => {
    const c = load([
      '--connections=4',
      '--request-timeout',
      '250',
      '--failure-limit=4',
      '--timeout-limit',
      '3',
      '--connect-timeout=100',
      '--item-size-max',
      '2m',
      '--max-connections',
      '50',
      '--workers',
      '2',
      '--drain-timeout',
      '0',
      '--log-level',
      'debug',
      '--no-flush-all',
      '--metrics-listen',
      'off',
      '--listen=127.0.0.1:0',
      '--no-session-locks',
      '--session-lock-patterns=memcached:myapp.lock.*,memcache:sess_*.lock',
    ]);
    expect(c.sessionLocks).toEqual({ enabled: false, patterns: ['memcached:myapp.lock.*', 'memcache:sess_*.lock'], showSessionIds: false });
    expect(c.backend).toMatchObject({ connections: 4, requestTimeoutMs: 250, connectTimeoutMs: 100, failureLimit: 4, timeoutLimit: 3 });
    expect(c.limits).toMatchObject({ maxItemSize: 2 * 1024 * 1024, maxClientConnections: 50 });
    expect(c).toMatchObject({ workers: 2, drainTimeoutMs: 0, logLevel: 'debug', allowFlushAll: false, metricsListen: null });
    expect(c.listen.port).toBe(0);
  });
  it.each([
    ['1048576', 1048576],
    ['512k', 512 * 1024],
    ['1M', 1024 * 1024],
  ])('--item-size-max %s = %d bytes', (text, bytes) => {
    expect(load(['--item-size-max', text]).limits.maxItemSize).toBe(bytes);
  });
  it('zones: host:port@zone in --backends, --zone one of them', () => {
    const c = load(['--backends', '10.0.0.1:11211@a,[::1]:11211@b, memcached-0.example:11211@rack.3', '--zone', 'b']);
    expect(c.backends.map((b) => [b.address, b.zone])).toEqual([
      ['10.0.0.1:11211', 'a'],
      ['[::1]:11211', 'b'],
      ['memcached-0.example:11211', 'rack.3'],
    ]);
    expect(c.zone).toBe('b');
    expect(load(['--backends', '10.0.0.1:1,10.0.0.2:1']).backends.map((b) => b.zone)).toEqual([null, null]);
  });
  it('IPv6 backends in brackets and hostnames', () => {
    const c = load(['--backends', '[::1]:11211, Memcached-0.example:11211']);
    expect(c.backends.map((b) => [b.address, b.host, b.port])).toEqual([
      ['[::1]:11211', '::1', 11211],
      ['memcached-0.example:11211', 'Memcached-0.example', 11211],
    ]);
  });
});

describe('flag errors name the flag and the problem', () => {
  it.each<[string[], string]>([
    [
      ['--replicas', '5', '--backends', '10.0.0.1:1,10.0.0.2:1,10.0.0.3:1'],
      '--replicas: must be an integer between 1 and 3 (the number of backends), got "5"',
    ],
    [['--replicas', '4'], '--replicas: must be an integer between 1 and 3 (the number of local memcached processes started when no backends are given), got "4"'],
    [['--replicas', '0'], '--replicas: must be a positive integer, got "0"'],
    [['--replicas', 'two'], '--replicas: must be a positive integer, got "two"'],
    [['--replicas', '1.5'], '--replicas: must be a positive integer, got "1.5"'],
    [['--listen', '127.0.0.1'], '--listen: must be "host:port", got "127.0.0.1"'],
    [['--listen', '127.0.0.1:65536'], '--listen: port must be 0..65535, got "65536"'],
    [['--listen', '127.0.0.1:'], '--listen: port must be 0..65535, got ""'],
    [['--listen', '127.0.0.1:+80'], '--listen: port must be 0..65535, got "+80"'],
    [['--listen', '::1:11211'], '--listen: an IPv6 address needs brackets, as in "[::1]:11211", got "::1:11211"'],
    [['--listen', '300.1.1.1:1'], '--listen: host must be an IPv4 address, a bracketed IPv6 address or a hostname, got "300.1.1.1"'],
    [['--listen', 'a b:1'], '--listen: host must be an IPv4 address, a bracketed IPv6 address or a hostname, got "a b"'],
    [['--backends', '10.0.0.1:0'], '--backends: 10.0.0.1:0: port must be 1..65535, got "0"'],
    [['--backends', '10.0.0.1:99999'], '--backends: 10.0.0.1:99999: port must be 1..65535, got "99999"'],
    [['--backends', '10.0.0.1:1,,10.0.0.2:1'], '--backends: entry 2 of "10.0.0.1:1,,10.0.0.2:1" is empty'],
    [['--backends', '10.0.0.1:1,10.0.0.1:1'], '--backends: 10.0.0.1:1 is listed twice'],
    [['--backends', '10.0.0.1:1@a,10.0.0.1:1@b'], '--backends: 10.0.0.1:1 is listed twice'],
    [['--backends', '10.0.0.1:1@'], `--backends: 10.0.0.1:1@: the zone after '@' must be a zone name (1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit), got ""`],
    [['--backends', '10.0.0.1:1@a,b'], '--backends: b: must be "host:port", got "b"'],
    [['--backends', '10.0.0.1:1@a,10.0.0.2:1'], '--backends: 10.0.0.2:1 needs a zone ("host:port@zone"): 10.0.0.1:1 has one, and zones are given to every backend or to none'],
    [['--backends', '10.0.0.1:1,10.0.0.2:1@b'], '--backends: 10.0.0.1:1 needs a zone ("host:port@zone"): 10.0.0.2:1 has one, and zones are given to every backend or to none'],
    [['--backends', '10.0.0.1:1@a', '--zone', 'b'], `--zone: must be one of the backends' zones (a), got "b"`],
    [['--backends', '10.0.0.1:1', '--zone', 'a'], '--zone: is "a", but no backend has a zone (give every backend one: {address, zone} in the file, host:port@zone in --backends)'],
    [['--zone', '-a'], `--zone: must be a zone name (1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit), got "-a"`],
    [['--backends', '[::1]:1,[0:0::1]:1'], '--backends: [::1]:1 is listed twice'],
    [['--metrics-listen', 'no'], '--metrics-listen: must be "host:port", got "no" (or "off")'],
    [['--connections', '0'], '--connections: must be an integer between 1 and 64, got "0"'],
    [['--request-timeout', '-1'], '--request-timeout: must be a positive integer, got "-1"'],
    [['--connect-timeout', '1s'], '--connect-timeout: must be a positive integer, got "1s"'],
    [['--item-size-max', '2g'], '--item-size-max: must be an integer between 1 and 1073741824 bytes (suffix k or m allowed), got "2g"'],
    [['--max-connections', ''], '--max-connections: must be a positive integer, got ""'],
    [['--workers', '1000'], '--workers: must be an integer between 1 and 256, got "1000"'],
    [['--drain-timeout', '30s'], '--drain-timeout: must be a non-negative integer, got "30s"'],
    [['--log-level', 'loud'], '--log-level: must be one of fatal, error, warn, info, debug, trace, got "loud"'],
    [['--session-lock-patterns', 'memcached:a.*,memcached:*'], '--session-lock-patterns: entry 2: "*" alone would take every key for a lock: a pattern is "memcached:<prefix>*<suffix>" or "memcache:<prefix>*<suffix>" (* is the session id), got "memcached:*"'],
    [['--bogus'], '--bogus: unknown flag (see --help)'],
    [['--replicas'], '--replicas: needs a value: <n>'],
    [['--replicas', '--workers', '2'], '--replicas: needs a value: <n>'],
    [['--config'], '--config: needs a value: <file>'],
    [['--no-flush-all=yes'], '--no-flush-all: takes no value'],
    [['--workers', '1', '--workers', '2'], '--workers: given more than once'],
    [['listen'], 'listen: unexpected argument: flags start with "--" (see --help)'],
  ])('%j', (argv, message) => {
    const err = errorOf(() => load(argv));
    expect(err.message).toBe(message);
    expect(err.source).toBeNull();
    expect(message.startsWith(`${err.field}: `)).toBe(true);
  });
});
