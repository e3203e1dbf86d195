// The metrics of issue 12: build info, backend connections, protocol errors, the
// last reload, resync outcomes, and every series whose labels are known exported
// at 0 from the start. replicached runs as a child process (dist/) over real memcached.

import net from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { startCluster, type Cluster } from '../helpers/cluster';
import { TextClient, metricValue, scrape, waitFor } from '../ops/support';

let cluster: Cluster | null = null;
afterEach(async () => {
  await cluster?.stop();
  cluster = null;
});

/** A text reply line is complete at its CRLF; a binary reply at its header's body length. */
function oneReply(data: Buffer): boolean {
  if (data[0] === 0x81) return data.length >= 24 && data.length >= 24 + data.readUInt32BE(8);
  return data.includes('\r\n');
}

/**
 * Sends `bytes` on a fresh connection and resolves with what came back once it holds one
 * complete reply, or the proxy closed it. Waits as long as a loaded machine takes (20 s: only
 * a guard, to show what did come back).
 */
function exchange(port: number, bytes: Buffer | string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => socket.write(bytes));
    const chunks: Buffer[] = [];
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(Buffer.concat(chunks));
    };
    const timer = setTimeout(done, 20_000);
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      if (oneReply(Buffer.concat(chunks))) done();
    });
    socket.on('close', () => {
      clearTimeout(timer);
      done();
    });
    socket.on('error', reject);
  });
}

describe('metrics present from the start, and the new ones', () => {
  test('before any request: labelled series at 0, build info, the start as a successful reload', async () => {
    const startedAt = Date.now() / 1000;
    cluster = await startCluster({ backends: 2, replicas: 2, metrics: true });
    const text = await scrape(cluster.proxy.metricsPort!);
    const zero = (name: string, labels: Record<string, string> = {}): void => expect(metricValue(text, name, labels), `${name} ${JSON.stringify(labels)}`).toBe(0);

    for (const [command, result] of [['get', 'hit'], ['get', 'miss'], ['set', 'stored'], ['add', 'not_stored'], ['delete', 'deleted'], ['incr', 'non_numeric'], ['touch', 'touched']]) {
      zero('replicached_requests_total', { command, result });
    }
    zero('replicached_request_duration_seconds_count', { command: 'get' });
    zero('replicached_failovers_total', { command: 'get' });
    zero('replicached_reads_total', { locality: 'local' });
    for (const protocol of ['text', 'binary']) for (const action of ['answered', 'closed']) zero('replicached_protocol_errors_total', { protocol, action });
    zero('replicached_config_reloads_total', { result: 'ok' });
    zero('replicached_config_reloads_total', { result: 'error' });
    for (const { address: backend } of cluster.backends) {
      expect(metricValue(text, 'replicached_backend_up', { backend })).toBe(1);
      for (const name of ['replicached_backend_ejections_total', 'replicached_backend_returns_total', 'replicached_backend_timeouts_total', 'replicached_resync_keys_copied_total', 'replicached_resync_in_progress', 'replicached_resync_keys_pending', 'replicached_resync_last_complete_timestamp_seconds']) {
        zero(name, { backend });
      }
      for (const reason of ['timeout', 'connect', 'auth', 'closed', 'down']) zero('replicached_backend_errors_total', { backend, reason });
      for (const outcome of ['complete', 'incomplete', 'aborted']) zero('replicached_resync_runs_total', { backend, outcome });
      // Present (the resync's start-up checks may already have used it).
      expect(metricValue(text, 'replicached_backend_request_duration_seconds_count', { backend })).toBeGreaterThanOrEqual(0);
      expect(metricValue(text, 'replicached_backend_connections', { backend })).toBeGreaterThanOrEqual(0);
    }
    expect(metricValue(text, 'replicached_build_info', { version: '0.1.0', node_version: process.version })).toBe(1);
    expect(metricValue(text, 'replicached_config_last_reload_successful')).toBe(1);
    const reloadedAt = metricValue(text, 'replicached_config_last_reload_timestamp_seconds')!;
    expect(reloadedAt).toBeGreaterThanOrEqual(Math.floor(startedAt));
    expect(reloadedAt).toBeLessThanOrEqual(Date.now() / 1000);
  });

  test('protocol errors by protocol and action; backend connections once used; a resync outcome', async () => {
    cluster = await startCluster({ backends: 2, replicas: 2, metrics: true, logLevel: 'info' });
    const { proxy, backends } = cluster;
    const metricsPort = proxy.metricsPort!;

    expect((await exchange(proxy.port, 'bogus\r\n')).toString()).toBe('ERROR\r\n');
    expect((await exchange(proxy.port, 'set k 0 0 notanumber\r\n')).toString()).toMatch(/^CLIENT_ERROR /);
    expect((await exchange(proxy.port, `get ${'k'.repeat(70_000)}\r\n`)).toString()).toMatch(/^CLIENT_ERROR line too long/);
    // A binary request with an opcode nobody knows: answered with status 0x0081.
    const unknown = Buffer.alloc(24);
    unknown[0] = 0x80;
    unknown[1] = 0xee;
    const reply = await exchange(proxy.port, unknown);
    expect(reply[0]).toBe(0x81);
    expect(reply.readUInt16BE(6)).toBe(0x0081);

    const client = await TextClient.connect(proxy.port);
    expect(await client.set('used', 'v')).toBe('STORED\r\n');
    client.close();

    let text = await scrape(metricsPort);
    expect(metricValue(text, 'replicached_protocol_errors_total', { protocol: 'text', action: 'answered' })).toBe(2);
    expect(metricValue(text, 'replicached_protocol_errors_total', { protocol: 'text', action: 'closed' })).toBe(1);
    expect(metricValue(text, 'replicached_protocol_errors_total', { protocol: 'binary', action: 'answered' })).toBe(1);
    expect(metricValue(text, 'replicached_protocol_errors_total', { protocol: 'binary', action: 'closed' })).toBe(0);
    for (const { address: backend } of backends) expect(metricValue(text, 'replicached_backend_connections', { backend })).toBe(1);

    // A backend restarted empty is refilled: one complete run, its time, nothing left pending.
    const restarted = backends[1];
    const restartedAt = Date.now() / 1000;
    await restarted.restart();
    await waitFor('the resync counted', async () => {
      text = await scrape(metricsPort);
      return metricValue(text, 'replicached_resync_runs_total', { backend: restarted.address, outcome: 'complete' }) === 1;
    }, 15_000);
    expect(metricValue(text, 'replicached_resync_runs_total', { backend: restarted.address, outcome: 'aborted' })).toBe(0);
    expect(metricValue(text, 'replicached_resync_last_complete_timestamp_seconds', { backend: restarted.address })).toBeGreaterThanOrEqual(Math.floor(restartedAt));
    expect(metricValue(text, 'replicached_resync_last_complete_timestamp_seconds', { backend: backends[0].address })).toBe(0);
    await waitFor('nothing left pending', async () => metricValue(await scrape(metricsPort), 'replicached_resync_keys_pending', { backend: restarted.address }) === 0, 15_000);
    // The log line names the outcome with the metric's word (issue 20: it said "done").
    const finishedLines = (): string[] => proxy.output().split('\n').filter((l) => l.includes('"msg":"resync finished"'));
    await waitFor('the resync logged', () => finishedLines().length > 0);
    const finished = finishedLines();
    expect(finished).toHaveLength(1);
    expect(JSON.parse(finished[0])).toMatchObject({ backend: restarted.address, outcome: 'complete' });
  });
});
