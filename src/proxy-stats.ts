// The proxy's own figures for the memcached `stats` command, named as memcached
// names them where the meaning is the same, and prefixed where it is ours.
// `stats reset` starts the cumulative ones again from zero, as memcached's does; the
// Prometheus counters they share with the metrics are never reset (a counter only grows).

import type { Config } from './config';
import { DEFAULT_LOCK_PATTERNS } from './locks/patterns';
import type { MemcachedNode } from './routing/node';

type StatPairs = Array<[string, string | number]>;

/** The figures `stats reset` zeroes (memcached's stats_reset: counts, not gauges or times). */
const CUMULATIVE = new Set([
  'total_connections', 'rejected_connections', 'cmd_get', 'cmd_set', 'cmd_touch', 'get_hits', 'get_misses',
  'get_unavailable', 'delete_hits', 'delete_misses', 'incr_hits', 'incr_misses', 'decr_hits', 'decr_misses',
  'cas_hits', 'cas_badval', 'cas_misses', 'touch_hits', 'touch_misses', 'bytes_read', 'bytes_written',
]);

export class ProxyStats {
  private readonly startedAt = Date.now();
  /** The cumulative figures at the last `stats reset`, subtracted from what is shown. */
  private baseline = new Map<string, number>();
  currConnections = 0;
  totalConnections = 0;
  rejectedConnections = 0;
  bytesRead = 0;
  bytesWritten = 0;

  constructor(
    private readonly version: string,
    private readonly backends: () => readonly MemcachedNode[],
    private readonly replicas: () => number,
    /** Requests of a command that ended with a result (any, if none is given), as the metrics counted them. */
    private readonly requestCount: (command: string, result?: string) => number,
  ) {}

  /** Requests of any of `commands` that ended with any of `results` (any result, if not given). */
  private sum(commands: string[], results?: string[]): number {
    let n = 0;
    for (const command of commands) {
      if (results === undefined) n += this.requestCount(command);
      else for (const result of results) n += this.requestCount(command, result);
    }
    return n;
  }

  /** `stats reset`. */
  reset(): void {
    this.baseline = new Map();
    for (const [name, value] of this.snapshot()) if (typeof value === 'number' && CUMULATIVE.has(name)) this.baseline.set(name, value);
  }

  snapshot(): StatPairs {
    const pairs = this.figures();
    return this.baseline.size === 0 ? pairs : pairs.map(([name, value]) => [name, typeof value === 'number' ? value - (this.baseline.get(name) ?? 0) : value]);
  }

  private figures(): StatPairs {
    const now = Date.now();
    const backends = this.backends();
    const mem = process.memoryUsage();
    return [
      ['pid', process.pid],
      ['uptime', Math.floor((now - this.startedAt) / 1000)],
      ['time', Math.floor(now / 1000)],
      ['version', this.version],
      ['pointer_size', 64],
      ['rusage_user', (process.cpuUsage().user / 1e6).toFixed(6)],
      ['rusage_system', (process.cpuUsage().system / 1e6).toFixed(6)],
      ['curr_connections', this.currConnections],
      ['total_connections', this.totalConnections],
      ['rejected_connections', this.rejectedConnections],
      ['cmd_get', this.sum(['get', 'gets', 'gat', 'gats'])],
      ['cmd_set', this.sum(['set', 'add', 'replace', 'append', 'prepend', 'cas'])],
      ['cmd_touch', this.sum(['touch', 'gat', 'gats'])],
      ['get_hits', this.sum(['get', 'gets'], ['hit'])],
      ['get_misses', this.sum(['get', 'gets'], ['miss'])],
      ['get_unavailable', this.sum(['get', 'gets', 'gat', 'gats'], ['unavailable'])],
      ['delete_hits', this.sum(['delete'], ['deleted'])],
      ['delete_misses', this.sum(['delete'], ['not_found'])],
      ['incr_hits', this.sum(['incr'], ['ok'])],
      ['incr_misses', this.sum(['incr'], ['not_found'])],
      ['decr_hits', this.sum(['decr'], ['ok'])],
      ['decr_misses', this.sum(['decr'], ['not_found'])],
      ['cas_hits', this.sum(['cas'], ['stored'])],
      ['cas_badval', this.sum(['cas'], ['exists'])],
      ['cas_misses', this.sum(['cas'], ['not_found'])],
      ['touch_hits', this.sum(['touch'], ['touched'])],
      ['touch_misses', this.sum(['touch'], ['not_found'])],
      ['bytes_read', this.bytesRead],
      ['bytes_written', this.bytesWritten],
      ['rss_bytes', mem.rss],
      ['replicached_replicas', this.replicas()],
      ['replicached_backends', backends.length],
      ['replicached_backends_up', backends.filter((b) => b.isUp()).length],
      ...backends.map((b, i): [string, string] => [`replicached_backend_${i}`, `${b.address} ${b.isUp() ? 'up' : 'down'}`]),
    ];
  }
}

/**
 * `stats settings`: the proxy's own settings, under memcached's names where they mean the
 * same (its limits on clients, the port it serves), prefixed where they are ours. What it
 * does not do is said in memcached's words: no dump, detail, LRU crawler or slab moves.
 */
export function settingsStats(config: Config, port: number): StatPairs {
  const { limits } = config;
  const yesNo = (b: boolean): string => (b ? 'yes' : 'no');
  return [
    ['maxconns', limits.maxClientConnections],
    ['tcpport', port],
    ['udpport', 0],
    ['inter', config.listen.host],
    ['shutdown_command', 'no'],
    ['num_threads', config.workers],
    ['detail_enabled', 'no'],
    ['cas_enabled', 'yes'],
    ['binding_protocol', 'auto-negotiate'],
    ['auth_enabled_sasl', yesNo(config.clientSasl.username !== null)],
    ['item_size_max', limits.maxItemSize],
    ['slab_reassign', 'no'],
    ['lru_crawler', 'no'],
    ['flush_enabled', yesNo(config.allowFlushAll)],
    ['dump_enabled', 'no'],
    ['idle_timeout', Math.ceil(limits.clientIdleTimeoutMs / 1000)],
    ['ssl_enabled', yesNo(config.clientTls.enabled)],
    ['replicached_replicas', config.replicas],
    ['replicached_session_locks', config.sessionLocks.enabled ? [...DEFAULT_LOCK_PATTERNS, ...config.sessionLocks.patterns].join(',') : 'off'],
    ['replicached_backends', config.backends.length],
    ['replicached_backend_sasl', yesNo(config.backendSasl.username !== null)],
    ['replicached_max_key_length', limits.maxKeyLength],
    ['replicached_max_line_length', limits.maxLineLength],
    ['replicached_max_keys_per_get', limits.maxKeysPerGet],
    ['replicached_max_inflight_per_client', limits.maxInflightPerClient],
    ['replicached_max_client_output_bytes', limits.maxClientOutputBytes],
    ['replicached_client_idle_timeout_ms', limits.clientIdleTimeoutMs],
    ['replicached_backend_connections', config.backend.connections],
    ['replicached_request_timeout_ms', config.backend.requestTimeoutMs],
    ['replicached_backend_tls', yesNo(config.backendTls.enabled)],
  ];
}
