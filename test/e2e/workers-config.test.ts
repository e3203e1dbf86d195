// --workers 2 keeps one ring per process tree (issue 12, item 3): every worker
// serves the reloaded config, a respawned worker too; the primary's metrics
// combine the workers' (backend_up is not summed, counters never go back when a
// worker dies); /readyz follows the workers' readiness; a reload that changes no
// restart-only setting does not say one needs a restart. Real memcached, the built CLI.

import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { freePort, startMemcached, stopAllMemcached, type MemcachedProcess } from '../helpers/memcached';
import { proxyStats } from '../helpers/proxy';
import { TextClient, configDir, configYaml, httpGet, metricSum, metricValue, scrape, waitFor, type ConfigDir } from '../ops/support';

const CLI = path.join(__dirname, '..', '..', 'dist', 'cli.js');

interface Tree {
  child: ChildProcess;
  port: number;
  metricsPort: number;
  output(): string;
}

let tree: ChildProcess | null = null;
let dir: ConfigDir | null = null;
afterEach(async () => {
  if (tree !== null && tree.exitCode === null) {
    const exited = new Promise((resolve) => tree!.once('exit', resolve));
    tree.kill('SIGTERM');
    await exited;
  }
  tree = null;
  dir?.remove();
  dir = null;
  await stopAllMemcached();
});

