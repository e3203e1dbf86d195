// backendsFrom: replicached over real memcached that it finds through a DNS server the test
// runs on loopback and whose answers it changes. Each change of the answer is a membership
// change applied as a reload; each failed or unusable answer keeps the last good backends.
// Plain keys and real PHP sessions written before and after every change are all served,
// through two sidecars that follow the same name.
//
//   A/AAAA (dns://memcached.test:<port>): memcached on 127.0.0.1..5, one port; add one,
//     remove one, replace one (a pod rescheduled with a new address); NXDOMAIN, SERVFAIL,
//     an empty answer, an answer with fewer backends than replicas.
//   SRV (dnssrv://_memcache._tcp.test): memcached on one address, several ports; weights
//     rescaled by the server change nothing; one target replaced by another port.
//   --workers 2: the primary asks DNS and hands each change to both workers.
//   Start: no usable answer yet: replicached waits, says so, and serves once DNS answers.
//
// Every wait polls the proxies' metrics until the membership settled; no fixed sleeps.

import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { startDnsServer, type DnsAnswer, type DnsServer } from '../helpers/dns-server';
import { freePort, startMemcached, stopAllMemcached, type MemcachedProcess } from '../helpers/memcached';
import { readSessions, writeSessions } from '../helpers/php';
import { TIMING_STRICT } from '../helpers/timing';
import { waitForOutput } from '../helpers/wait';
import { configDir, metricSum, metricValue, scrape, startConfiguredProxy, TextClient, waitFor, type ConfigDir, type ConfiguredProxy } from '../ops/support';

const A_NAME = 'memcached.test';
const SRV_NAME = '_memcache._tcp.test';
const SESSIONS = 40;
const KEYS_PER_GEN = 100;

let dns: DnsServer;
const cleanups: Array<() => Promise<void> | void> = [];

beforeAll(async () => {
  dns = await startDnsServer();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await stopAllMemcached();
});
afterAll(() => dns?.close());

/** The config of a sidecar following `backendsFrom` through the test's DNS server, with short refresh bounds. */
function discoveryConfig(backendsFrom: string): string {
  // A healthy memcached starved of CPU on a loaded machine is not taken for a failure (see helpers/timing.ts).
  const timeout = TIMING_STRICT ? '' : 'backend: { requestTimeoutMs: 2000 }\n';
  return `backendsFrom: ${backendsFrom}\ndiscovery:\n  servers: ["${dns.address}"]\n  minRefreshMs: 150\n  maxRefreshMs: 1000\nreplicas: 2\n${timeout}`;
}

async function startSidecars(backendsFrom: string, count: number): Promise<{ proxies: ConfiguredProxy[]; dir: ConfigDir }> {
  const dir = configDir(discoveryConfig(backendsFrom));
  cleanups.push(() => dir.remove());
  const proxies: ConfiguredProxy[] = [];
  for (let i = 0; i < count; i++) {
    const p = await startConfiguredProxy(dir.file);
    cleanups.push(() => p.stop());
    proxies.push(p);
  }
  return { proxies, dir };
}

/** memcached on each of `hosts`, all on one port (the port an A record's backends share). */
async function onSharedPort(hosts: string[]): Promise<MemcachedProcess[]> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    try {
      return await Promise.all(hosts.map((host) => startMemcached({ host, port })));
    } catch (err) {
      await stopAllMemcached();
      if (attempt >= 3) throw err;
    }
  }
}

