import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseArgs, parseConfigText, type Config } from '../../src/config';

/** Loads argv with the given files readable (by exact path) and no others. */
function load(argv: string[], files: Record<string, string>): Config {
  const args = parseArgs(argv);
  if (args.kind !== 'run') throw new Error(`expected a run, got ${args.kind}`);
  return loadConfig(args, (path) => {
    const text = files[path];
    if (text === undefined) throw new Error(`ENOENT: no such file or directory, open '${path}'`);
    return text;
  });
}

function fromFile(yaml: string, extraArgs: string[] = []): Config {
  return load(['--config', 'replicached.yaml', ...extraArgs], { 'replicached.yaml': yaml });
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

const FULL = `
listen: 127.0.0.1:22122
backends:
  - 10.0.0.1:11211
  - { address: 10.0.0.2:11211, weight: 3 }
  - address: "[::1]:11211"
    local: true
discovery:
  servers: ["10.96.0.10", "127.0.0.1:5353"]
  minRefreshMs: 1000
  maxRefreshMs: 30000
replicas: 3
metricsListen: 127.0.0.1:0
backend:
  connections: 3
  connectTimeoutMs: 100
  requestTimeoutMs: 200
  failureLimit: 5
  timeoutLimit: 3
  probeIntervalMs: 50
  retryMaxMs: 1000
  upAfterProbes: 3
limits:
  maxKeyLength: 200
  maxItemSize: 2097152
  maxLineLength: 4096
  maxKeysPerGet: 100
  maxInflightPerClient: 16
  maxClientOutputBytes: 65536
  maxClientConnections: 10
  clientIdleTimeoutMs: 60000
allowFlushAll: false
backendSasl:
  username: proxy
  passwordFile: /run/secrets/memcached
  maxTtlSeconds: 3600
clientSasl:
  username: app
  password: "s3cret"
workers: 2
drainTimeoutMs: 12000
logLevel: warn
sessionLocks:
  enabled: true
  patterns: ["memcached:myapp.lock.*", "memcache:sess_*.lock"]
  showSessionIds: true
`;

describe('config file', () => {
  it('zones: each backend in one, and the sidecar in one of them; local: true alongside', () => {
    const c = fromFile('backends:\n  - { address: 10.0.0.1:11211, zone: eu-west-1a, local: true }\n  - { address: 10.0.0.2:11211, zone: eu-west-1b }\nzone: eu-west-1a\n');
    expect(c.backends.map((b) => [b.address, b.zone, b.local])).toEqual([
      ['10.0.0.1:11211', 'eu-west-1a', true],
      ['10.0.0.2:11211', 'eu-west-1b', false],
    ]);
    expect(c.zone).toBe('eu-west-1a');
    // The flag's zone wins over the file's, and is checked against the file's backends.
    expect(fromFile('backends:\n  - { address: 10.0.0.1:1, zone: a }\n  - { address: 10.0.0.2:1, zone: b }\nzone: a\n', ['--zone', 'b']).zone).toBe('b');
  });

  it('every field', () => {
    expect(fromFile(FULL)).toEqual({
      listen: { host: '127.0.0.1', port: 22122 },
      backends: [
        { address: '10.0.0.1:11211', host: '10.0.0.1', port: 11211, weight: 1, local: false, zone: null },
        { address: '10.0.0.2:11211', host: '10.0.0.2', port: 11211, weight: 3, local: false, zone: null },
        { address: '[::1]:11211', host: '::1', port: 11211, weight: 1, local: true, zone: null },
      ],
      backendsFrom: null,
      discovery: { servers: ['10.96.0.10', '127.0.0.1:5353'], minRefreshMs: 1000, maxRefreshMs: 30000 },
      replicas: 3,
      zone: null,
      metricsListen: { host: '127.0.0.1', port: 0 },
      backend: {
        connections: 3,
        connectTimeoutMs: 100,
        requestTimeoutMs: 200,
        failureLimit: 5,
        timeoutLimit: 3,
        probeIntervalMs: 50,
        retryMaxMs: 1000,
        upAfterProbes: 3,
      },
      limits: {
        maxKeyLength: 200,
        maxItemSize: 2097152,
        maxLineLength: 4096,
        maxKeysPerGet: 100,
        maxInflightPerClient: 16,
        maxClientOutputBytes: 65536,
        maxClientConnections: 10,
        clientIdleTimeoutMs: 60000,
      },
      allowFlushAll: false,
      backendTls: { enabled: false, caFile: null, certFile: null, keyFile: null, serverName: null, rejectUnauthorized: true },
      clientTls: { enabled: false, certFile: null, keyFile: null },
      backendSasl: { username: 'proxy', password: null, passwordFile: '/run/secrets/memcached', passwordEnv: null, maxTtlSeconds: 3600 },
      clientSasl: { username: 'app', password: 's3cret', passwordFile: null, passwordEnv: null },
      workers: 2,
      drainTimeoutMs: 12000,
      logLevel: 'warn',
      sessionLocks: { enabled: true, patterns: ['memcached:myapp.lock.*', 'memcache:sess_*.lock'], showSessionIds: true },
      configPath: 'replicached.yaml',
    });
  });

  it('an empty file or one with only comments is an error, not the local-memcached demo', () => {
    for (const text of ['', '# nothing\n', '\n---\n']) {
      const e = errorOf(() => fromFile(text));
      expect(e.message).toBe(
        'replicached.yaml: top level: the file has no settings; list at least the backends (or leave out --config to try replicached with local memcached)',
      );
    }
  });

  it('replicas defaults to min(2, backends in the file)', () => {
    expect(fromFile('backends: [127.0.0.1:1]').replicas).toBe(1);
    expect(fromFile('backends: [127.0.0.1:1, 127.0.0.1:2, 127.0.0.1:3]').replicas).toBe(2);
  });

  it('flags override the file, field by field', () => {
    const c = fromFile(FULL, ['--backends', '127.0.0.1:1,127.0.0.1:2', '--replicas', '1', '--request-timeout', '999', '--item-size-max', '1k', '--log-level', 'error']);
    expect(c.backends.map((b) => b.address)).toEqual(['127.0.0.1:1', '127.0.0.1:2']);
    expect(c.replicas).toBe(1);
    // Overridden fields change; the file's others stay.
    expect(c.backend).toMatchObject({ requestTimeoutMs: 999, connectTimeoutMs: 100, connections: 3 });
    expect(c.limits).toMatchObject({ maxItemSize: 1024, maxKeyLength: 200 });
    expect(c).toMatchObject({ logLevel: 'error', workers: 2, allowFlushAll: false });
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 22122 });
  });

  it('flag backends make the file replicas too many: the file field is named', () => {
    const err = errorOf(() => fromFile('replicas: 3', ['--backends', '127.0.0.1:1,127.0.0.1:2']));
    expect(err.message).toBe('replicached.yaml: replicas: must be an integer between 1 and 2 (the number of backends), got "3"');
  });

  it('flag replicas over file backends', () => {
    expect(fromFile('backends: [127.0.0.1:1, 127.0.0.1:2, 127.0.0.1:3]', ['--replicas', '3']).replicas).toBe(3);
    const err = errorOf(() => fromFile('backends: [127.0.0.1:1, 127.0.0.1:2]', ['--replicas', '3']));
    expect(err.message).toBe('--replicas: must be an integer between 1 and 2 (the number of backends), got "3"');
  });

  it('reads a real file from disk by default', () => {
    const dir = mkdtempSync(join(tmpdir(), 'replicached-config-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'r.yaml');
    writeFileSync(path, 'workers: 3\n');
    const args = parseArgs(['--config', path]);
    if (args.kind !== 'run') throw new Error('expected a run');
    expect(loadConfig(args).workers).toBe(3);
    // A reload is loadConfig again with the same arguments: it sees the new file.
    writeFileSync(path, 'workers: 4\n');
    expect(loadConfig(args).workers).toBe(4);
  });

  it('an unreadable file names --config', () => {
    const err = errorOf(() => load(['--config', 'missing.yaml'], {}));
    expect(err.field).toBe('--config');
    expect(err.message).toMatch(/^--config: cannot read "missing\.yaml": ENOENT/);
  });
});

describe('file errors name the file, the field and the problem', () => {
  it.each<[string, string, string]>([
    ['backends:\n  - 10.0.0.1:11211\n  - { address: "10.0.0.1:99999" }\n', 'backends[1].address', 'port must be 1..65535, got "99999"'],
    ['backends: [10.0.0.1:11211, "10.0.0.2"]', 'backends[1]', 'must be "host:port", got "10.0.0.2"'],
    ['backends: [10.0.0.1:11211, 10.0.0.1:11211]', 'backends[1]', 'duplicate of backends[0] ("10.0.0.1:11211")'],
    ['backends:\n  - 10.0.0.1:11211\n  - address: 10.0.0.1:11211\n', 'backends[1].address', 'duplicate of backends[0] ("10.0.0.1:11211")'],
    ['backends: []', 'backends', 'must list at least one backend (leave the field out to start local memcached processes)'],
    ['backends: 10.0.0.1:11211', 'backends', 'must be a list of "host:port" or {address, weight, local, zone}, got "10.0.0.1:11211"'],
    ['backends: [11211]', 'backends[0]', 'must be a "host:port" string, got 11211'],
    ['backends:\n  - weight: 2\n', 'backends[0].address', 'is required'],
    ['backends:\n  - { address: 10.0.0.1:1, weight: 0 }\n', 'backends[0].weight', 'must be an integer between 1 and 1000, got 0'],
    ['backends:\n  - { address: 10.0.0.1:1, local: "yes" }\n', 'backends[0].local', 'must be true or false, got "yes"'],
    ['backends:\n  - { address: 10.0.0.1:1, zone: "eu west" }\n', 'backends[0].zone', `must be a zone name (1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit), got "eu west"`],
    ['backends:\n  - { address: 10.0.0.1:1, zone: a }\n  - 10.0.0.2:1\n', 'backends[1]', 'needs a zone: backends[0] has one ("a"), and zones are given to every backend or to none'],
    ['backends:\n  - 10.0.0.1:1\n  - { address: 10.0.0.2:1, zone: b }\n', 'backends[0]', 'needs a zone: backends[1] has one ("b"), and zones are given to every backend or to none'],
    ['backends:\n  - { address: 10.0.0.1:1, zone: a }\nzone: b\n', 'zone', `must be one of the backends' zones (a), got "b"`],
    ['backends: [10.0.0.1:1]\nzone: a\n', 'zone', 'is "a", but no backend has a zone (give every backend one: {address, zone} in the file, host:port@zone in --backends)'],
    ['backends:\n  - { address: 10.0.0.1:1, port: 1 }\n', 'backends[0].port', 'unknown field (known: address, weight, local, zone)'],
    ['backends: [10.0.0.1:1, 10.0.0.2:1]\nreplicas: 3\n', 'replicas', 'must be an integer between 1 and 2 (the number of backends), got "3"'],
    ['replicas: 0', 'replicas', 'must be a positive integer, got 0'],
    ['replicas: "2"', 'replicas', 'must be a positive integer, got "2"'],
    ['replicas: 1.5', 'replicas', 'must be a positive integer, got 1.5'],
    ['replicas:', 'replicas', 'must be a positive integer, got nothing'],
    ['listen: 11211', 'listen', 'must be a "host:port" string, got 11211'],
    ['listen: "localhost:http"', 'listen', 'port must be 0..65535, got "http"'],
    ['metricsListen: false', 'metricsListen', 'must be a "host:port" string, got false (or "off")'],
    ['backend:\n  connections: 100\n', 'backend.connections', 'must be an integer between 1 and 64, got 100'],
    ['backend:\n  requestTimeout: 100\n', 'backend.requestTimeout', 'unknown field (known: connections, connectTimeoutMs, requestTimeoutMs, failureLimit, timeoutLimit, probeIntervalMs, retryMaxMs, upAfterProbes)'],
    ['backend:\n  request_timeout_ms: 100\n', 'backend.request_timeout_ms', 'unknown field (did you mean "requestTimeoutMs"?)'],
    ['backend: 5', 'backend', 'must be a mapping, got 5'],
    ['limits:\n  maxKeyLength: 251\n', 'limits.maxKeyLength', 'must be an integer between 1 and 250, got 251'],
    ['limits:\n  maxLineLength: 100\n', 'limits.maxLineLength', 'must be an integer between 512 and 16777216, got 100'],
    ['limits:\n  clientIdleTimeoutMs: -1\n', 'limits.clientIdleTimeoutMs', 'must be a non-negative integer, got -1'],
    ['limits:\n  maxItemSize: 1m\n', 'limits.maxItemSize', 'must be an integer between 1 and 1073741824, got "1m"'],
    ['limits: [1]', 'limits', 'must be a mapping, got a list'],
    ['allowFlushAll: "no"', 'allowFlushAll', 'must be true or false, got "no"'],
    ['allow_flush_all: false', 'allow_flush_all', 'unknown field (did you mean "allowFlushAll"?)'],
    ['workers: 0', 'workers', 'must be an integer between 1 and 256, got 0'],
    ['drainTimeoutMs: -1', 'drainTimeoutMs', 'must be a non-negative integer, got -1'],
    ['logLevel: verbose', 'logLevel', 'must be one of fatal, error, warn, info, debug, trace, got "verbose"'],
    ['replica: 2', 'replica', 'unknown field (known: listen, backends, backendsFrom, discovery, replicas, zone, metricsListen, backend, limits, allowFlushAll, backendTls, clientTls, backendSasl, clientSasl, workers, drainTimeoutMs, logLevel, sessionLocks)'],
    ['sessionLocks:\n  enabled: "no"\n', 'sessionLocks.enabled', 'must be true or false, got "no"'],
    ['sessionLocks:\n  patterns: "memcached:x.*"\n', 'sessionLocks.patterns', 'must be a list of "memcached:<prefix>*<suffix>" or "memcache:<prefix>*<suffix>", got "memcached:x.*"'],
    [
      'sessionLocks:\n  patterns: ["memcached:lock.*", "redis:lock.*"]\n',
      'sessionLocks.patterns',
      'entry 2: must start with "memcached:" or "memcache:" (the session.save_handler): a pattern is "memcached:<prefix>*<suffix>" or "memcache:<prefix>*<suffix>" (* is the session id), got "redis:lock.*"',
    ],
    ['sessionLocks:\n  show_session_ids: true\n', 'sessionLocks.show_session_ids', 'unknown field (did you mean "showSessionIds"?)'],
    ['- listen: 127.0.0.1:1', 'top level', 'must be a mapping of settings, got a list'],
    ['workers: 1\nworkers: 2\n', 'line 2, column 1', 'Map keys must be unique'],
    ['backends: [10.0.0.1:1\n', 'line 2, column 1', 'Flow sequence in block collection must be sufficiently indented and end with a ]'],
  ])('%j', (yaml, field, problem) => {
    const err = errorOf(() => fromFile(yaml));
    expect(err.message).toBe(`replicached.yaml: ${field}: ${problem}`);
    expect(err.field).toBe(field);
    expect(err.source).toBe('replicached.yaml');
  });
});

describe('parseConfigText (hot reload)', () => {
  it('returns the file layer, named by its source', () => {
    const layer = parseConfigText('backends: [127.0.0.1:1]\nbackend: { requestTimeoutMs: 50 }\n', '/etc/replicached.yaml');
    expect(layer.source).toBe('/etc/replicached.yaml');
    expect(layer.backends?.map((b) => b.address)).toEqual(['127.0.0.1:1']);
    expect(layer.backend).toEqual({ requestTimeoutMs: 50 });
    expect(layer.replicas).toBeUndefined();
  });
  it('throws a ConfigError naming the source for an invalid text', () => {
    expect(() => parseConfigText('workers: many', '/etc/replicached.yaml')).toThrow(
      new ConfigError('workers', 'must be an integer between 1 and 256, got "many"', '/etc/replicached.yaml'),
    );
  });
  it('a YAML alias bomb is refused, not expanded', () => {
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]', ...'bcdefghi'.split('').map((c, i) => `${c}: &${c} [${Array(10).fill(`*${'abcdefghi'[i]}`).join(', ')}]`)].join('\n');
    expect(() => parseConfigText(bomb, 'bomb.yaml')).toThrow(ConfigError);
  });
});
