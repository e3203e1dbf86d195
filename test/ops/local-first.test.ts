// Local-first reads: the backend marked `local: true` is read first whenever it
// is a live member of the key's replica set. Checked on the backends' own
// get_hits / get_misses and on replicached_reads_total{locality}.

import { afterEach, expect, test } from 'vitest';
import { startMemcached, stopAllMemcached, type MemcachedProcess } from '../helpers/memcached';
import { TextClient, metricValue, scrape, startConfigured, stats, waitFor, type ConfiguredRun } from './support';

let run: ConfiguredRun | null = null;

afterEach(async () => {
  await run?.stop();
  run = null;
  await stopAllMemcached();
});

const KEYS = Array.from({ length: 100 }, (_, i) => `sess:${i}`);

/**
 * The reads of present keys the backend answered (get_hits). Not get_misses: besides the
 * clients' reads, the proxy itself reads every live backend every watchMs (500 ms), in the
 * rounds of src/resync/mark-watch.ts (`mg replicached:down:<other backend>`) and
 * run-beacon.ts (`mg replicached:resync-running`). Those keys exist only while a backend is
 * marked down or being refilled, which never happens in the first two tests below, so these
 * reads are misses; how many of them fall between two looks at the stats depends only on
 * how long the looks take (on a loaded machine, a round or two: 104 reads where the clients
 * made 100). Every key the clients read here is present on each of its replicas, so each
 * client read is a hit wherever it goes: hits count the clients' reads exactly.
 */
async function reads(mc: MemcachedProcess): Promise<number> {
  const s = await stats(mc.port);
  return Number(s.get('get_hits'));
}

async function start(mcs: MemcachedProcess[], localAt: number, replicas: number): Promise<{ client: TextClient; metricsPort: number }> {
  run = await startConfigured(mcs.map((m, i) => ({ address: m.address, local: i === localAt })), replicas, 1);
  const [client] = run.clients;
  for (const k of KEYS) expect(await client.set(k, `v-${k}`)).toBe('STORED\r\n');
  // A set's convergence check (a read of the authority) runs after its reply; a get of the
  // key waits for it, so after these no read from the sets is still to come.
  for (const k of KEYS) expect(await client.get(k)).toBe(`v-${k}`);
  return { client, metricsPort: run.proxy.metricsPort };
}

test('replicas == backends: every read of a present key is answered by the local backend alone', async () => {
  const mcs = await Promise.all([0, 1, 2].map(() => startMemcached()));
  const { client, metricsPort } = await start(mcs, 1, 3);
  const before = await Promise.all(mcs.map(reads));

  for (const k of KEYS) expect(await client.get(k)).toBe(`v-${k}`);

  const after = await Promise.all(mcs.map(reads));
  expect(after[1] - before[1]).toBe(KEYS.length);
  expect(after[0] - before[0]).toBe(0);
  expect(after[2] - before[2]).toBe(0);
  const text = await scrape(metricsPort);
  // start() read every key once already, locally too.
  expect(metricValue(text, 'replicached_reads_total', { locality: 'local' })).toBe(2 * KEYS.length);
  expect(metricValue(text, 'replicached_reads_total', { locality: 'remote' })).toBe(0);
  expect(metricValue(text, 'replicached_failovers_total', { command: 'get' })).toBe(0);
});

test('replicas < backends: keys whose replica set holds the local backend are read there only', async () => {
  const mcs = await Promise.all([0, 1, 2].map(() => startMemcached()));
  const { client, metricsPort } = await start(mcs, 0, 2);
  // Which keys the local backend holds, asked of memcached itself (the ring decides placement).
  const direct = await TextClient.connect(mcs[0].port);
  const held: string[] = [];
  for (const k of KEYS) if ((await direct.get(k)) !== null) held.push(k);
  direct.close();
  expect(held.length).toBeGreaterThan(0);
  expect(held.length).toBeLessThan(KEYS.length);

  const before = await Promise.all(mcs.map(reads));
  for (const k of held) expect(await client.get(k)).toBe(`v-${k}`);
  const after = await Promise.all(mcs.map(reads));
  expect(after.map((n, i) => n - before[i])).toEqual([held.length, 0, 0]);

  // The other keys are read remotely, from their first replica.
  for (const k of KEYS) if (!held.includes(k)) expect(await client.get(k)).toBe(`v-${k}`);
  const text = await scrape(metricsPort);
  // start() read every key once already, in the same places.
  expect(metricValue(text, 'replicached_reads_total', { locality: 'local' })).toBe(2 * held.length);
  expect(metricValue(text, 'replicached_reads_total', { locality: 'remote' })).toBe(2 * (KEYS.length - held.length));
});

test('the local backend dead: reads go to the other replicas and still hit', async () => {
  const mcs = await Promise.all([0, 1, 2].map(() => startMemcached()));
  const { client, metricsPort } = await start(mcs, 0, 3);
  mcs[0].kill('SIGKILL');
  await mcs[0].exited();
  await waitFor('local backend down', async () => {
    for (const k of KEYS) expect(await client.get(k)).toBe(`v-${k}`);
    return metricValue(await scrape(metricsPort), 'replicached_backend_up', { backend: mcs[0].address }) === 0;
  });
  const before = await scrape(metricsPort);
  for (const k of KEYS) expect(await client.get(k)).toBe(`v-${k}`);
  const after = await scrape(metricsPort);
  const remote = (t: string) => metricValue(t, 'replicached_reads_total', { locality: 'remote' }) ?? 0;
  const local = (t: string) => metricValue(t, 'replicached_reads_total', { locality: 'local' }) ?? 0;
  expect(remote(after) - remote(before)).toBe(KEYS.length);
  expect(local(after) - local(before)).toBe(0);
});
