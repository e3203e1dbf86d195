// Hot reload of the config file: SIGHUP (or the file changing) applies backends
// added and removed without closing a client connection or losing an item; an
// invalid file is refused and changes nothing.

import { afterEach, expect, test } from 'vitest';
import { reservedItems, startMemcached, stopAllMemcached, type MemcachedProcess } from '../helpers/memcached';
import { configYaml, metricValue, scrape, startConfigured, stats, waitFor, type ConfiguredRun, type TextClient } from './support';

let run: ConfiguredRun | null = null;

afterEach(async () => {
  await run?.stop();
  run = null;
  await stopAllMemcached();
});

const KEYS = Array.from({ length: 120 }, (_, i) => `sess:${i}`);
const valueOf = (k: string) => `data-of-${k}`;

async function setup(backends: MemcachedProcess[], replicas: number): Promise<ConfiguredRun> {
  run = await startConfigured(backends.map((m) => ({ address: m.address })), replicas, 4);
  const { clients } = run;
  for (const [i, k] of KEYS.entries()) expect(await clients[i % clients.length].set(k, valueOf(k))).toBe('STORED\r\n');
  return run;
}

async function reloads(metricsPort: number, result: 'ok' | 'error'): Promise<number> {
  return metricValue(await scrape(metricsPort), 'replicached_config_reloads_total', { result }) ?? 0;
}

async function expectEveryKeyReadableOnEveryClient(clients: TextClient[]): Promise<void> {
  for (const c of clients) {
    for (const k of KEYS) expect(await c.get(k)).toBe(valueOf(k));
    expect(c.closed).toBe(false);
  }
}

test('SIGHUP after adding a fourth backend: connections stay open, every item readable, the new backend used', async () => {
  const mcs = await Promise.all([0, 1, 2, 3].map(() => startMemcached()));
  const [a, b, c, d] = mcs;
  const { proxy, dir, clients } = await setup([a, b, c], 2);
  const { metricsPort } = proxy;
  // Session locks held before the reload; some keys get the new, empty backend as their authority.
  for (const k of KEYS) expect(await clients[2].add(`lock:${k}`, '1')).toBe('STORED\r\n');

  // Reads keep flowing on one connection while the reload happens.
  let stopReading = false;
  const reader = (async () => {
    let n = 0;
    while (!stopReading) {
      const k = KEYS[n++ % KEYS.length];
      expect(await clients[0].get(k)).toBe(valueOf(k));
    }
    return n;
  })();

  dir.write(configYaml([a, b, c, d].map((m) => ({ address: m.address })), 2));
  proxy.child.kill('SIGHUP');
  await waitFor('the reload applied', async () => (await reloads(metricsPort, 'ok')) >= 1);
  stopReading = true;
  expect(await reader).toBeGreaterThan(0);
  // The added backend is resynced: no lock held before the reload can be taken again.
  for (const k of KEYS) expect(await clients[3].add(`lock:${k}`, '2'), `lock:${k}`).toBe('NOT_STORED\r\n');
  await waitFor('the added backend resynced', async () => Number((await stats(d.port)).get('curr_items')) > 0);
  // Added: out until every sidecar reaches it, then refilled, then trusted (docs/trust.md).
  expect(proxy.output()).toMatch(/"cause":"refill".*"msg":"resync started"/);

  const text = await scrape(metricsPort);
  expect(metricValue(text, 'replicached_backend_up', { backend: d.address })).toBe(1);
  expect(metricValue(text, 'replicached_config_reloads_total', { result: 'error' })).toBe(0);
  expect(metricValue(text, 'replicached_config_last_reload_successful')).toBe(1);
  expect(metricValue(text, 'replicached_client_connections')).toBe(clients.length);
  await expectEveryKeyReadableOnEveryClient(clients);

  // New writes land on the fourth backend too (about half the keys have it in their set).
  for (const k of KEYS) expect(await clients[1].set(`new:${k}`, 'x')).toBe('STORED\r\n');
  expect(Number((await stats(d.port)).get('curr_items'))).toBeGreaterThan(0);

  expect(proxy.output()).toMatch(/"msg":"config reloaded"/);
  expect(proxy.output()).toContain(`"added":["${d.address}"]`);
});

