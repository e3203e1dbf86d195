// A PHP-session-shaped load, as php-memcached's session handler with locking drives it:
// each page view is
//   add  lock.<sid>        (the session lock; NOT_STORED means another request holds it)
//   get  memc.sess.<sid>   (read the session)
//   set  memc.sess.<sid>   (write it back, 2-8 KiB)
//   delete lock.<sid>      (unlock)
// over `connections` sockets, each running page views back to back on random session ids
// drawn from `sessions`. Every request's latency goes into one HdrHistogram (microseconds).

import { build, type Histogram } from 'hdr-histogram-js';
import { McClient, type Protocol } from './mc-client';
import { HOST } from './proc';

export interface SessionLoadOptions {
  port: number;
  protocol: Protocol;
  connections: number;
  sessions: number;
  seconds: number;
}

export interface SessionLoadResult {
  /** Requests answered (4 per page view that got its lock, 1 per contended one). */
  ops: number;
  pageViews: number;
  lockContended: number;
  errors: number;
  seconds: number;
  histogram: Histogram;
}

const SESSION_TTL = 1440;
const LOCK_TTL = 30;
const LOCK_VALUE = Buffer.from('1');
// one random pool that session values are sliced from: no allocation per request
const VALUE_POOL = Buffer.alloc(8192, 'session-data|a:3:{s:4:"user";i:42;}');

function sessionValue(): Buffer {
  const size = 2048 + Math.floor(Math.random() * (8192 - 2048 + 1));
  return VALUE_POOL.subarray(0, size);
}

export async function runSessionLoad(opts: SessionLoadOptions): Promise<SessionLoadResult> {
  const clients = await Promise.all(
    Array.from({ length: opts.connections }, () => McClient.connect(opts.port, HOST, opts.protocol)),
  );
  const histogram = build({ lowestDiscernibleValue: 1, numberOfSignificantValueDigits: 3 });
  const result = { ops: 0, pageViews: 0, lockContended: 0, errors: 0 };
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(opts.seconds * 1e9));

  const timed = async (request: () => Promise<string>): Promise<string> => {
    const t0 = process.hrtime.bigint();
    const status = await request();
    histogram.recordValue(Math.max(1, Number((process.hrtime.bigint() - t0) / 1000n)));
    result.ops++;
    if (status === 'error') result.errors++;
    return status;
  };

  const worker = async (c: McClient): Promise<void> => {
    while (process.hrtime.bigint() < deadline) {
      const sid = `bench${Math.floor(Math.random() * opts.sessions)}`;
      const lock = `lock.${sid}`;
      const data = `memc.sess.${sid}`;
      const locked = await timed(() => c.add(lock, LOCK_VALUE, LOCK_TTL));
      if (locked === 'error') return;
      if (locked !== 'ok') {
        result.lockContended++;
        continue;
      }
      await timed(() => c.get(data));
      await timed(() => c.set(data, sessionValue(), SESSION_TTL));
      await timed(() => c.delete(lock));
      result.pageViews++;
    }
  };

  await Promise.all(clients.map(worker));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  for (const c of clients) c.close();
  return { ...result, seconds, histogram };
}
