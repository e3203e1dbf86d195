// A value under replicached's item limit but over what the backends store
// (memcached -I 1m holds a little less than 1 MiB of value) gets memcached's own
// answer, in both protocols, and the connection goes on.

import net from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startCluster, type Cluster } from '../helpers/cluster';

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
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster({ backends: 2, replicas: 2 });
  });
  afterAll(() => cluster?.stop());

  test('text: SERVER_ERROR object too large for cache, then the connection works', async () => {
    const request = Buffer.concat([
      Buffer.from(`set big 0 0 ${SIZE}\r\n`),
      Buffer.alloc(SIZE, 0x61),
      Buffer.from('\r\nset small 0 0 1\r\nx\r\n'),
    ]);
    const reply = await exchange(cluster.proxy.port, request, (r) => r.toString('latin1').split('\r\n').length > 2);
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
    const reply = await exchange(cluster.proxy.port, Buffer.concat([header, extras, key, Buffer.alloc(SIZE)]), (r) => r.length >= 24 && r.length >= 24 + r.readUInt32BE(8));
    expect(reply.readUInt16BE(6)).toBe(0x0003);
    expect(reply.readUInt32BE(12)).toBe(0xdeadbeef);
    expect(reply.subarray(24).toString()).toBe('Too large.');
  });
});

/** A binary SET (opcode 0x01) or SETQ (0x11) of `size` bytes, flags 0, no expiry. */
function binarySet(opcode: number, key: string, size: number): Buffer {
  const header = Buffer.alloc(24);
  header[0] = 0x80;
  header[1] = opcode;
  header.writeUInt16BE(key.length, 2);
  header[4] = 8;
  header.writeUInt32BE(8 + key.length + size, 8);
  return Buffer.concat([header, Buffer.alloc(8), Buffer.from(key), Buffer.alloc(size, 0x62)]);
}

const NOOP = Buffer.from([0x80, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

// Over replicached's own item limit (here 1k), the value never reaches a backend. memcached
// drops what the key held when a `set` (binary: SET, not SETQ) is too large, so that the old
// value is not read as current after a write that failed; replicached does it on every replica.
describe('a value over the item limit drops the old one, as memcached does for set', () => {
  let cluster: Cluster;
  /** The reply to `request`, read until it ends with `last`. */
  const text = (request: string, last = 'END\r\n'): Promise<string> =>
    exchange(cluster.proxy.port, Buffer.from(request), (r) => r.toString('latin1').endsWith(last)).then((r) => r.toString('latin1'));
  /** What each backend holds for `key`, asked directly. */
  const onBackends = (key: string): Promise<string[]> =>
    Promise.all(
      cluster.backends.map((b) =>
        exchange(b.port, Buffer.from(`get ${key}\r\n`), (r) => r.toString('latin1').endsWith('END\r\n')).then((r) => r.toString('latin1')),
      ),
    );

  beforeAll(async () => {
    cluster = await startCluster({ backends: 2, replicas: 2, args: ['--item-size-max', '1k'] });
  });
  afterAll(() => cluster?.stop());

  test('text: set drops it on every replica; add and append keep it', async () => {
    const big = 'x'.repeat(2000);
    expect(await text('set gone 0 0 3\r\nold\r\nset kept 0 0 3\r\nold\r\nget gone kept\r\n')).toBe(
      'STORED\r\nSTORED\r\nVALUE gone 0 3\r\nold\r\nVALUE kept 0 3\r\nold\r\nEND\r\n',
    );
    expect(await text(`set gone 0 0 2000\r\n${big}\r\nadd kept 0 0 2000\r\n${big}\r\nappend kept 0 0 2000\r\n${big}\r\nget gone kept\r\n`)).toBe(
      'SERVER_ERROR object too large for cache\r\n'.repeat(3) + 'VALUE kept 0 3\r\nold\r\nEND\r\n',
    );
    expect(await onBackends('gone')).toEqual(['END\r\n', 'END\r\n']);
    expect(await onBackends('kept')).toEqual(['VALUE kept 0 3\r\nold\r\nEND\r\n', 'VALUE kept 0 3\r\nold\r\nEND\r\n']);
  });

  test('binary: SET drops it on every replica; SETQ keeps it (memcached checks the SET opcode only)', async () => {
    expect(await text('set bin 0 0 3\r\nold\r\nset binq 0 0 3\r\nold\r\n', 'STORED\r\nSTORED\r\n')).toBe('STORED\r\nSTORED\r\n');
    const reply = await exchange(
      cluster.proxy.port,
      Buffer.concat([binarySet(0x01, 'bin', 2000), binarySet(0x11, 'binq', 2000), NOOP]),
      (r) => r.length >= 3 * 24 + 2 * 'Too large.'.length,
    );
    // Two "Too large." errors (SETQ answers its failure too), then the NOOP.
    expect([reply[1], reply.readUInt16BE(6)]).toEqual([0x01, 0x0003]);
    expect(reply[24 + 10 + 1]).toBe(0x11);
    expect(reply[2 * (24 + 10) + 1]).toBe(0x0a);
    expect(await onBackends('bin')).toEqual(['END\r\n', 'END\r\n']);
    expect(await onBackends('binq')).toEqual(['VALUE binq 0 3\r\nold\r\nEND\r\n', 'VALUE binq 0 3\r\nold\r\nEND\r\n']);
  });
});