/** The backends a proxy's metrics list (replicached_backend_up's labels): its membership, drained ones included. */
function listedBackends(exposition: string): string[] {
  return [...exposition.matchAll(/^replicached_backend_up\{backend="([^"]+)"\} /gm)].map((m) => m[1]).sort();
}

/**
 * Waits until every proxy runs exactly `expected` (removed backends drained and forgotten), each
 * up and trusted, with no refill, fill or shed left: the membership change is complete.
 */
async function settled(proxies: ConfiguredProxy[], expected: MemcachedProcess[]): Promise<void> {
  const want = expected.map((m) => m.address).sort();
  for (const p of proxies) {
    let last = '';
    const check = async (): Promise<boolean> => {
      const text = await scrape(p.metricsPort);
      const listed = listedBackends(text);
      last = listed.join(', ');
      if (listed.join(',') !== want.join(',')) return false;
      return want.every(
        (backend) =>
          metricValue(text, 'replicached_backend_up', { backend }) === 1 &&
          metricValue(text, 'replicached_resync_in_progress', { backend }) === 0 &&
          metricValue(text, 'replicached_resync_keys_pending', { backend }) === 0,
      );
    };
    await waitFor(`membership ${want.join(', ')} settled on :${p.port}`, check).catch((err: Error) => {
      throw new Error(`${err.message}; it lists ${last}`);
    });
  }
}

/** Plain keys of generation `gen`, written through `client`. */
async function writeGen(client: TextClient, gen: number): Promise<void> {
  for (let i = 0; i < KEYS_PER_GEN; i++) expect(await client.set(`dns:${gen}:${i}`, `v-${gen}-${i}`)).toBe('STORED\r\n');
}

/** Every key of generations 0..last, read through each client: all there, none a miss. */
async function expectAllServed(clients: TextClient[], last: number, when = ''): Promise<void> {
  for (const c of clients) {
    const missing: string[] = [];
    for (let gen = 0; gen <= last; gen++) {
      for (let i = 0; i < KEYS_PER_GEN; i++) if ((await c.get(`dns:${gen}:${i}`)) !== `v-${gen}-${i}`) missing.push(`dns:${gen}:${i}`);
    }
    expect(missing, when).toEqual([]);
    expect(c.closed, when).toBe(false);
  }
}

async function expectSessionsServed(port: number, prefix: string): Promise<void> {
  const read = await readSessions('memcached-binary', { port, prefix, count: SESSIONS });
  expect(read.problems).toEqual([]);
  expect(read.missing).toEqual([]);
  expect(read.mismatches).toEqual([]);
  expect(read.ok).toBe(SESSIONS);
}

async function counter(p: ConfiguredProxy, name: string, labels: Record<string, string> = {}): Promise<number> {
  return metricSum(await scrape(p.metricsPort), name, labels);
}

/** The address DNS answers for a memcached of `mcs`: its host. */
const aRecords = (mcs: MemcachedProcess[]): DnsAnswer => ({ a: mcs.map((m) => m.host), ttl: 0 });

describe('dns://: A records', () => {
  test('add, remove, replace an address; NXDOMAIN, SERVFAIL, empty and too small answers keep the backends; every key and session served', async () => {
    const [m1, m2, m3, m4, m5] = await onSharedPort(['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5']);
    dns.answer(A_NAME, aRecords([m3, m1, m2])); // any order: each sidecar sorts the answer
    const { proxies } = await startSidecars(`dns://${A_NAME}:${m1.port}`, 2);
    await settled(proxies, [m1, m2, m3]);
    const clients = await Promise.all(proxies.map((p) => TextClient.connect(p.port)));
    cleanups.push(() => clients.forEach((c) => c.close()));

    await writeGen(clients[0], 0);
    const written = await writeSessions('memcached-binary', { port: proxies[0].port, prefix: 'dns-a-', count: SESSIONS });
    expect(written.problems).toEqual([]);

    const changes: Array<{ what: string; members: MemcachedProcess[] }> = [
      { what: 'added 127.0.0.4', members: [m1, m2, m3, m4] },
      { what: 'removed 127.0.0.1', members: [m2, m3, m4] },
      { what: 'replaced 127.0.0.2 by 127.0.0.5 (a pod rescheduled)', members: [m3, m4, m5] },
    ];
    let gen = 0;
    for (const { what, members } of changes) {
      dns.answer(A_NAME, aRecords(members));
      await settled(proxies, members);
      await expectAllServed(clients, gen, what);
      await writeGen(clients[0], ++gen);
      await expectAllServed(clients, gen, what);
      await expectSessionsServed(proxies[1].port, 'dns-a-');
    }
    for (const p of proxies) {
      expect(await counter(p, 'replicached_discovery_changes_total')).toBe(changes.length);
      expect(p.output()).toMatch(/"trigger":"dns".*"msg":"config reloaded"/);
      expect(p.output()).toContain(`"added":["${m5.address}"],"removed":["${m2.address}"]`);
    }

    // Answers that are not usable: the members stay, with no reload, each episode logged once.
    const failures: Array<{ reason: string; answer: DnsAnswer }> = [
      { reason: 'nxdomain', answer: { rcode: 'NXDOMAIN' } },
      { reason: 'servfail', answer: { rcode: 'SERVFAIL' } },
      { reason: 'empty', answer: { ttl: 0 } },
      { reason: 'too_few', answer: aRecords([m3]) },
    ];
    const reloads = await Promise.all(proxies.map((p) => counter(p, 'replicached_config_reloads_total', { result: 'ok' })));
    for (const [episode, { reason, answer }] of failures.entries()) {
      dns.answer(A_NAME, answer);
      // Two failures in a row on each sidecar: the membership held through more than one refresh.
      for (const p of proxies) await waitFor(`two ${reason} failures`, async () => (await counter(p, 'replicached_discovery_failures_total', { reason })) >= 2);
      await settled(proxies, [m3, m4, m5]);
      await writeGen(clients[0], ++gen);
      await expectAllServed(clients, gen, reason);
      dns.answer(A_NAME, aRecords([m5, m4, m3]));
      for (const p of proxies) {
        await waitFor('usable answers again', () => (p.output().match(/"msg":"DNS: usable answers again"/g) ?? []).length === episode + 1);
        const text = await scrape(p.metricsPort);
        expect(metricValue(text, 'replicached_discovery_backends')).toBe(3);
        expect(metricValue(text, 'replicached_discovery_last_success_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000 - 60);
      }
    }
    for (const [i, p] of proxies.entries()) {
      expect(await counter(p, 'replicached_config_reloads_total', { result: 'ok' })).toBe(reloads[i]);
      expect(await counter(p, 'replicached_discovery_changes_total')).toBe(changes.length);
      // Once per episode, however many refreshes failed in it.
      expect((p.output().match(/"msg":"DNS: no usable answer; the last good backends stay"/g) ?? []).length).toBe(failures.length);
      expect(p.output()).toMatch(/"reason":"too_few","detail":"1 backends \(127\.0\.0\.3:\d+\), fewer than replicas \(2\)"/);
    }
    await expectSessionsServed(proxies[0].port, 'dns-a-');
  }, 90_000);
});

describe('dnssrv://: SRV records', () => {
  test('weights rescaled change nothing; a target replaced by another port is a membership change; every key and session served', async () => {
    const [m1, m2, m3, m4] = await Promise.all([0, 1, 2, 3].map(() => startMemcached()));
    const srv = (mcs: MemcachedProcess[], weight: number): DnsAnswer => ({ srv: mcs.map((m) => ({ target: m.host, port: m.port, weight })) });
    dns.answer(SRV_NAME, srv([m1, m2, m3], 33));
    const { proxies } = await startSidecars(`dnssrv://${SRV_NAME}`, 1);
    const [proxy] = proxies;
    await settled(proxies, [m1, m2, m3]);
    const client = await TextClient.connect(proxy.port);
    cleanups.push(() => client.close());
    await writeGen(client, 0);
    const written = await writeSessions('memcached-binary', { port: proxy.port, prefix: 'dns-srv-', count: SESSIONS });
    expect(written.problems).toEqual([]);

    // Kubernetes' DNS rescales weights as pods come and go: not a change of membership.
    const asked = dns.queries(SRV_NAME);
    dns.answer(SRV_NAME, srv([m3, m2, m1], 50));
    await waitFor('two more SRV queries', () => dns.queries(SRV_NAME) >= asked + 2);
    expect(await counter(proxy, 'replicached_discovery_changes_total')).toBe(0);

    dns.answer(SRV_NAME, srv([m1, m3, m4], 33));
    await settled(proxies, [m1, m3, m4]);
    expect(await counter(proxy, 'replicached_discovery_changes_total')).toBe(1);
    expect(proxy.output()).toContain(`"added":["${m4.address}"],"removed":["${m2.address}"]`);
    await expectAllServed([client], 0);
    await writeGen(client, 1);
    await expectAllServed([client], 1);
    await expectSessionsServed(proxy.port, 'dns-srv-');
  }, 60_000);
});

describe('--workers 2', () => {
  test('the primary asks DNS, each worker applies the change; the discovery metrics are the primary\'s alone', async () => {
    const [m1, m2, m3] = await Promise.all([0, 1, 2].map(() => startMemcached()));
    const name = '_workers._tcp.test';
    const srv = (mcs: MemcachedProcess[]): DnsAnswer => ({ srv: mcs.map((m) => ({ target: m.host, port: m.port })) });
    dns.answer(name, srv([m1, m2]));
    const dir = configDir(discoveryConfig(`dnssrv://${name}`));
    cleanups.push(() => dir.remove());
    const cli = path.join(__dirname, '..', '..', 'dist', 'cli.js');
    const args = [cli, '--config', dir.file, '--workers', '2', '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--log-level', 'info'];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    cleanups.push(async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    });
    await waitForOutput(child, () => out, (o) => /\(2 workers\)\nmetrics on http:\/\/[\d.]+:\d+/.test(o));
    const port = Number(/listening on [\d.]+:(\d+) \(2 workers\)/.exec(out)![1]);
    const metricsPort = Number(/metrics on http:\/\/[\d.]+:(\d+)\//.exec(out)![1]);

    dns.answer(name, srv([m1, m2, m3]));
    // backend_up is the minimum over the workers: 1 once both run the new list and reach it.
    await waitFor('both workers running the three backends', async () => {
      const text = await scrape(metricsPort);
      return [m1, m2, m3].every((m) => metricValue(text, 'replicached_backend_up', { backend: m.address }) === 1);
    });
    const text = await scrape(metricsPort);
    expect(metricValue(text, 'replicached_discovery_changes_total')).toBe(1);
    expect(metricValue(text, 'replicached_discovery_backends')).toBe(3);
    expect(metricValue(text, 'replicached_discovery_failures_total', { reason: 'nxdomain' })).toBe(0);
    expect(out).toMatch(/"trigger":"dns".*"msg":"config reloaded"/);
    const client = await TextClient.connect(port);
    expect(await client.set('w', 'v')).toBe('STORED\r\n');
    expect(await client.get('w')).toBe('v');
    client.close();
  });
});

describe('start with no usable answer yet', () => {
  test('waits without serving, says so once, starts on the first usable answer; SIGTERM while waiting exits 0', async () => {
    const [m1, m2] = await Promise.all([0, 1].map(() => startMemcached()));
    const name = 'late.test';
    dns.answer(name, { rcode: 'NXDOMAIN' });
    const dir = configDir(discoveryConfig(`dnssrv://${name}`));
    cleanups.push(() => dir.remove());
    const cli = path.join(__dirname, '..', '..', 'dist', 'cli.js');
    const run = () => {
      const child = spawn(process.execPath, [cli, '--config', dir.file, '--listen', '127.0.0.1:0', '--metrics-listen', 'off'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      cleanups.push(() => void child.kill('SIGKILL'));
      return { child, output: () => out, exited };
    };

    const waiting = run();
    await waitForOutput(waiting.child, waiting.output, (o) => o.includes('replicached: waiting for DNS to list the backends'));
    // Asked again and again meanwhile, and said once.
    const asked = dns.queries(name);
    await waitFor('more queries', () => dns.queries(name) >= asked + 2);
    expect(waiting.output().match(/replicached: waiting for DNS/g)).toHaveLength(1);
    expect(waiting.output()).toContain(`(dnssrv://${name}): nxdomain (querySrv ENOTFOUND ${name}); asking again every 150 ms, serving nothing until then`);
    expect(waiting.output()).not.toContain('replicached listening');
    waiting.child.kill('SIGTERM');
    expect(await waiting.exited).toBe(0);

    const late = run();
    await waitForOutput(late.child, late.output, (o) => o.includes('replicached: waiting for DNS'));
    dns.answer(name, { srv: [m1, m2].map((m) => ({ target: m.host, port: m.port })) });
    await waitForOutput(late.child, late.output, (o) => /replicached listening on 127\.0\.0\.1:\d+/.test(o));
    expect(late.output()).toMatch(/"msg":"DNS: backends found"/);
    const port = Number(/replicached listening on 127\.0\.0\.1:(\d+)/.exec(late.output())![1]);
    const client = await TextClient.connect(port);
    expect(await client.set('late', 'v')).toBe('STORED\r\n');
    expect(await client.get('late')).toBe('v');
    client.close();
    late.child.kill('SIGTERM');
    expect(await late.exited).toBe(0);
  });
});