test('an invalid file is refused: metrics count an error, the backends and the items stay', async () => {
  const mcs = await Promise.all([0, 1, 2].map(() => startMemcached()));
  const { proxy, dir, clients } = await setup(mcs, 2);
  const { metricsPort } = proxy;
  const before = await scrape(metricsPort);

  dir.write(`backends:\n  - ${mcs[0].address}\nreplicas: 5\n`); // more replicas than backends
  proxy.child.kill('SIGHUP');
  await waitFor('the refusal counted', async () => (await reloads(metricsPort, 'error')) >= 1);

  dir.write('backends: [\n'); // not YAML
  proxy.child.kill('SIGHUP');
  await waitFor('the second refusal counted', async () => (await reloads(metricsPort, 'error')) >= 2);

  const after = await scrape(metricsPort);
  expect(metricValue(after, 'replicached_config_reloads_total', { result: 'ok' })).toBe(0);
  expect(metricValue(after, 'replicached_config_last_reload_successful')).toBe(0);
  for (const mc of mcs) {
    expect(metricValue(after, 'replicached_backend_up', { backend: mc.address })).toBe(1);
    expect(metricValue(before, 'replicached_backend_up', { backend: mc.address })).toBe(1);
  }
  await expectEveryKeyReadableOnEveryClient(clients);
  // Writes still go to two replicas: each item is on exactly 2 of the 3 backends.
  const items = await Promise.all(mcs.map(async (m) => Number((await stats(m.port)).get('curr_items'))));
  expect(items.reduce((s, n) => s + n, 0)).toBe(2 * KEYS.length + mcs.length * reservedItems());
  expect(proxy.output()).toMatch(/"level":"error".*"msg":"config reload refused; the running config stays"/);
  expect(proxy.output()).toContain('replicas');
});

test('a changed file is picked up without a signal; a removed backend leaves the metrics, items stay readable', async () => {
  const mcs = await Promise.all([0, 1, 2].map(() => startMemcached()));
  const { proxy, dir, clients } = await setup(mcs, 2);
  const { metricsPort } = proxy;

  dir.write(configYaml(mcs.slice(0, 2).map((m) => ({ address: m.address })), 2));
  await waitFor('the file change applied', async () => (await reloads(metricsPort, 'ok')) >= 1, 10_000);
  await expectEveryKeyReadableOnEveryClient(clients);

  await waitFor('the removed backend forgotten', async () => {
    const text = await scrape(metricsPort);
    return metricValue(text, 'replicached_backend_up', { backend: mcs[2].address }) === undefined;
  });
  expect(proxy.output()).toContain(`"removed":["${mcs[2].address}"]`);
  expect(proxy.output()).toMatch(/"trigger":"file"/);
});

test('a setting that needs a restart (workers): the rest applies, the log says a restart is needed', async () => {
  const mcs = await Promise.all([0, 1].map(() => startMemcached()));
  const { proxy, dir, clients } = await setup(mcs, 2);
  const { metricsPort } = proxy;

  dir.write(configYaml(mcs.map((m) => ({ address: m.address })), 1, 'workers: 2\n'));
  proxy.child.kill('SIGHUP');
  await waitFor('the reload applied', async () => (await reloads(metricsPort, 'ok')) >= 1);
  // The counter moves just before the line is written: wait for the line, not the next moment.
  await waitFor('the restart warning', () => /"level":"warn".*"needsRestart":\["workers"\]/.test(proxy.output()));
  expect(proxy.output()).toContain('"msg":"config reloaded; workers changed and needs a restart to apply"');
  await expectEveryKeyReadableOnEveryClient(clients);
});
