// Many requests in flight at once on the pool, against a real memcached: every
// reply must reach the request it answers.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backend } from '../../src/backends/backend';
import { startMemcached, stopAllMemcached, type MemcachedProcess } from '../helpers/memcached';

const k = (s: string): Buffer => Buffer.from(s, 'latin1');

let mc: MemcachedProcess;
let backend: Backend;

beforeAll(async () => {
  mc = await startMemcached();
  // Generous: these tests are about replies, not timeouts, and may run on a loaded machine.
  backend = new Backend(mc.address, { connections: 2, requestTimeoutMs: 10_000 });
});

afterAll(async () => {
  await backend.close();
  await stopAllMemcached();
});

describe('pipelining', () => {
  it('1000 concurrent stores then 1000 concurrent gets, each matched to its own reply', async () => {
    const n = 1000;
    const stores = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        backend.store({ mode: 'set', key: k(`p${i}`), value: k(`value-${i}`.repeat(1 + (i % 7))), flags: i, exptime: 0, cas: 0n }),
      ),
    );
    expect(stores.every((s) => s.status === 'stored')).toBe(true);
    const gets = await Promise.all(Array.from({ length: n }, (_, i) => backend.get(k(`p${i}`))));
    gets.forEach((g, i) => {
      expect(g.status).toBe('hit');
      if (g.status !== 'hit') return;
      expect(g.item.value.toString()).toBe(`value-${i}`.repeat(1 + (i % 7)));
      expect(g.item.flags).toBe(i);
    });
    expect(backend.openConnections).toBe(2);
    expect(backend.load).toBe(0);
  });

  it('1000 concurrent mixed operations', async () => {
    await backend.flush(0);
    const n = 1000;
    const ops = Array.from({ length: n }, (_, i) => {
      switch (i % 5) {
        case 0:
          return backend.get(k(`absent${i}`)).then((r) => expect(r).toEqual({ status: 'miss' }));
        case 1:
          return backend.arith('incr', k(`ctr${i}`), 1n, { initial: BigInt(i), exptime: 0 }).then((r) =>
            expect(r).toMatchObject({ status: 'ok', value: BigInt(i) }),
          );
        case 2:
          return backend.delete(k(`absent${i}`), 0n).then((r) => expect(r).toEqual({ status: 'not_found' }));
        case 3:
          return backend.touch(k(`absent${i}`), 10).then((r) => expect(r).toEqual({ status: 'not_found' }));
        default:
          return backend
            .store({ mode: 'add', key: k(`add${i}`), value: Buffer.alloc(i * 50, i % 256), flags: 0, exptime: 0, cas: 0n })
            .then((r) => expect(r.status).toBe('stored'));
      }
    });
    await Promise.all(ops);
    const big = await backend.get(k('add999'));
    expect(big.status === 'hit' && big.item.value.equals(Buffer.alloc(999 * 50, 999 % 256))).toBe(true);
  });

  it('stats in the middle of a pipeline', async () => {
    const [a, s, b] = await Promise.all([backend.get(k('add4')), backend.stats(), backend.get(k('absent'))]);
    expect(a.status).toBe('hit');
    expect(s instanceof Map && s.get('pid')).toBe(String(mc.pid));
    expect(b.status).toBe('miss');
  });
});
