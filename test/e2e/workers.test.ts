// --workers 2: two processes share the client port, both proxy to the same
// backends, the primary serves their summed metrics and stops them on SIGTERM.

import net from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startCluster, type Cluster } from '../helpers/cluster';
import { pollUntil } from '../helpers/wait';

const CLIENTS = 40;

function roundTrip(port: number, key: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => socket.write(`set ${key} 3 0 2\r\nhi\r\nget ${key}\r\n`));
    let reply = '';
    socket.setTimeout(5000, () => socket.destroy(new Error('timeout')));
    socket.on('error', reject);
    socket.on('data', (d: Buffer) => {
      reply += d.toString('latin1');
      if (reply.endsWith('END\r\n')) {
        socket.end();
        resolve(reply);
      }
    });
  });
}

describe('--workers 2', () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster({ backends: 2, metrics: true, logLevel: 'info', args: ['--workers', '2'] });
  });
  afterAll(() => cluster?.stop());

  test('clients are served, metrics are summed over the workers, SIGTERM stops them all', async () => {
    const { proxy } = cluster;
    const replies = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => roundTrip(proxy.port, `w${i}`)));
    replies.forEach((r, i) => expect(r).toBe(`STORED\r\nVALUE w${i} 3 2\r\nhi\r\nEND\r\n`));

    const text = await (await fetch(`http://127.0.0.1:${proxy.metricsPort}/metrics`)).text();
    expect(text).toContain(`replicached_requests_total{command="set",result="stored"} ${CLIENTS}`);
    expect(text).toContain(`replicached_requests_total{command="get",result="hit"} ${CLIENTS}`);

    // Each worker logs that it listens; only the primary prints the banner, with "(2 workers)".
    const workerPids = () => new Set([...proxy.output().matchAll(/"pid":(\d+)[^\n]*"msg":"replicached listening"/g)].map((m) => m[1]));
    await pollUntil(() => workerPids().size === 2, 10_000, 20, 'two workers logged that they listen');
    expect(proxy.output().match(/replicached listening on [\d.:]+ \(2 workers\)\n/g)).toHaveLength(1);
    expect(proxy.output()).not.toMatch(/replicached listening on [\d.:]+\n/);
    expect(await proxy.stop()).toBe(0);
  });
});
