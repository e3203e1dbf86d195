// A value under replicached's item limit but over what the backends store
// (memcached -I 1m holds a little less than 1 MiB of value) gets memcached's own
// answer, in both protocols, and the connection goes on.

import net from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startMemcached, type MemcachedProcess } from '../helpers/memcached';
import { startProxy, type ProxyProcess } from '../helpers/proxy';

/** Under the 1 MiB client limit, over what memcached -I 1m stores. */
const SIZE = 1024 * 1024 - 16;

function exchange(port: number, request: Buffer, complete: (reply: Buffer) => boolean): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => socket.write(request));
    let reply = Buffer.alloc(0);
    socket.setTimeout(10_000, () => socket.destroy(new Error(`incomplete reply: ${reply.toString('latin1')}`)));
    socket.on('error', reject);
    socket.on('data', (d: Buffer) => {
      reply = Buffer.concat([reply, d]);
      if (complete(reply)) {
        socket.end();
        resolve(reply);
      }
    });
  });
}

describe('a value the backends cannot hold', () => {
  let backends: MemcachedProcess[];
  let proxy: ProxyProcess;

  beforeAll(async () => {
    backends = await Promise.all([startMemcached(), startMemcached()]);
    proxy = await startProxy({ backends: backends.map((b) => b.address), replicas: 2 });
  });
  afterAll(async () => {
    await proxy?.stop();
    await Promise.all(backends.map((b) => b.stop()));
  });

  test('text: SERVER_ERROR object too large for cache, then the connection works', async () => {
    const request = Buffer.concat([
      Buffer.from(`set big 0 0 ${SIZE}\r\n`),
      Buffer.alloc(SIZE, 0x61),
      Buffer.from('\r\nset small 0 0 1\r\nx\r\n'),
    ]);
    const reply = await exchange(proxy.port, request, (r) => r.toString('latin1').split('\r\n').length > 2);
    expect(reply.toString('latin1')).toBe('SERVER_ERROR object too large for cache\r\nSTORED\r\n');
  });

  test('binary: status 0x0003 "Too large."', async () => {
    const key = Buffer.from('bigbin');
    const extras = Buffer.alloc(8);
    const header = Buffer.alloc(24);
    header[0] = 0x80; // request
    header[1] = 0x01; // SET
    header.writeUInt16BE(key.length, 2);
    header[4] = extras.length;
    header.writeUInt32BE(extras.length + key.length + SIZE, 8);
    header.writeUInt32BE(0xdeadbeef, 12);
    const reply = await exchange(proxy.port, Buffer.concat([header, extras, key, Buffer.alloc(SIZE)]), (r) => r.length >= 24 && r.length >= 24 + r.readUInt32BE(8));
    expect(reply.readUInt16BE(6)).toBe(0x0003);
    expect(reply.readUInt32BE(12)).toBe(0xdeadbeef);
    expect(reply.subarray(24).toString()).toBe('Too large.');
  });
});
