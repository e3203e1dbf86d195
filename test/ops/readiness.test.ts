// Readiness for a sidecar: /readyz answers 503 until a backend has answered (start-up
// is honest even with every memcached dead), 200 from then on, and stays 200 when every
// backend is lost later: all pods share the same memcached, so failing readiness would
// take every web pod out of its Service at once. backend_up is 0 until the backend answered.

import { afterEach, expect, test } from 'vitest';
import { freePort, startMemcached, stopAllMemcached } from '../helpers/memcached';
import { startProxy, type ProxyProcess } from '../helpers/proxy';
import { timingClaim } from '../helpers/timing';
import { pollUntil } from '../helpers/wait';
import { httpGet, metricValue, scrape, TextClient } from './support';

let proxy: ProxyProcess | null = null;
afterEach(async () => {
  await proxy?.stop();
  proxy = null;
  await stopAllMemcached();
});

/** The repro: with every backend dead, /readyz answered 200 for the first 3 s. */
const WATCH_MS = 4000;

test('every backend dead at start: not ready, backend_up 0; ready once one answers; stays ready when it is lost', async () => {
  // Not 127.0.0.1: another test's memcached, started on a port the kernel hands out there,
  // must never answer for a backend this test keeps dead.
  const host = '127.31.7.1';
  const ports = [await freePort(host), await freePort(host)];
  const addresses = ports.map((p) => `${host}:${p}`);
  proxy = await startProxy({ backends: addresses, replicas: 2, metrics: true });
  const metricsPort = proxy.metricsPort!;

  // Sampled for WATCH_MS and at least 10 times, however slowly a loaded machine answers.
  const until = Date.now() + WATCH_MS;
  let checks = 0;
  while (Date.now() < until || checks <= 10) {
    expect((await httpGet(metricsPort, '/readyz')).status).toBe(503);
    const body = await scrape(metricsPort);
    for (const backend of addresses) expect(metricValue(body, 'replicached_backend_up', { backend })).toBe(0);
    checks++;
  }
  expect(checks).toBeGreaterThan(10);

  const mc = await startMemcached({ port: ports[0], host });
  await pollUntil(async () => (await httpGet(metricsPort, '/readyz')).status === 200, 20_000, 50, 'never ready after a backend started');
  expect(metricValue(await scrape(metricsPort), 'replicached_backend_up', { backend: addresses[0] })).toBe(1);
  expect(metricValue(await scrape(metricsPort), 'replicached_backend_up', { backend: addresses[1] })).toBe(0);

  // Lost again: the gauge says so, readiness does not change (a shared outage is not this pod's).
  await mc.stop();
  const client = await TextClient.connect(proxy.port);
  await pollUntil(
    async () => {
      await client.request('get k\r\n', /^(END|SERVER_ERROR.*)\r\n/m).catch(() => '');
      return metricValue(await scrape(metricsPort), 'replicached_backend_up', { backend: addresses[0] }) === 0;
    },
    10_000,
    50,
    'the lost backend never read 0',
  );
  client.close();
  expect((await httpGet(metricsPort, '/readyz')).status).toBe(200);
});

test('a live backend makes the proxy ready at its first answer, the version asked at start', async () => {
  const mc = await startMemcached();
  proxy = await startProxy({ backends: [mc.address], metrics: true, logLevel: 'debug' });
  const t0 = Date.now();
  await pollUntil(async () => (await httpGet(proxy!.metricsPort!, '/readyz')).status === 200, 25_000, 10, 'never ready');
  timingClaim('readiness: /readyz 200 after start, one live backend', Date.now() - t0, 1000);
  // Ready on the `version` the proxy sends at start, with no client traffic, not on a later
  // probe round: how soon that is depends on the machine only. (The log may reach us after /readyz.)
  await pollUntil(() => proxy!.output().includes('"msg":"ready: a backend has answered"'), 25_000, 10, 'no ready line');
  const output = proxy.output();
  expect(output).toMatch(new RegExp(`"backend":"${mc.address}","how":"version".*"msg":"backend answered for the first time"`));
  expect(output).toMatch(/"msg":"ready: a backend has answered"/);
});
