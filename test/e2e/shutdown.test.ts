// SIGTERM without loss: the proxy stops accepting, finishes the requests in
// flight (every write it acknowledged reached all its replicas), and exits 0.

import net from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startCluster, type Cluster } from '../helpers/cluster';

const WRITES = 2000;

/** Sends `request` and collects the reply until `done(reply)` or the peer closes; `onReply` hears each chunk. */
function exchange(port: number, request: string, done: (reply: string) => boolean, onReply?: () => void): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => socket.write(request));
    let reply = '';
    socket.setTimeout(10_000, () => socket.destroy(new Error(`no complete reply; got ${reply.length} bytes`)));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // A reset after replies arrived ends the exchange; before any reply it is a failure.
      if (err.code === 'ECONNRESET' && reply.length > 0) resolve(reply);
      else reject(err);
    });
    socket.on('data', (d: Buffer) => {
      reply += d.toString('latin1');
      onReply?.();
      if (done(reply)) socket.end();
    });
    socket.on('close', () => resolve(reply));
  });
}

describe('SIGTERM drains requests in flight', () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster({ backends: 3, replicas: 2 });
  });
  afterAll(() => cluster?.stop());

  test('every acknowledged write is on both replicas, and the proxy exits 0', async () => {
    const { proxy, backends } = cluster;
    const keys = Array.from({ length: WRITES }, (_, i) => `drain:${i}`);
    const request = keys.map((k) => `set ${k} 0 0 5\r\nvalue\r\n`).join('');
    // Stop the proxy once replies flow: some writes are acknowledged, more are in flight.
    // (A fixed delay was too short on a loaded machine: nothing was acknowledged yet.)
    let replying!: () => void;
    const firstReply = new Promise<void>((resolve) => (replying = resolve));
    const replies = exchange(proxy.port, request, (r) => r.split('\r\n').length > WRITES, () => replying());
    await firstReply;
    const exit = proxy.stop();
    const reply = await replies;
    expect(await exit).toBe(0);

    const acknowledged = reply.split('\r\n').filter((l) => l === 'STORED').length;
    expect(reply.replace(/STORED\r\n/g, '')).toBe(''); // nothing but whole STORED lines
    expect(acknowledged).toBeGreaterThan(0);

    // Ask every backend directly which keys it holds.
    const copies = new Map<string, number>();
    for (const b of backends) {
      const got = await exchange(b.port, `get ${keys.slice(0, acknowledged).join(' ')}\r\n`, (r) => r.endsWith('END\r\n'));
      for (const m of got.matchAll(/^VALUE (\S+) /gm)) copies.set(m[1], (copies.get(m[1]) ?? 0) + 1);
    }
    // Replies leave in request order, so the acknowledged writes are the first ones.
    for (const k of keys.slice(0, acknowledged)) expect(copies.get(k), k).toBe(2);
  });

  test('a stopped proxy accepts no new client', async () => {
    const { proxy } = cluster;
    await proxy.stop();
    await expect(exchange(proxy.port, 'version\r\n', () => true)).rejects.toThrow(/ECONNREFUSED/);
  });
});
