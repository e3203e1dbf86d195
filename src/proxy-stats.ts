// The proxy's own figures for the memcached `stats` command, named as memcached
// names them where the meaning is the same, and prefixed where it is ours.

import type { MemcachedNode } from './routing/node';

export class ProxyStats {
  private readonly startedAt = Date.now();
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

  snapshot(): Array<[string, string | number]> {
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
