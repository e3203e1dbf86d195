// Issue 12's repro 8 with real PHP: a request holds its session (php-memcached's lock taken,
// the page still running) when replicached gets SIGTERM, as when php-fpm and its sidecar are
// stopped together. The request must still write its session and release its lock through
// the draining proxy; no `memc.sess.key.lock.<id>` may stay behind on any backend.

import net from 'node:net';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startMemcached, type MemcachedProcess } from '../helpers/memcached';
import { incrementCounter } from '../helpers/php';
import { startProxy } from '../helpers/proxy';
import { pollUntil } from '../helpers/wait';

let backends: MemcachedProcess[] = [];
beforeAll(async () => {
  backends = await Promise.all([0, 1].map(() => startMemcached()));
});
afterAll(async () => {
  await Promise.all(backends.map((b) => b.stop()));
});

/** `get key` straight from one memcached: the value, or null. */
function directGet(port: number, key: string): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(`get ${key}\r\n`));
    let reply = '';
    s.on('data', (d: Buffer) => {
      reply += d.toString('latin1');
      if (!reply.endsWith('END\r\n')) return;
      s.destroy();
      const m = /^VALUE \S+ \d+ \d+\r\n([\s\S]*)\r\nEND\r\n$/.exec(reply);
      resolve(m ? m[1] : null);
    });
    s.on('error', reject);
  });
}

test('SIGTERM while PHP holds its session: the write and the unlock still go through, then the proxy exits 0', async () => {
  const proxy = await startProxy({ backends: backends.map((b) => b.address), replicas: 2 });
  const exited = new Promise<number | null>((resolve) => proxy.child.once('exit', (code) => resolve(code)));
  const id = `drain${Date.now()}`;
  const lockKey = `memc.sess.key.lock.${id}`;

  // One increment that holds the session for 2 s, like a page doing its work.
  const php = incrementCounter('memcached-binary', { port: proxy.port, id, times: 1, holdMs: 2000 });
  await pollUntil(async () => (await directGet(backends[0].port, lockKey)) !== null, 10_000, 20, 'PHP never took its session lock');
  proxy.child.kill('SIGTERM');

  const report = await php;
  expect(report.problems).toEqual([]);
  expect(report.ok).toBe(1);
  expect(await exited).toBe(0);
  for (const b of backends) {
    expect(await directGet(b.port, lockKey), `lock left on ${b.address}`).toBeNull();
    expect(await directGet(b.port, `memc.sess.key.${id}`), `session on ${b.address}`).toContain('counter|i:1;');
  }
});