/** dist/cli.js --workers 2 --config <file>; resolves once the primary printed both ports. */
async function startTree(file: string): Promise<Tree> {
  const args = [CLI, '--config', file, '--workers', '2', '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--log-level', 'info'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  tree = child;
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  await waitFor('the primary listening', () => /\(2 workers\)\nmetrics on http:\/\/[\d.]+:\d+/.test(out) || child.exitCode !== null, 10_000);
  const port = Number(/listening on [\d.]+:(\d+) \(2 workers\)/.exec(out)?.[1]);
  const metricsPort = Number(/metrics on http:\/\/[\d.]+:(\d+)\//.exec(out)?.[1]);
  if (!port || !metricsPort) throw new Error(`replicached did not start:\n${out}`);
  return { child, port, metricsPort, output: () => out };
}

/** The backends listed in `stats` by each worker pid seen over `connections` fresh connections (those answered). */
async function backendsByWorker(port: number, connections = 16): Promise<Map<number, string[]>> {
  const seen = new Map<number, string[]>();
  for (let i = 0; i < connections; i++) {
    // A connection handed to a worker as it is killed gets no answer: ask again.
    const s = await proxyStats(port).catch(() => null);
    if (s === null) continue;
    const backends = [...s].filter(([name]) => /^replicached_backend_\d+$/.test(name)).map(([, v]) => v.split(' ')[0]);
    seen.set(Number(s.get('pid')), backends.sort());
  }
  return seen;
}

async function setMany(port: number, prefix: string, n: number): Promise<void> {
  const c = await TextClient.connect(port);
  try {
    for (let i = 0; i < n; i++) expect(await c.set(`${prefix}${i}`, 'v')).toBe('STORED\r\n');
  } finally {
    c.close();
  }
}

describe('--workers 2: one ring per process tree', () => {
  test('a reload reaches every worker and a respawned one; gauges are not summed; counters survive a worker crash; no false restart warning', async () => {
    const mcs = await Promise.all([0, 1, 2].map(() => startMemcached()));
    const [a, b, c] = mcs;
    dir = configDir(configYaml(mcs.map((m) => ({ address: m.address })), 2));
    const t = await startTree(dir.file);

    // Both workers serve: each answers stats with its own pid and the three backends.
    let byWorker = await backendsByWorker(t.port);
    await waitFor('both workers seen', async () => (byWorker = await backendsByWorker(t.port)).size === 2);
    for (const list of byWorker.values()) expect(list).toEqual(mcs.map((m) => m.address).sort());
    await waitFor('ready', async () => (await httpGet(t.metricsPort, '/readyz')).status === 200);

    let text = await scrape(t.metricsPort);
    for (const m of mcs) expect(metricValue(text, 'replicached_backend_up', { backend: m.address })).toBe(1); // not 2
    expect(metricSum(text, 'replicached_build_info')).toBe(1);

    // Remove c; a no-op reload first: neither says a restart is needed.
    t.child.kill('SIGHUP');
    await waitFor('the no-op reload', async () => metricValue(await scrape(t.metricsPort), 'replicached_config_reloads_total', { result: 'ok' }) === 1);
    dir.write(configYaml([a, b].map((m) => ({ address: m.address })), 2));
    t.child.kill('SIGHUP');
    // SIGHUP, and the file watcher may see the edit too: at least one more reload.
    await waitFor('the reload', async () => (metricValue(await scrape(t.metricsPort), 'replicached_config_reloads_total', { result: 'ok' }) ?? 0) >= 2);
    // The log line follows the counter through a pipe: wait for it rather than race it.
    await waitFor('the reload\'s log line', () => /"removed":\["127\.0\.0\.1:\d+"\].*"msg":"config reloaded"/.test(t.output()));
    expect(t.output()).not.toMatch(/needs? a restart/);
    await waitFor('every worker without c', async () => {
      byWorker = await backendsByWorker(t.port);
      return byWorker.size === 2 && [...byWorker.values()].every((l) => l.join() === [a.address, b.address].sort().join());
    });

    // Counters: 60 sets, read by the primary, then one worker dies.
    await setMany(t.port, 'w:', 30);
    await setMany(t.port, 'x:', 30);
    text = await scrape(t.metricsPort);
    const before = metricSum(text, 'replicached_requests_total', { command: 'set', result: 'stored' });
    expect(before).toBe(60);
    const [victim] = [...byWorker.keys()];
    process.kill(victim, 'SIGKILL');
    await waitFor('the primary saw the worker exit', () => t.output().includes('"msg":"worker exited; starting another"'));
    text = await scrape(t.metricsPort);
    expect(metricSum(text, 'replicached_requests_total', { command: 'set', result: 'stored' })).toBeGreaterThanOrEqual(before);

    // The respawned worker runs the reloaded list, not the start-up one.
    await waitFor('a respawned worker', async () => {
      byWorker = await backendsByWorker(t.port);
      return byWorker.size === 2 && !byWorker.has(victim);
    }, 15_000);
    for (const list of byWorker.values()) expect(list).toEqual([a.address, b.address].sort());
    text = await scrape(t.metricsPort);
    expect(metricSum(text, 'replicached_requests_total', { command: 'set', result: 'stored' })).toBeGreaterThanOrEqual(before);
    expect(metricValue(text, 'replicached_backend_up', { backend: c.address })).toBeUndefined();
    expect(text).not.toContain(`backend="${c.address}"`); // not even in the dead worker's kept totals
    // A respawned worker reports a backend up only once it has heard from it (its first `version`
    // reply), which may come after its stats answered above: wait for it rather than race it.
    await waitFor('both backends up in every worker', async () => {
      const now = await scrape(t.metricsPort);
      return [a, b].every((m) => metricValue(now, 'replicached_backend_up', { backend: m.address }) === 1);
    });
  });

  test('/readyz is 503 while every backend is unreachable, 200 once they answer', async () => {
    const ports = await Promise.all([0, 1].map(() => freePort()));
    dir = configDir(configYaml(ports.map((p) => ({ address: `127.0.0.1:${p}` })), 2, 'backend:\n  probeIntervalMs: 50\n  retryMaxMs: 200\n'));
    const t = await startTree(dir.file);
    // The old primary answered 200 as long as a worker ran. Now each worker's own rule decides
    // (another change makes it "not before a backend answered"; before it, a worker turns
    // unready once its backends are marked down): either way 503 comes, and stays.
    await waitFor('not ready', async () => (await httpGet(t.metricsPort, '/readyz')).status === 503, 10_000);
    for (let i = 0; i < 5; i++) {
      expect((await httpGet(t.metricsPort, '/readyz')).status).toBe(503);
      await new Promise((r) => setTimeout(r, 100));
    }
    const mcs: MemcachedProcess[] = await Promise.all(ports.map((port) => startMemcached({ port })));
    await waitFor('ready once the backends answer', async () => (await httpGet(t.metricsPort, '/readyz')).status === 200, 10_000);
    expect(mcs).toHaveLength(2);
  });
});
