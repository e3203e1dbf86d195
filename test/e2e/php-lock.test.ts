// The session lock (php-memcached's ADD of "lock.<id>") must stay mutually
// exclusive between PHP requests going through different replicached sidecars
// over the same backends: concurrent increments of one session lose nothing.

import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startMemcached, type MemcachedProcess } from '../helpers/memcached';
import { incrementCounter, readCounter, type PhpClientKind } from '../helpers/php';
import { startProxy, type ProxyProcess } from '../helpers/proxy';

const TIMES = 60;

describe('session locking across two replicached sidecars', () => {
  let backends: MemcachedProcess[];
  let sidecars: ProxyProcess[];

  beforeAll(async () => {
    backends = await Promise.all([startMemcached(), startMemcached(), startMemcached()]);
    const addresses = backends.map((b) => b.address);
    sidecars = await Promise.all([
      startProxy({ backends: addresses, replicas: 2 }),
      startProxy({ backends: [...addresses].reverse(), replicas: 2 }),
    ]);
  });
  afterAll(async () => {
    await Promise.all(sidecars.map((s) => s.stop()));
    await Promise.all(backends.map((b) => b.stop()));
  });

  test.each<PhpClientKind>(['memcached-binary', 'memcached-text'])(
    '%s: two PHP processes through two sidecars, no increment lost',
    async (kind) => {
      const id = `counter-${kind}`;
      const [a, b] = await Promise.all(
        sidecars.map((s) => incrementCounter(kind, { port: s.port, id, times: TIMES, holdMs: 2 })),
      );
      expect(a.problems).toEqual([]);
      expect(b.problems).toEqual([]);
      expect(a.ok + b.ok).toBe(2 * TIMES);
      const final = await readCounter(kind, { port: sidecars[0].port, id });
      expect(final.problems).toEqual([]);
      expect(final.counter).toBe(2 * TIMES);
    },
  );
});
